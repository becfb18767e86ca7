// Stack decision on a CUDA device (see decision_cuda.hpp): the CPU rules of decision.cpp, one thread
// per pixel; windows are read directly (at most 15x15) instead of sliding histograms.
#include "decision_cuda.hpp"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace surgifuse {
namespace {

void check(cudaError_t err, const char* what) {
    if (err != cudaSuccess) throw std::runtime_error(std::string("CUDA ") + what + " failed: " + cudaGetErrorString(err));
}

// Owns one device allocation; freed on every exit path (errors on free are ignored: nothing to do).
struct DeviceBuffer {
    void* ptr = nullptr;
    explicit DeviceBuffer(size_t bytes) { check(cudaMalloc(&ptr, bytes > 0 ? bytes : 1), "cudaMalloc"); }
    ~DeviceBuffer() { cudaFree(ptr); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    template <typename T>
    T* as() const { return static_cast<T*>(ptr); }
};

__global__ void argmax_kernel(const uint32_t* focus, int k, long long hw, uint32_t flat_threshold, uint8_t* raw,
                              float* offset, float* contrast) {
    const long long p = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
    if (p >= hw) return;
    uint32_t best = focus[p], second = 0;
    int label = 0;
    for (int i = 1; i < k; ++i) {
        const uint32_t v = focus[i * hw + p];
        second = max(second, min(v, best));
        if (v > best) {
            best = v;
            label = i;
        }
    }
    if (best <= flat_threshold) {
        raw[p] = static_cast<uint8_t>(k);
        offset[p] = 0.0f;
        contrast[p] = 0.0f;
        return;
    }
    raw[p] = static_cast<uint8_t>(label);
    contrast[p] = __fdiv_rn(static_cast<float>(best - second), static_cast<float>(best));
    float off = 0.0f;
    if (label > 0 && label < k - 1) {
        const float fm = static_cast<float>(focus[(label - 1) * hw + p]);
        const float f0 = static_cast<float>(best);
        const float fp = static_cast<float>(focus[(label + 1) * hw + p]);
        const float denom = __fadd_rn(__fsub_rn(fm, __fmul_rn(2.0f, f0)), fp);
        if (denom < 0.0f) off = fminf(0.5f, fmaxf(-0.5f, __fdiv_rn(__fsub_rn(fm, fp), __fmul_rn(2.0f, denom))));
    }
    offset[p] = off;
}

// Counts of labels 0..k in the clipped (2r+1)^2 window around (y, x); returns the window size.
__device__ int window_counts(const uint8_t* labels, int h, int w, int y, int x, int r, int k, unsigned* counts) {
    for (int l = 0; l <= k; ++l) counts[l] = 0;
    const int ya = max(0, y - r), yb = min(h - 1, y + r), xa = max(0, x - r), xb = min(w - 1, x + r);
    for (int yy = ya; yy <= yb; ++yy)
        for (int xx = xa; xx <= xb; ++xx) {
            const int l = labels[static_cast<long long>(yy) * w + xx];
            if (l <= k) ++counts[l];
        }
    return (yb - ya + 1) * (xb - xa + 1);
}

__global__ void filter_kernel(const uint8_t* raw, int k, int h, int w, int r, uint8_t* labels, float* depth,
                              float* confidence) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    unsigned counts[kMaxStackSize + 1];
    const int n = window_counts(raw, h, w, y, x, r, k, counts);
    unsigned best = 0;
    int mode = 0;
    for (int l = 0; l <= k; ++l)
        if (counts[l] > best) {
            best = counts[l];
            mode = l;
        }
    const long long p = static_cast<long long>(y) * w + x;
    labels[p] = static_cast<uint8_t>(mode);
    if (mode == k) {
        depth[p] = __fmul_rn(0.5f, static_cast<float>(k - 1));
        confidence[p] = 0.0f;
    } else if (raw[p] == mode) {
        depth[p] = __fadd_rn(static_cast<float>(mode), depth[p]);
        confidence[p] = __fmul_rn(confidence[p], __fdiv_rn(static_cast<float>(best), static_cast<float>(n)));
    } else {
        depth[p] = static_cast<float>(mode);
        confidence[p] = 0.0f;
    }
}

template <typename T>
__global__ void blend_kernel(const T* frames, int k, int h, int w, int c, const uint8_t* labels, int r, T* out) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    unsigned counts[kMaxStackSize + 1];
    const int n = window_counts(labels, h, w, y, x, r, k, counts);
    const long long p = static_cast<long long>(y) * w + x;
    const long long plane = static_cast<long long>(h) * w * c;
    const int centre = labels[p];
    if (centre < k && counts[centre] == static_cast<unsigned>(n)) {
        for (int ch = 0; ch < c; ++ch) out[p * c + ch] = frames[centre * plane + p * c + ch];
        return;
    }
    const unsigned long long total = static_cast<unsigned long long>(n) * k;
    for (int ch = 0; ch < c; ++ch) {
        unsigned long long acc = 0;
        for (int i = 0; i < k; ++i) {
            const unsigned long long wi = static_cast<unsigned long long>(counts[i]) * k + counts[k];
            acc += wi * frames[i * plane + p * c + ch];
        }
        out[p * c + ch] = static_cast<T>((acc + total / 2) / total);
    }
}

template <typename T>
void run(const T* const* frames, const uint32_t* const* focus, int k, int h, int w, int c, const DecisionParams& params,
         T* out, float* depth, float* confidence, uint8_t* labels) {
    const size_t hw = static_cast<size_t>(h) * static_cast<size_t>(w);
    const size_t plane = hw * static_cast<size_t>(c);
    DeviceBuffer d_focus(hw * k * sizeof(uint32_t)), d_frames(plane * k * sizeof(T)), d_raw(hw), d_labels(hw),
        d_depth(hw * sizeof(float)), d_conf(hw * sizeof(float)), d_out(plane * sizeof(T));
    for (int i = 0; i < k; ++i) {
        check(cudaMemcpy(d_focus.as<uint32_t>() + i * hw, focus[i], hw * sizeof(uint32_t), cudaMemcpyHostToDevice),
              "cudaMemcpy (focus map to device)");
        check(cudaMemcpy(d_frames.as<T>() + i * plane, frames[i], plane * sizeof(T), cudaMemcpyHostToDevice),
              "cudaMemcpy (frame to device)");
    }
    const int threads = 256;
    const unsigned blocks = static_cast<unsigned>((hw + threads - 1) / threads);
    argmax_kernel<<<blocks, threads>>>(d_focus.as<uint32_t>(), k, static_cast<long long>(hw), params.flat_threshold,
                                       d_raw.as<uint8_t>(), d_depth.as<float>(), d_conf.as<float>());
    check(cudaGetLastError(), "argmax_kernel launch");
    const dim3 block(32, 8), grid((w + 31) / 32, (h + 7) / 8);
    filter_kernel<<<grid, block>>>(d_raw.as<uint8_t>(), k, h, w, params.filter_radius, d_labels.as<uint8_t>(),
                                   d_depth.as<float>(), d_conf.as<float>());
    check(cudaGetLastError(), "filter_kernel launch");
    blend_kernel<T><<<grid, block>>>(d_frames.as<T>(), k, h, w, c, d_labels.as<uint8_t>(), params.blend_radius,
                                     d_out.as<T>());
    check(cudaGetLastError(), "blend_kernel launch");
    check(cudaDeviceSynchronize(), "kernel execution");
    check(cudaMemcpy(out, d_out.ptr, plane * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy (image to host)");
    check(cudaMemcpy(depth, d_depth.ptr, hw * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy (depth to host)");
    check(cudaMemcpy(confidence, d_conf.ptr, hw * sizeof(float), cudaMemcpyDeviceToHost),
          "cudaMemcpy (confidence to host)");
    check(cudaMemcpy(labels, d_labels.ptr, hw, cudaMemcpyDeviceToHost), "cudaMemcpy (labels to host)");
}

}  // namespace

void fuse_stack_cuda(const void* const* frames, int bytes_per_sample, const uint32_t* const* focus, int k, int h,
                     int w, int c, const DecisionParams& params, void* out, float* depth, float* confidence,
                     uint8_t* labels) {
    check_decision_params(k, h, w, params);
    if (c < 1 || c > 16) throw std::invalid_argument("frames must have 1..16 channels, got " + std::to_string(c));
    if (bytes_per_sample == 1) {
        std::vector<const uint8_t*> f(k);
        for (int i = 0; i < k; ++i) f[i] = static_cast<const uint8_t*>(frames[i]);
        run<uint8_t>(f.data(), focus, k, h, w, c, params, static_cast<uint8_t*>(out), depth, confidence, labels);
    } else if (bytes_per_sample == 2) {
        std::vector<const uint16_t*> f(k);
        for (int i = 0; i < k; ++i) f[i] = static_cast<const uint16_t*>(frames[i]);
        run<uint16_t>(f.data(), focus, k, h, w, c, params, static_cast<uint16_t*>(out), depth, confidence, labels);
    } else {
        throw std::invalid_argument("bytes_per_sample must be 1 or 2, got " + std::to_string(bytes_per_sample));
    }
}

}  // namespace surgifuse
