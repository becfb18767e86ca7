// Focus Measure Block on the CPU: thresholded sum-modified-Laplacian (Nayar & Nakagawa 1994) as
// specified by the retinal-microsurgery Fusion Network paper; see focus_measure.hpp for the maths.
//
// Row-streaming design: each chunk of output rows keeps a ring of the 2N+1 thresholded ML rows of
// its window and their running column sums; a new output row costs one new ML row (fused with the
// column-sum update) and one horizontal box sum. Channels stay interleaved: the horizontal
// neighbour of element e is e +- step*C, so the inner loops are plain unit-stride loops that the
// compiler vectorises (SIMD evidence in docs/focus-measure.md).
#include "focus_measure.hpp"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "streaming_store.hpp"
#include "thread_pool.hpp"

namespace surgifuse {
namespace {

// reflect-101 for offsets of at most n - 1 (checked by check_focus_params).
inline int64_t reflect101(int64_t i, int64_t n) {
    if (n == 1) return 0;
    if (i < 0) return -i;
    if (i >= n) return 2 * (n - 1) - i;
    return i;
}

// Signed type wide enough for 2*I - a - b, and the ML storage type.
template <class T> struct Types;
template <> struct Types<uint8_t> {
    using Diff = int16_t;  // |2I - a - b| <= 510
    using ML = uint16_t;   // ML <= 1020
};
template <> struct Types<uint16_t> {
    using Diff = int32_t;
    using ML = uint32_t;  // ML <= 262140
};

// Thresholded ML of one element from its centre and four neighbours. Written with std::abs on
// the narrow signed type so that GCC emits pabsw/vpabsw (a ?: form compiled to compare+blend).
template <class T>
inline typename Types<T>::ML ml_value(T centre, T left, T right, T up, T down, typename Types<T>::ML thr) {
    using D = typename Types<T>::Diff;
    using M = typename Types<T>::ML;
    const D c = D(centre);
    const D dh = D(D(c - D(left)) + D(c - D(right)));
    const D dv = D(D(c - D(up)) + D(c - D(down)));
    const M m = M(M(std::abs(dh)) + M(std::abs(dv)));
    return m >= thr ? m : M(0);
}

// Thresholded ML of one element, any position (scalar path for the left/right borders).
template <class T>
inline typename Types<T>::ML ml_scalar(const T* cur, const T* up, const T* dn, int64_t px, int64_t c,
                                        int64_t width, int64_t channels, int64_t step,
                                        typename Types<T>::ML thr) {
    const int64_t e = px * channels + c;
    return ml_value<T>(cur[e], cur[reflect101(px - step, width) * channels + c],
                       cur[reflect101(px + step, width) * channels + c], up[e], dn[e], thr);
}

// Pixels [0, left_end) and [right_begin, width) need reflected horizontal neighbours; the
// interior between them is a branch-free unit-stride loop.
inline void interior_span(int64_t width, int64_t step, int64_t& left_end, int64_t& right_begin) {
    left_end = std::min(step, width);
    right_begin = std::max(left_end, width - step);
}

// Computes the thresholded ML row of image row `cur` (vertical neighbours up/dn), stores it in
// `slot` and adds (new - old slot value) to the column sums `cs` (both wrap around in unsigned
// arithmetic, which is exact because every true sum fits in A).
template <class T, class A>
void update_ml_row(const T* cur, const T* up, const T* dn, int64_t width, int64_t channels,
                   int64_t step, typename Types<T>::ML thr, typename Types<T>::ML* __restrict slot,
                   A* __restrict cs) {
    using M = typename Types<T>::ML;
    auto scalar_px = [&](int64_t px) {
        for (int64_t c = 0; c < channels; ++c) {
            const int64_t e = px * channels + c;
            const M m = ml_scalar<T>(cur, up, dn, px, c, width, channels, step, thr);
            cs[e] = A(cs[e] + A(m) - A(slot[e]));
            slot[e] = m;
        }
    };
    int64_t left_end, right_begin;
    interior_span(width, step, left_end, right_begin);
    for (int64_t px = 0; px < left_end; ++px) scalar_px(px);
    const int64_t sc = step * channels;
    const T* __restrict pc = cur;
    const T* __restrict pu = up;
    const T* __restrict pd = dn;
    for (int64_t e = left_end * channels; e < right_begin * channels; ++e) {
        const M m = ml_value<T>(pc[e], pc[e - sc], pc[e + sc], pu[e], pd[e], thr);
        cs[e] = A(cs[e] + A(m) - A(slot[e]));
        slot[e] = m;
    }
    for (int64_t px = right_begin; px < width; ++px) scalar_px(px);
}

// The thresholded ML row of image row `cur`, written to `out` (W*C values).
template <class T>
void masked_ml_row(const T* cur, const T* up, const T* dn, int64_t width, int64_t channels, int64_t step,
                   typename Types<T>::ML thr, typename Types<T>::ML* __restrict out) {
    int64_t left_end, right_begin;
    interior_span(width, step, left_end, right_begin);
    auto scalar_px = [&](int64_t px) {
        for (int64_t c = 0; c < channels; ++c)
            out[px * channels + c] = ml_scalar<T>(cur, up, dn, px, c, width, channels, step, thr);
    };
    for (int64_t px = 0; px < left_end; ++px) scalar_px(px);
    const int64_t sc = step * channels;
    const T* __restrict pc = cur;
    const T* __restrict pu = up;
    const T* __restrict pd = dn;
    for (int64_t e = left_end * channels; e < right_begin * channels; ++e)
        out[e] = ml_value<T>(pc[e], pc[e - sc], pc[e + sc], pu[e], pd[e], thr);
    for (int64_t px = right_begin; px < width; ++px) scalar_px(px);
}

// Per pixel: s = sum of the channels of ml; cs += s - slot; slot = s (focus_map's column sums).
template <class M>
void channel_sum_update(const M* __restrict ml, int64_t width, int64_t channels, uint32_t* __restrict slot,
                        uint32_t* __restrict cs) {
    if (channels == 3) {
        for (int64_t p = 0; p < width; ++p) {
            // Three ML values fit M (3 * 1020 for uint8): add before widening, fewer lanes to move.
            const uint32_t sum = uint32_t(M(ml[3 * p] + ml[3 * p + 1] + ml[3 * p + 2]));
            cs[p] += sum - slot[p];
            slot[p] = sum;
        }
        return;
    }
    for (int64_t p = 0; p < width; ++p) {
        uint32_t sum = 0;
        for (int64_t c = 0; c < channels; ++c) sum += uint32_t(ml[p * channels + c]);
        cs[p] += sum - slot[p];
        slot[p] = sum;
    }
}

// Fills the `halo` pixels on each side of a padded row (interior starts at halo*channels) with
// the reflect-101 image of the interior.
template <class A>
void fill_halo(A* padded, int64_t width, int64_t channels, int64_t halo) {
    A* row = padded + halo * channels;
    for (int64_t j = 1; j <= halo; ++j) {
        const int64_t src_l = reflect101(-j, width), src_r = reflect101(width - 1 + j, width);
        for (int64_t c = 0; c < channels; ++c) {
            row[-j * channels + c] = row[src_l * channels + c];
            row[(width - 1 + j) * channels + c] = row[src_r * channels + c];
        }
    }
}

// out[e] = sum_{k=0..2N} in[e + k*stride] for e in [0, n): horizontal box over a padded row.
// The paper's windows (N <= 3) sum in one pass with a compile-time tap count (a separate copy
// pass cost 19% of the run time in perf); larger windows add the remaining taps pass by pass
// while the row stays in L1.
template <int Taps, class A, class O>
void box_row_fixed(const A* __restrict in, int64_t n, int64_t stride, O* __restrict out) {
    for (int64_t e = 0; e < n; ++e) {
        O sum = O(in[e]);
        for (int k = 1; k < Taps; ++k) sum = O(sum + O(in[e + k * stride]));
        out[e] = sum;
    }
}

template <class A, class O>
void box_row(const A* __restrict in, int64_t n, int64_t stride, int64_t window, O* __restrict out) {
    switch (window) {
        case 0: return box_row_fixed<1>(in, n, stride, out);
        case 1: return box_row_fixed<3>(in, n, stride, out);
        case 2: return box_row_fixed<5>(in, n, stride, out);
        case 3: return box_row_fixed<7>(in, n, stride, out);
        default: break;
    }
    box_row_fixed<7>(in, n, stride, out);
    for (int64_t k = 7; k <= 2 * window; ++k) {
        const A* __restrict src = in + k * stride;
        for (int64_t e = 0; e < n; ++e) out[e] = O(out[e] + O(src[e]));
    }
}

// Where finished output rows go: straight into the output or, for outputs of kStreamingStoreBytes
// and more, through an L1-sized scratch row copied out with streaming stores (streaming_store.hpp).
// The destructor fences them before the chunk counts as done.
template <class O>
class OutputRows {
  public:
    OutputRows(O* out, int64_t row_elems, bool streaming)
        : out_(out), row_elems_(row_elems), streaming_(streaming && kHaveStreamingStores) {
        if (streaming_) scratch_.resize(size_t(row_elems));
    }
    ~OutputRows() {
        if (streaming_) stream_fence();
    }
    OutputRows(const OutputRows&) = delete;
    OutputRows& operator=(const OutputRows&) = delete;

    O* row(int64_t y) { return streaming_ ? scratch_.data() : out_ + y * row_elems_; }
    void commit(int64_t y) {
        if (streaming_) stream_copy(scratch_.data(), out_ + y * row_elems_, row_elems_ * int64_t(sizeof(O)));
    }

  private:
    O* out_;
    int64_t row_elems_;
    bool streaming_;
    std::vector<O> scratch_;
};

// Thresholds above the largest ML behave like max_ml + 1 (nothing counts) and then fit the ML type.
inline uint64_t clamp_threshold(int64_t threshold, int64_t max_ml) {
    return uint64_t(std::min<int64_t>(threshold, max_ml + 1));
}

// Reflected image rows of one ML row: virtual row v, Laplacian spacing step.
template <class T>
struct MlRowSource {
    const T* image;
    int64_t height, row_elems, step;
    void rows(int64_t virtual_row, const T*& cur, const T*& up, const T*& dn) const {
        const int64_t r = reflect101(virtual_row, height);
        cur = image + r * row_elems;
        up = image + reflect101(r - step, height) * row_elems;
        dn = image + reflect101(r + step, height) * row_elems;
    }
};

// Output rows [y0, y1) of the per-channel maps (SumChannels false, out H*W*C) or, for one
// channel, of the map (out H*W). A: column-sum type; O: output type.
template <class T, class A, class O, bool SumChannels>
void focus_rows(const T* image, int64_t height, int64_t width, int64_t channels, const FocusParams& p,
                O* out, int64_t y0, int64_t y1, bool streaming) {
    using M = typename Types<T>::ML;
    const int64_t n = p.window, span = 2 * n + 1;
    const int64_t wc = width * channels;
    const M thr = M(clamp_threshold(p.threshold, int64_t(std::numeric_limits<T>::max()) * 4));
    const MlRowSource<T> src{image, height, wc, p.step};

    // ring: the 2N+1 thresholded ML rows of the window; cs: their column sums, padded by N pixels.
    std::vector<M> ring(size_t(span * wc), M(0));
    std::vector<A> cs_padded(size_t((width + 2 * n) * channels), A(0));
    A* cs = cs_padded.data() + n * channels;
    OutputRows<O> rows(out, wc, streaming);
    auto add_row = [&](int64_t virtual_row, int64_t slot_index) {
        const T *cur, *up, *dn;
        src.rows(virtual_row, cur, up, dn);
        update_ml_row<T, A>(cur, up, dn, width, channels, p.step, thr, ring.data() + slot_index * wc, cs);
    };
    for (int64_t k = 0; k < span; ++k) add_row(y0 - n + k, k);
    for (int64_t y = y0; y < y1; ++y) {
        if (y > y0) add_row(y + n, (y - y0 + 2 * n) % span);  // replaces row y-1-N in its slot
        fill_halo(cs_padded.data(), width, channels, n);
        box_row(cs_padded.data(), wc, channels, n, rows.row(y));
        rows.commit(y);
    }
}

// Output rows [y0, y1) of the channel-summed map for C > 1. The box sum is linear, so the
// channels are summed right after thresholding: the ring and column sums hold one value per
// pixel instead of C (less memory traffic than summing the per-channel column sums).
template <class T>
void focus_map_rows(const T* image, int64_t height, int64_t width, int64_t channels, const FocusParams& p,
                    uint32_t* out, int64_t y0, int64_t y1, bool streaming) {
    using M = typename Types<T>::ML;
    const int64_t n = p.window, span = 2 * n + 1;
    const M thr = M(clamp_threshold(p.threshold, int64_t(std::numeric_limits<T>::max()) * 4));
    const MlRowSource<T> src{image, height, width * channels, p.step};

    std::vector<M> ml(size_t(width * channels));
    std::vector<uint32_t> ring(size_t(span * width), 0u);
    std::vector<uint32_t> cs_padded(size_t(width + 2 * n), 0u);
    uint32_t* cs = cs_padded.data() + n;
    OutputRows<uint32_t> rows(out, width, streaming);
    auto add_row = [&](int64_t virtual_row, int64_t slot_index) {
        const T *cur, *up, *dn;
        src.rows(virtual_row, cur, up, dn);
        masked_ml_row<T>(cur, up, dn, width, channels, p.step, thr, ml.data());
        channel_sum_update(ml.data(), width, channels, ring.data() + slot_index * width, cs);
    };
    for (int64_t k = 0; k < span; ++k) add_row(y0 - n + k, k);
    for (int64_t y = y0; y < y1; ++y) {
        if (y > y0) add_row(y + n, (y - y0 + 2 * n) % span);
        fill_halo(cs_padded.data(), width, 1, n);
        box_row(cs_padded.data(), width, 1, n, rows.row(y));
        rows.commit(y);
    }
}

// AVX-512 (x86-64-v4), AVX2 and baseline (x86-64-v2, SSE4.2) copies of the row kernel, picked at
// load time (ifunc): AVX2 measured 1.5x faster than the baseline on 1080p RGB, while the module
// still runs on any x86-64-v2 CPU.
// flatten inlines the whole kernel into each copy so that every loop gets the copy's target.
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define SF_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "avx2", "default"), flatten))

#else
#define SF_MULTIVERSION

#endif

template <class A, bool SumChannels> struct KernelTag {};

#define SF_ROW_KERNEL(T, A, O, S)                                                                      \
    SF_MULTIVERSION void row_kernel(const T* image, int64_t h, int64_t w, int64_t c, const FocusParams& p, \
                                    O* out, int64_t y0, int64_t y1, bool streaming, KernelTag<A, S>) {    \
        focus_rows<T, A, O, S>(image, h, w, c, p, out, y0, y1, streaming);                                \
    }
SF_ROW_KERNEL(uint8_t, uint16_t, uint16_t, false)
SF_ROW_KERNEL(uint8_t, uint16_t, uint32_t, false)
SF_ROW_KERNEL(uint8_t, uint32_t, uint32_t, false)
SF_ROW_KERNEL(uint16_t, uint32_t, uint32_t, false)
SF_ROW_KERNEL(uint8_t, uint16_t, uint32_t, true)
SF_ROW_KERNEL(uint8_t, uint32_t, uint32_t, true)
SF_ROW_KERNEL(uint16_t, uint32_t, uint32_t, true)
#undef SF_ROW_KERNEL

#define SF_MAP_KERNEL(T)                                                                               \
    SF_MULTIVERSION void map_kernel(const T* image, int64_t h, int64_t w, int64_t c, const FocusParams& p, \
                                    uint32_t* out, int64_t y0, int64_t y1, bool streaming) {              \
        focus_map_rows<T>(image, h, w, c, p, out, y0, y1, streaming);                                     \
    }
SF_MAP_KERNEL(uint8_t)
SF_MAP_KERNEL(uint16_t)
#undef SF_MAP_KERNEL

// ------------------------------------------------------------------- 3x3 window, uint8, AVX-512BW
// The paper's setting (uint8 input, N = 1) on AVX-512BW CPUs: the three ML rows of the window sit
// in a ring and each output vector of 32 values is summed vertically and then horizontally in
// registers (the neighbours C elements to the left and right come from two-register permutes), so
// a row costs one ML pass and one summing pass, with no column-sum state and no scratch copy: 1.3x
// faster than the generic kernels' AVX-512 copy at 1080p RGB on one thread, bit-identical (sums of
// at most 9 * 1020 stay exact in 16 bits). Ring rows carry the reflect-101 ML of pixels -1 and W,
// so the left and right borders come out of the same loop. SURGIFUSE_FMB_KERNEL=generic turns it off
// (the tests compare the two).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SF_HAVE_BOX3_AVX512 1
#define SF_TARGET_AVX512 __attribute__((target("avx512f,avx512bw")))

constexpr int64_t kBox3Lanes = 32;  // uint16 values per 512-bit vector
constexpr int64_t kBox3Pad = 64;    // zeroed ring entries before and after each row

// The thresholded ML row of virtual row v into row[0, W*C), and the reflect-101 ML of pixels -1 and
// W at row[-C, 0) and row[W*C, W*C + C). A function of its own so that the row loop compiles for
// AVX-512 (a lambda does not inherit its enclosing function's target).
SF_TARGET_AVX512 void box3_ml_row(const MlRowSource<uint8_t>& src, int64_t width, int64_t c, uint16_t thr,
                                  int64_t v, uint16_t* row) {
    const uint8_t *cur, *up, *dn;
    src.rows(v, cur, up, dn);
    masked_ml_row<uint8_t>(cur, up, dn, width, c, src.step, thr, row);
    const int64_t wc = width * c;
    for (int64_t k = 0; k < c; ++k) {
        row[-c + k] = row[reflect101(-1, width) * c + k];
        row[wc + k] = row[reflect101(width, width) * c + k];
    }
}

SF_TARGET_AVX512 inline __m512i box3_vertical(const uint16_t* r0, const uint16_t* r1, const uint16_t* r2, int64_t e) {
    return _mm512_add_epi16(_mm512_add_epi16(_mm512_loadu_si512(r0 + e), _mm512_loadu_si512(r1 + e)),
                            _mm512_loadu_si512(r2 + e));
}

// Output rows [y0, y1) of focus_measure for uint8 input, window 1, C <= 16 channels.
SF_TARGET_AVX512 void box3_rows_avx512(const uint8_t* image, int64_t height, int64_t width, int64_t c,
                                       const FocusParams& p, uint16_t* out, int64_t y0, int64_t y1, bool streaming) {
    const int64_t wc = width * c;
    const uint16_t thr = uint16_t(clamp_threshold(p.threshold, 4 * 255));
    const MlRowSource<uint8_t> src{image, height, wc, p.step};
    const int64_t stride = kBox3Pad + (wc + kBox3Lanes - 1) / kBox3Lanes * kBox3Lanes + kBox3Pad;
    std::vector<uint16_t> ring(static_cast<size_t>(3 * stride), uint16_t(0));
    auto ring_row = [&](int64_t v) { return ring.data() + ((v % 3 + 3) % 3) * stride + kBox3Pad; };
    // Lane i of the permutes takes concat(prev, cur)[32 - C + i] and concat(cur, next)[C + i].
    alignas(64) uint16_t left_idx[kBox3Lanes], right_idx[kBox3Lanes];
    for (int64_t i = 0; i < kBox3Lanes; ++i) {
        left_idx[i] = uint16_t(kBox3Lanes - c + i);
        right_idx[i] = uint16_t(c + i);
    }
    const __m512i to_left = _mm512_load_si512(left_idx), to_right = _mm512_load_si512(right_idx);
    box3_ml_row(src, width, c, thr, y0 - 1, ring_row(y0 - 1));
    box3_ml_row(src, width, c, thr, y0, ring_row(y0));
    for (int64_t y = y0; y < y1; ++y) {
        box3_ml_row(src, width, c, thr, y + 1, ring_row(y + 1));  // replaces row y - 2
        const uint16_t *r0 = ring_row(y - 1), *r1 = ring_row(y), *r2 = ring_row(y + 1);
        uint16_t* dst = out + y * wc;
        // Vectors start at e0 + 32j, e0 in [-32, 0), with dst + e0 + 32 on a 64-byte boundary, so
        // that every full vector can be a streaming store; the partial first and last are masked.
        const int64_t e0 = int64_t(((64 - (reinterpret_cast<uintptr_t>(dst) & 63)) & 63) / 2) - kBox3Lanes;
        __m512i prev = box3_vertical(r0, r1, r2, e0 - kBox3Lanes), cur = box3_vertical(r0, r1, r2, e0);
        for (int64_t e = e0; e < wc; e += kBox3Lanes) {
            const __m512i next = box3_vertical(r0, r1, r2, e + kBox3Lanes);
            const __m512i sum = _mm512_add_epi16(_mm512_add_epi16(cur, _mm512_permutex2var_epi16(prev, to_left, cur)),
                                                 _mm512_permutex2var_epi16(cur, to_right, next));
            if (e >= 0 && e + kBox3Lanes <= wc) {
                if (streaming)
                    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + e), sum);
                else
                    _mm512_storeu_si512(dst + e, sum);
            } else {
                const int64_t lo = std::max<int64_t>(0, -e), hi = std::min<int64_t>(kBox3Lanes, wc - e);
                const uint64_t below_hi = hi >= 32 ? 0xFFFFFFFFull : (uint64_t(1) << hi) - 1;
                _mm512_mask_storeu_epi16(dst + e, __mmask32(below_hi & ~((uint64_t(1) << lo) - 1)), sum);
            }
            prev = cur;
            cur = next;
        }
    }
    if (streaming) stream_fence();
}

// Whether focus_measure(uint8, window 1) takes box3_rows_avx512 on this CPU.
bool use_box3_avx512() {
    static const bool yes = [] {
        const char* forced = std::getenv("SURGIFUSE_FMB_KERNEL");
        if (forced && std::string(forced) == "generic") return false;
        return static_cast<bool>(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"));
    }();
    return yes;
}

// The permutes reach at most 32 - C lanes across: C <= 16.
bool box3_applies(const FocusParams& p, int64_t channels) {
    return p.window == 1 && channels <= 16 && use_box3_avx512();
}
#undef SF_TARGET_AVX512
#else
bool use_box3_avx512() { return false; }
#endif

template <class T, class A, class O, bool SumChannels>
void run_focus(const T* image, int64_t height, int64_t width, int64_t channels, const FocusParams& p,
               O* out, int num_threads) {
    check_focus_params(height, width, channels, p, int(sizeof(T)), SumChannels);
    // Each chunk recomputes 2N halo ML rows; 16+ rows per chunk keeps that under ~15%.
    const int64_t min_rows = std::max<int64_t>(16, 8 * p.window);
    const int64_t out_elems = height * width * (SumChannels ? 1 : channels);
    const bool streaming = out_elems * int64_t(sizeof(O)) >= kStreamingStoreBytes;
    parallel_for(
        0, height,
        [&](int64_t y0, int64_t y1) {
            if constexpr (SumChannels) {
                if (channels > 1) return map_kernel(image, height, width, channels, p, out, y0, y1, streaming);
            }
#if defined(SF_HAVE_BOX3_AVX512)
            if constexpr (std::is_same_v<T, uint8_t> && std::is_same_v<O, uint16_t> && !SumChannels) {
                if (box3_applies(p, channels))
                    return box3_rows_avx512(image, height, width, channels, p, out, y0, y1, streaming);
            }
#endif
            row_kernel(image, height, width, channels, p, out, y0, y1, streaming, KernelTag<A, SumChannels>{});
        },
        num_threads, min_rows);
}

template <class T, int C>
SF_MULTIVERSION void luma_row(const T* __restrict src, int64_t width, T* __restrict dst) {
    for (int64_t x = 0; x < width; ++x) {
        const uint32_t v = 77u * src[x * C] + 150u * src[x * C + 1] + 29u * src[x * C + 2] + 128u;
        dst[x] = T(v >> 8);
    }
}

template <class T>
void luma_row_any(const T* __restrict src, int64_t width, int64_t channels, T* __restrict dst) {
    for (int64_t x = 0; x < width; ++x) {
        const T* px = src + x * channels;
        dst[x] = T((77u * px[0] + 150u * px[1] + 29u * px[2] + 128u) >> 8);
    }
}

template <class T>
void run_luma(const T* image, int64_t height, int64_t width, int64_t channels, T* out, int num_threads) {
    if (height <= 0 || width <= 0) throw std::invalid_argument("image is empty");
    if (channels < 3)
        throw std::invalid_argument("grey conversion needs at least 3 channels (RGB), got " +
                                    std::to_string(channels));
    parallel_for(
        0, height,
        [&](int64_t y0, int64_t y1) {
            for (int64_t y = y0; y < y1; ++y) {
                const T* src = image + y * width * channels;
                T* dst = out + y * width;
                // A compile-time channel count lets the compiler vectorise the interleaved loads.
                if (channels == 3)
                    luma_row<T, 3>(src, width, dst);
                else if (channels == 4)
                    luma_row<T, 4>(src, width, dst);
                else
                    luma_row_any(src, width, channels, dst);
            }
        },
        num_threads, 64);
}

}  // namespace

const char* focus_measure_kernel() { return use_box3_avx512() ? "box3-avx512" : "generic"; }

// Each |2I - a - b| is at most 2 * max, so ML <= 4 * max (1020 for uint8, not the 2040 one may expect).
int64_t max_modified_laplacian(int bytes_per_sample) { return bytes_per_sample == 1 ? 1020 : 262140; }

bool focus_measure_fits_uint16(int bytes_per_sample, int64_t window) {
    if (bytes_per_sample != 1 || window < 0 || window > 1000) return false;
    const int64_t side = 2 * window + 1;
    return side * side * max_modified_laplacian(1) <= 65535;
}

void check_focus_params(int64_t height, int64_t width, int64_t channels, const FocusParams& p,
                        int bytes_per_sample, bool sum_channels) {
    if (height <= 0 || width <= 0 || channels <= 0)
        throw std::invalid_argument("image is empty (height " + std::to_string(height) + ", width " +
                                    std::to_string(width) + ", channels " + std::to_string(channels) + ")");
    if (p.step < 1) throw std::invalid_argument("step must be >= 1, got " + std::to_string(p.step));
    if (p.window < 0) throw std::invalid_argument("window must be >= 0, got " + std::to_string(p.window));
    if (p.threshold < 0)
        throw std::invalid_argument("threshold must be >= 0, got " + std::to_string(p.threshold));
    auto check_axis = [&](int64_t n, const char* axis) {
        if (n == 1) return;  // a length-1 axis reflects onto itself
        if (p.step > n - 1)
            throw std::invalid_argument("step=" + std::to_string(p.step) + " is too large for image " + axis +
                                        " " + std::to_string(n) + " (reflect-101 border needs step <= " +
                                        axis + " - 1)");
        if (p.window > n - 1)
            throw std::invalid_argument("window=" + std::to_string(p.window) + " is too large for image " +
                                        axis + " " + std::to_string(n) + " (reflect-101 border needs window <= " +
                                        axis + " - 1)");
    };
    check_axis(height, "height");
    check_axis(width, "width");
    // uint32 bound: channels * (2N+1)^2 * max ML must fit (window is already < image size).
    const long double side = 2.0L * p.window + 1.0L;
    const long double bound = side * side * max_modified_laplacian(bytes_per_sample) * (sum_channels ? channels : 1);
    if (bound > 4294967295.0L)
        throw std::invalid_argument("window=" + std::to_string(p.window) +
                                    " is too large: the focus measure could overflow uint32");
}

void focus_measure(const uint8_t* image, int64_t h, int64_t w, int64_t c, const FocusParams& p, uint16_t* out,
                   int threads) {
    if (!focus_measure_fits_uint16(1, p.window))
        throw std::invalid_argument("window=" + std::to_string(p.window) +
                                    " can overflow uint16: use the uint32 output (uint16 holds window <= 3)");
    run_focus<uint8_t, uint16_t, uint16_t, false>(image, h, w, c, p, out, threads);
}
void focus_measure(const uint8_t* image, int64_t h, int64_t w, int64_t c, const FocusParams& p, uint32_t* out,
                   int threads) {
    // Column sums of up to 2N+1 <= 64 rows of ML <= 1020 fit uint16: half the memory traffic.
    if (2 * p.window + 1 <= 64)
        run_focus<uint8_t, uint16_t, uint32_t, false>(image, h, w, c, p, out, threads);
    else
        run_focus<uint8_t, uint32_t, uint32_t, false>(image, h, w, c, p, out, threads);
}
void focus_measure(const uint16_t* image, int64_t h, int64_t w, int64_t c, const FocusParams& p, uint32_t* out,
                   int threads) {
    run_focus<uint16_t, uint32_t, uint32_t, false>(image, h, w, c, p, out, threads);
}
void focus_map(const uint8_t* image, int64_t h, int64_t w, int64_t c, const FocusParams& p, uint32_t* out,
               int threads) {
    if (2 * p.window + 1 <= 64)
        run_focus<uint8_t, uint16_t, uint32_t, true>(image, h, w, c, p, out, threads);
    else
        run_focus<uint8_t, uint32_t, uint32_t, true>(image, h, w, c, p, out, threads);
}
void focus_map(const uint16_t* image, int64_t h, int64_t w, int64_t c, const FocusParams& p, uint32_t* out,
               int threads) {
    run_focus<uint16_t, uint32_t, uint32_t, true>(image, h, w, c, p, out, threads);
}
void rgb_to_luma(const uint8_t* image, int64_t h, int64_t w, int64_t c, uint8_t* out, int threads) {
    run_luma(image, h, w, c, out, threads);
}
void rgb_to_luma(const uint16_t* image, int64_t h, int64_t w, int64_t c, uint16_t* out, int threads) {
    run_luma(image, h, w, c, out, threads);
}

}  // namespace surgifuse
