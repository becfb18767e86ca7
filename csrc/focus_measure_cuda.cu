// Focus Measure Block on the GPU: thresholded sum-modified-Laplacian (Nayar & Nakagawa 1994) as in
// the Fusion Network paper. Kept deliberately plain (one kernel for the thresholded ML, one for the
// window sum, reflect-101 indexing everywhere) so that it is obviously identical to the CPU code.
#include "focus_measure_cuda.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace surgifuse {
namespace cuda {
namespace {

void check(cudaError_t err, const char* what) {
    if (err != cudaSuccess)
        throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err));
}
#define SF_CUDA_CHECK(expr) check((expr), #expr)

class DeviceBuffer {
public:
    explicit DeviceBuffer(size_t bytes) { SF_CUDA_CHECK(cudaMalloc(&ptr_, bytes)); }
    ~DeviceBuffer() { if (ptr_) cudaFree(ptr_); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    void* get() const { return ptr_; }

private:
    void* ptr_ = nullptr;
};

// reflect-101; offsets are at most n - 1 (checked on the host), a length-1 axis maps to 0.
__device__ __forceinline__ long long reflect101(long long i, long long n) {
    if (n == 1) return 0;
    if (i < 0) return -i;
    if (i >= n) return 2 * (n - 1) - i;
    return i;
}

template <class T>
__global__ void masked_ml_kernel(const T* __restrict__ img, long long h, long long w, long long c,
                                 long long step, unsigned thr, uint32_t* __restrict__ ml) {
    const long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x;  // element in row: x*C + ch
    const long long y = blockIdx.y * (long long)blockDim.y + threadIdx.y;
    if (e >= w * c || y >= h) return;
    const long long x = e / c, ch = e - x * c;
    const long long wc = w * c;
    const T* row = img + y * wc;
    const int two = 2 * int(row[e]);
    const int dh = two - int(row[reflect101(x - step, w) * c + ch]) - int(row[reflect101(x + step, w) * c + ch]);
    const int dv = two - int(img[reflect101(y - step, h) * wc + e]) - int(img[reflect101(y + step, h) * wc + e]);
    const unsigned m = unsigned(abs(dh)) + unsigned(abs(dv));
    ml[y * wc + e] = m >= thr ? m : 0u;
}

// One thread per output value: per-channel maps (SumChannels false) or their channel sum.
template <class O, bool SumChannels>
__global__ void window_sum_kernel(const uint32_t* __restrict__ ml, long long h, long long w, long long c,
                                  long long n, O* __restrict__ out) {
    const long long per_row = SumChannels ? w : w * c;
    const long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    const long long y = blockIdx.y * (long long)blockDim.y + threadIdx.y;
    if (e >= per_row || y >= h) return;
    const long long x = SumChannels ? e : e / c;
    const long long ch0 = SumChannels ? 0 : e - x * c;
    const long long ch1 = SumChannels ? c : ch0 + 1;
    uint32_t sum = 0;  // exact: the host checked that the bound fits uint32
    for (long long dy = -n; dy <= n; ++dy) {
        const uint32_t* row = ml + reflect101(y + dy, h) * w * c;
        for (long long dx = -n; dx <= n; ++dx) {
            const uint32_t* px = row + reflect101(x + dx, w) * c;
            for (long long ch = ch0; ch < ch1; ++ch) sum += px[ch];
        }
    }
    out[y * per_row + e] = O(sum);
}

dim3 grid_for(long long per_row, long long h, dim3 block) {
    return dim3(unsigned((per_row + block.x - 1) / block.x), unsigned((h + block.y - 1) / block.y));
}

void check_output(int bytes_per_sample, const FocusParams& p, bool sum_channels, int out_bytes) {
    if (bytes_per_sample != 1 && bytes_per_sample != 2)
        throw std::invalid_argument("bytes_per_sample must be 1 (uint8) or 2 (uint16)");
    const bool u16 = !sum_channels && focus_measure_fits_uint16(bytes_per_sample, p.window);
    if (out_bytes != (u16 ? 2 : 4))
        throw std::invalid_argument("output must be " + std::string(u16 ? "uint16" : "uint32") +
                                    " for this input and window");
}

}  // namespace

int device_count() noexcept {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky-free error so later calls start clean
        return 0;
    }
    return n;
}

void focus_measure_device(const void* d_image, int bytes_per_sample, int64_t h, int64_t w, int64_t c,
                          const FocusParams& p, bool sum_channels, uint32_t* d_ml, void* d_out, int out_bytes,
                          CUstream_st* stream) {
    check_focus_params(h, w, c, p, bytes_per_sample, sum_channels);
    check_output(bytes_per_sample, p, sum_channels, out_bytes);
    const unsigned thr = unsigned(std::min<int64_t>(p.threshold, max_modified_laplacian(bytes_per_sample) + 1));
    const dim3 block(32, 8);
    cudaStream_t s = stream;
    if (bytes_per_sample == 1)
        masked_ml_kernel<uint8_t><<<grid_for(w * c, h, block), block, 0, s>>>(
            static_cast<const uint8_t*>(d_image), h, w, c, p.step, thr, d_ml);
    else
        masked_ml_kernel<uint16_t><<<grid_for(w * c, h, block), block, 0, s>>>(
            static_cast<const uint16_t*>(d_image), h, w, c, p.step, thr, d_ml);
    SF_CUDA_CHECK(cudaGetLastError());
    if (sum_channels)
        window_sum_kernel<uint32_t, true><<<grid_for(w, h, block), block, 0, s>>>(
            d_ml, h, w, c, p.window, static_cast<uint32_t*>(d_out));
    else if (out_bytes == 2)
        window_sum_kernel<uint16_t, false><<<grid_for(w * c, h, block), block, 0, s>>>(
            d_ml, h, w, c, p.window, static_cast<uint16_t*>(d_out));
    else
        window_sum_kernel<uint32_t, false><<<grid_for(w * c, h, block), block, 0, s>>>(
            d_ml, h, w, c, p.window, static_cast<uint32_t*>(d_out));
    SF_CUDA_CHECK(cudaGetLastError());
}

void focus_measure_host(const void* image, int bytes_per_sample, int64_t h, int64_t w, int64_t c,
                        const FocusParams& p, bool sum_channels, void* out, int out_bytes) {
    check_focus_params(h, w, c, p, bytes_per_sample, sum_channels);
    check_output(bytes_per_sample, p, sum_channels, out_bytes);
    if (device_count() <= 0) throw std::runtime_error("no CUDA device");
    const size_t samples = size_t(h) * size_t(w) * size_t(c);
    const size_t out_count = sum_channels ? size_t(h) * size_t(w) : samples;
    DeviceBuffer d_in(samples * size_t(bytes_per_sample));
    DeviceBuffer d_ml(samples * sizeof(uint32_t));
    DeviceBuffer d_out(out_count * size_t(out_bytes));
    SF_CUDA_CHECK(cudaMemcpy(d_in.get(), image, samples * size_t(bytes_per_sample), cudaMemcpyHostToDevice));
    focus_measure_device(d_in.get(), bytes_per_sample, h, w, c, p, sum_channels, static_cast<uint32_t*>(d_ml.get()),
                         d_out.get(), out_bytes, nullptr);
    SF_CUDA_CHECK(cudaDeviceSynchronize());
    SF_CUDA_CHECK(cudaMemcpy(out, d_out.get(), out_count * size_t(out_bytes), cudaMemcpyDeviceToHost));
}

}  // namespace cuda
}  // namespace surgifuse
