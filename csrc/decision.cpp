// Stack decision for focal-stack fusion (see decision.hpp): arg-max of the sum-modified-Laplacian
// focus measure (Nayar & Nakagawa 1994), majority-filter consistency verification (Li, Manjunath &
// Mitra 1995; Li, Kwok & Wang 2001) and a soft blend where the filtered labels change.
//
// Speed: the three stages run row by row over bands of rows, with small ring buffers of rows, so
// that the intermediates (raw labels, offsets, filtered labels) stay in cache and every focus map
// and frame is read once from memory. Each stage is written as loops over a row that the compiler
// vectorises (or SSE4.1 where it does not); only pixels at label boundaries take a scalar path.
#include "decision.hpp"
#include "decision_isa.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#elif defined(__SSE4_1__)
#include <smmintrin.h>
#endif

#include "thread_pool.hpp"

namespace surgifuse {
namespace SURGIFUSE_DECISION_ISA {
namespace {

// A ring of `size` rows of `w` items: row y lives in slot y % size.
template <typename T>
struct RowRing {
    int w, size;
    std::vector<T> data;
    RowRing(int w_, int size_) : w(w_), size(size_), data(static_cast<size_t>(w_) * static_cast<size_t>(size_)) {}
    T* row(int64_t y) { return data.data() + static_cast<size_t>(y % size) * static_cast<size_t>(w); }
};

// Clipped window width per column: min(w-1, x+r) - max(0, x-r) + 1.
std::vector<uint8_t> window_widths(int w, int r) {
    std::vector<uint8_t> out(static_cast<size_t>(w));
    for (int x = 0; x < w; ++x) out[x] = static_cast<uint8_t>(std::min(w - 1, x + r) - std::max(0, x - r) + 1);
    return out;
}

// ------------------------------------------------------------------------------- 1. arg-max

// SSE converts only signed 32-bit integers to float in vectors; focus values stay far below 2^31
// (uint16 input, 15x15 window, 4 channels: 2.4e8), the clamp only keeps the cast defined.
inline float to_float(uint32_t v) { return static_cast<float>(static_cast<int32_t>(std::min<uint32_t>(v, 0x7FFFFFFFu))); }

// The rules for one pixel; f(i) is frame i's focus value. The vector path below computes the same
// values with the same float operations in the same order.
template <typename F>
inline void argmax_pixel(F&& f, int k, uint32_t flat_threshold, uint8_t& raw, float& offset, float& contrast) {
    uint32_t best = f(0), second = 0, label = 0, before = 0, after = 0;
    for (int i = 1; i < k; ++i) {
        const uint32_t v = f(i);
        if (label + 1 == static_cast<uint32_t>(i)) after = v;
        second = std::max(second, std::min(v, best));
        if (v > best) {
            before = f(i - 1);
            best = v;
            label = static_cast<uint32_t>(i);
        }
    }
    if (best <= flat_threshold) {
        raw = static_cast<uint8_t>(k);
        offset = 0.0f;
        contrast = 0.0f;
        return;
    }
    raw = static_cast<uint8_t>(label);
    contrast = to_float(best - second) / to_float(best);
    offset = 0.0f;
    const float fm = to_float(before), b = to_float(best), fp = to_float(after);
    const float denom = fm - 2.0f * b + fp;
    // Interior peaks only; denom < 0 there unless the three values are equal (then no offset).
    if (label > 0 && static_cast<int>(label) < k - 1 && denom < 0.0f)
        offset = std::min(0.5f, std::max(-0.5f, (fm - fp) / (2.0f * denom)));
}

// The arg-max reads K maps in K parallel streams, one cache line per 16 pixels and map; the hardware
// prefetchers left it stalled on those loads (half its samples in perf at 1080p, K=5). Fetching
// each map's line 1 KB ahead made the 1080p decision 1.3x faster on two threads (1.1-1.3x on one).
// The RGB8 blend kernels read the K frames the same way and prefetch them as far ahead.
constexpr size_t kPrefetchBytes = 1024;

// Asks for the cache line `bytes` past p. The address is computed as an integer, so that past the
// end of an array there is no out-of-bounds pointer; a prefetch never faults.
inline void prefetch_ahead(const void* p, size_t bytes) {
    __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) + bytes), 0, 3);
}

// Also past the end of a row: that is the start of the band's next row.
inline void prefetch_stack(const uint32_t* const* focus, int k, int64_t p) {
    for (int i = 0; i < k; ++i) prefetch_ahead(focus[i] + p, kPrefetchBytes);
}

// One row: per pixel the arg-max label (lowest index on ties; K where best <= flat_threshold), the
// parabolic sub-frame offset of the peak and the contrast (best - second) / best.
void argmax_row(const uint32_t* const* focus, int k, int w, int64_t base, uint32_t flat_threshold,
                uint8_t* __restrict raw, float* __restrict offset, float* __restrict contrast) {
    int x = 0;
#if defined(__AVX2__)
    // The AVX2 copy (decision_isa.hpp): the four-pixel loop below on eight pixels.
    {
        const __m256i sign = _mm256_set1_epi32(INT32_MIN);
        const __m256i flat = _mm256_set1_epi32(static_cast<int>(flat_threshold));
        const __m256i max31 = _mm256_set1_epi32(0x7FFFFFFF);
        const __m256i zero = _mm256_setzero_si256();
        const __m256i last = _mm256_set1_epi32(k - 1);
        const __m256i flat_label = _mm256_set1_epi32(k);
        const __m256 two = _mm256_set1_ps(2.0f);
        for (; x + 8 <= w; x += 8) {
            const int64_t p = base + x;
            if ((x & 15) == 0) prefetch_stack(focus, k, p);
            __m256i best = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(focus[0] + p)), sign);
            __m256i second = sign, next_label = _mm256_set1_epi32(1), before = sign, after = sign, prev = best;
            for (int i = 1; i < k; ++i) {
                const __m256i v = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(focus[i] + p)), sign);
                after = _mm256_blendv_epi8(after, v, _mm256_cmpeq_epi32(next_label, _mm256_set1_epi32(i)));
                second = _mm256_max_epi32(second, _mm256_min_epi32(v, best));
                const __m256i greater = _mm256_cmpgt_epi32(v, best);
                before = _mm256_blendv_epi8(before, prev, greater);
                next_label = _mm256_blendv_epi8(next_label, _mm256_set1_epi32(i + 1), greater);
                best = _mm256_max_epi32(v, best);
                prev = v;
            }
            best = _mm256_xor_si256(best, sign);
            second = _mm256_xor_si256(second, sign);
            before = _mm256_xor_si256(before, sign);
            after = _mm256_xor_si256(after, sign);
            const __m256i label = _mm256_sub_epi32(next_label, _mm256_set1_epi32(1));
            const __m256i is_flat = _mm256_cmpeq_epi32(_mm256_min_epu32(best, flat), best);
            const __m256 bf = _mm256_cvtepi32_ps(_mm256_min_epu32(best, max31));
            const __m256 fm = _mm256_cvtepi32_ps(_mm256_min_epu32(before, max31));
            const __m256 fp = _mm256_cvtepi32_ps(_mm256_min_epu32(after, max31));
            // (fm - 2 b) + fp without contraction into an FMA: the same rounding as the scalar rule.
            const __m256 denom = _mm256_add_ps(_mm256_sub_ps(fm, _mm256_mul_ps(two, bf)), fp);
            const __m256i interior = _mm256_andnot_si256(
                _mm256_or_si256(_mm256_cmpeq_epi32(label, zero), _mm256_cmpeq_epi32(label, last)), _mm256_set1_epi32(-1));
            const __m256 fit = _mm256_and_ps(_mm256_castsi256_ps(_mm256_andnot_si256(is_flat, interior)),
                                             _mm256_cmp_ps(denom, _mm256_setzero_ps(), _CMP_LT_OQ));
            const __m256 safe_denom = _mm256_blendv_ps(_mm256_set1_ps(-1.0f), denom, fit);
            __m256 off = _mm256_div_ps(_mm256_sub_ps(fm, fp), _mm256_mul_ps(two, safe_denom));
            off = _mm256_min_ps(_mm256_set1_ps(0.5f), _mm256_max_ps(_mm256_set1_ps(-0.5f), off));
            _mm256_storeu_ps(offset + x, _mm256_and_ps(off, fit));
            const __m256 diff = _mm256_cvtepi32_ps(_mm256_min_epu32(_mm256_sub_epi32(best, second), max31));
            const __m256 safe_best = _mm256_blendv_ps(bf, _mm256_set1_ps(1.0f), _mm256_castsi256_ps(is_flat));
            _mm256_storeu_ps(contrast + x, _mm256_andnot_ps(_mm256_castsi256_ps(is_flat), _mm256_div_ps(diff, safe_best)));
            const __m256i lab = _mm256_blendv_epi8(label, flat_label, is_flat);
            const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(lab), _mm256_extracti128_si256(lab, 1));
            const int64_t packed = _mm_cvtsi128_si64(_mm_packus_epi16(words, _mm_setzero_si128()));
            std::memcpy(raw + x, &packed, 8);
        }
    }
#endif
#if defined(__SSE4_1__)
    // Four pixels at a time with the whole stack in registers: a branchy per-pixel loop ran 5x
    // slower on textured scenes (unpredictable labels), a frame-by-frame sweep with row scratch
    // arrays 3x slower (loads and stores of five scratch rows per frame).
    const __m128i flat = _mm_set1_epi32(static_cast<int>(flat_threshold));
    const __m128i max31 = _mm_set1_epi32(0x7FFFFFFF);
    const __m128i zero = _mm_setzero_si128();
    const __m128i last = _mm_set1_epi32(k - 1);
    const __m128i flat_label = _mm_set1_epi32(k);
    for (; x + 4 <= w; x += 4) {
        const int64_t p = base + x;
        if ((x & 15) == 0) prefetch_stack(focus, k, p);
        // Values carry a flipped sign bit inside the loop so that signed compares order them as
        // unsigned (SSE4.1 has no unsigned greater-than): one xor per load instead of two ops.
        const __m128i sign = _mm_set1_epi32(INT32_MIN);
        __m128i best = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(focus[0] + p)), sign);
        __m128i second = sign, next_label = _mm_set1_epi32(1), before = sign, after = sign, prev = best;
        for (int i = 1; i < k; ++i) {
            const __m128i v = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(focus[i] + p)), sign);
            const __m128i li = _mm_set1_epi32(i);
            after = _mm_blendv_epi8(after, v, _mm_cmpeq_epi32(next_label, li));
            second = _mm_max_epi32(second, _mm_min_epi32(v, best));
            const __m128i greater = _mm_cmpgt_epi32(v, best);
            before = _mm_blendv_epi8(before, prev, greater);
            next_label = _mm_blendv_epi8(next_label, _mm_set1_epi32(i + 1), greater);
            best = _mm_max_epi32(v, best);
            prev = v;
        }
        best = _mm_xor_si128(best, sign);
        second = _mm_xor_si128(second, sign);
        before = _mm_xor_si128(before, sign);
        after = _mm_xor_si128(after, sign);
        const __m128i label = _mm_sub_epi32(next_label, _mm_set1_epi32(1));
        // best <= flat_threshold, unsigned: min(best, flat) == best.
        const __m128i is_flat = _mm_cmpeq_epi32(_mm_min_epu32(best, flat), best);
        const __m128 bf = _mm_cvtepi32_ps(_mm_min_epu32(best, max31));
        const __m128 fm = _mm_cvtepi32_ps(_mm_min_epu32(before, max31));
        const __m128 fp = _mm_cvtepi32_ps(_mm_min_epu32(after, max31));
        const __m128 denom = _mm_add_ps(_mm_sub_ps(fm, _mm_mul_ps(_mm_set1_ps(2.0f), bf)), fp);
        const __m128i interior = _mm_andnot_si128(_mm_or_si128(_mm_cmpeq_epi32(label, zero), _mm_cmpeq_epi32(label, last)),
                                                  _mm_set1_epi32(-1));
        const __m128 fit = _mm_and_ps(_mm_castsi128_ps(_mm_andnot_si128(is_flat, interior)),
                                      _mm_cmplt_ps(denom, _mm_setzero_ps()));
        const __m128 safe_denom = _mm_blendv_ps(_mm_set1_ps(-1.0f), denom, fit);
        __m128 off = _mm_div_ps(_mm_sub_ps(fm, fp), _mm_mul_ps(_mm_set1_ps(2.0f), safe_denom));
        off = _mm_min_ps(_mm_set1_ps(0.5f), _mm_max_ps(_mm_set1_ps(-0.5f), off));
        _mm_storeu_ps(offset + x, _mm_and_ps(off, fit));
        const __m128 diff = _mm_cvtepi32_ps(_mm_min_epu32(_mm_sub_epi32(best, second), max31));
        const __m128 safe_best = _mm_blendv_ps(bf, _mm_set1_ps(1.0f), _mm_castsi128_ps(is_flat));
        _mm_storeu_ps(contrast + x, _mm_andnot_ps(_mm_castsi128_ps(is_flat), _mm_div_ps(diff, safe_best)));
        const __m128i lab = _mm_blendv_epi8(label, flat_label, is_flat);
        const int packed = _mm_cvtsi128_si32(_mm_packus_epi16(_mm_packus_epi32(lab, zero), zero));
        std::memcpy(raw + x, &packed, 4);
    }
#endif
    for (; x < w; ++x) {
        const int64_t p = base + x;
        argmax_pixel([&](int i) { return focus[i][p]; }, k, flat_threshold, raw[x], offset[x], contrast[x]);
    }
}

// ------------------------------------------------------------------------------- 2. window label counts

// Calls f(std::integral_constant<int, R>) for the radius r (0..kMaxDecisionRadius): the window
// loops below take R at compile time, so each sum of 2R+1 shifted loads is unrolled in registers
// (separate add-and-store passes per shift ran 2x slower).
template <typename F>
void with_radius(int r, F&& f) {
    switch (r) {
        case 0: f(std::integral_constant<int, 0>{}); break;
        case 1: f(std::integral_constant<int, 1>{}); break;
        case 2: f(std::integral_constant<int, 2>{}); break;
        case 3: f(std::integral_constant<int, 3>{}); break;
        case 4: f(std::integral_constant<int, 4>{}); break;
        case 5: f(std::integral_constant<int, 5>{}); break;
        case 6: f(std::integral_constant<int, 6>{}); break;
        default: f(std::integral_constant<int, 7>{}); break;
    }
}

// Per-label counts over a sliding (2r+1)^2 window of label rows, clipped at the image edges: K+1
// planes of 8-bit column counts (rows [lo, hi]), each padded with r zero columns on both sides, so
// that a horizontal sum of 2r+1 plane entries is the clipped window's count. Every loop runs over
// bytes of one row and vectorises, 16 or 32 pixels per instruction: a per-pixel packed histogram
// (scalar) ran 3x slower. Counts stay <= (2r+1)^2 <= 225: no lane overflows. Serves the majority
// filter (on the raw arg-max labels) and the blend weights (on the filtered labels).
class WindowLabelCounts {
public:
    WindowLabelCounts(int k, int w, int r)
        : k_(k), w_(w), r_(r), stride_(w + 2 * r), planes_(static_cast<size_t>(k + 1) * (w + 2 * r), 0),
          best_(static_cast<size_t>(w)), mode_(static_cast<size_t>(w)) {}

    // Brings the column counts to rows [max(0, yc-r), min(h-1, yc+r)]; row(y) gives a label row.
    template <typename RowFn>
    void move_to(int64_t yc, int64_t h, RowFn&& row) {
        const int64_t new_lo = std::max<int64_t>(0, yc - r_), new_hi = std::min<int64_t>(h - 1, yc + r_);
        if (hi_ < lo_) hi_ = new_lo - 1, lo_ = new_lo;
        for (int64_t y = hi_ + 1; y <= new_hi; ++y) update(row(y), 1);
        for (int64_t y = lo_; y < new_lo; ++y) update(row(y), -1);
        lo_ = new_lo;
        hi_ = new_hi;
    }

    unsigned rows() const { return static_cast<unsigned>(hi_ - lo_ + 1); }

    // Per column: the most frequent label of the window (lowest on ties) and its count.
    void sweep() {
        uint8_t* __restrict best = best_.data();
        uint8_t* __restrict mode = mode_.data();
        std::memset(best, 0, static_cast<size_t>(w_));
        std::memset(mode, 0, static_cast<size_t>(w_));
        with_radius(r_, [&](auto radius) {
            for (int l = 0; l <= k_; ++l)
                select_r<decltype(radius)::value>(plane(l) - r_, static_cast<uint8_t>(l), best, mode, w_);
        });
    }
    const uint8_t* mode() const { return mode_.data(); }
    const uint8_t* count() const { return best_.data(); }

    // The window count of label l for the columns [x0, x1), into out[0, x1 - x0).
    void window_counts(int l, int x0, int x1, uint8_t* __restrict out) const {
        const uint8_t* padded = plane(l) - r_ + x0;
        with_radius(r_, [&](auto radius) { sum_r<decltype(radius)::value>(padded, out, x1 - x0); });
    }

private:
    uint8_t* plane(int l) { return planes_.data() + static_cast<size_t>(l) * stride_ + r_; }
    const uint8_t* plane(int l) const { return planes_.data() + static_cast<size_t>(l) * stride_ + r_; }

    void update(const uint8_t* labels, int sign) {
        for (int l = 0; l <= k_; ++l) add_equal(plane(l), labels, static_cast<uint8_t>(l), sign, w_);
    }
    static void add_equal(uint8_t* __restrict p, const uint8_t* __restrict labels, uint8_t l, int sign, int w) {
        if (sign > 0)
            for (int x = 0; x < w; ++x) p[x] = static_cast<uint8_t>(p[x] + (labels[x] == l));
        else
            for (int x = 0; x < w; ++x) p[x] = static_cast<uint8_t>(p[x] - (labels[x] == l));
    }
    template <int R>
    static void sum_r(const uint8_t* __restrict padded, uint8_t* __restrict out, int n) {
        for (int x = 0; x < n; ++x) {
            uint8_t sum = 0;
            for (int d = 0; d <= 2 * R; ++d) sum = static_cast<uint8_t>(sum + padded[x + d]);
            out[x] = sum;
        }
    }
    template <int R>
    static void select_r(const uint8_t* __restrict padded, uint8_t l, uint8_t* __restrict best,
                         uint8_t* __restrict mode, int w) {
        for (int x = 0; x < w; ++x) {
            uint8_t sum = 0;
            for (int d = 0; d <= 2 * R; ++d) sum = static_cast<uint8_t>(sum + padded[x + d]);
            const bool greater = sum > best[x];
            best[x] = greater ? sum : best[x];
            mode[x] = greater ? l : mode[x];
        }
    }

    int k_, w_, r_, stride_;
    int64_t lo_ = 0, hi_ = -1;
    std::vector<uint8_t> planes_, best_, mode_;
};

// Depth and confidence of one filtered row (see decision.hpp), branch-free so that it vectorises.
void decision_outputs(const uint8_t* __restrict mode, const uint8_t* __restrict count, const uint8_t* __restrict raw,
                      const float* __restrict offset, const float* __restrict contrast,
                      const uint8_t* __restrict widths, unsigned rows, int k, int w, float* __restrict depth,
                      float* __restrict confidence) {
    const float middle = 0.5f * static_cast<float>(k - 1);
    const float frows = static_cast<float>(rows);
    int x = 0;
#if defined(__SSE4_1__)
    // GCC leaves this loop scalar (uint8 -> float selects); it was 60% of the filter stage.
    const __m128i kk = _mm_set1_epi32(k);
    const __m128 vrows = _mm_set1_ps(frows), vmiddle = _mm_set1_ps(middle);
    auto bytes4 = [](const uint8_t* p) {
        int32_t v;
        std::memcpy(&v, p, 4);
        return _mm_cvtepu8_epi32(_mm_cvtsi32_si128(v));
    };
    for (; x + 4 <= w; x += 4) {
        const __m128i m = bytes4(mode + x), cnt = bytes4(count + x), r = bytes4(raw + x), wid = bytes4(widths + x);
        const __m128 flat = _mm_castsi128_ps(_mm_cmpeq_epi32(m, kk));
        const __m128 own = _mm_castsi128_ps(_mm_cmpeq_epi32(r, m));
        const __m128 agreement = _mm_div_ps(_mm_cvtepi32_ps(cnt), _mm_mul_ps(vrows, _mm_cvtepi32_ps(wid)));
        const __m128 d = _mm_add_ps(_mm_cvtepi32_ps(m), _mm_and_ps(own, _mm_loadu_ps(offset + x)));
        _mm_storeu_ps(depth + x, _mm_blendv_ps(d, vmiddle, flat));
        const __m128 conf = _mm_mul_ps(_mm_loadu_ps(contrast + x), agreement);
        _mm_storeu_ps(confidence + x, _mm_and_ps(_mm_andnot_ps(flat, own), conf));
    }
#endif
    for (; x < w; ++x) {
        const int m = mode[x];
        const float off = offset[x], con = contrast[x];
        const int flat = m == k;
        const int own = raw[x] == m;
        const float agreement = static_cast<float>(count[x]) / (frows * static_cast<float>(widths[x]));
        const float d = static_cast<float>(m) + (own ? off : 0.0f);
        depth[x] = flat ? middle : d;
        confidence[x] = (own & !flat) ? con * agreement : 0.0f;
    }
}

// ------------------------------------------------------------------------------- 3. blend

// Per column, the label shared by the whole clipped (2r+1)^2 window, or 0xFF where they differ:
// vertical then horizontal min and max of the labels (padding never changes a min or a max).
class UniformWindow {
public:
    UniformWindow(int w, int r)
        : w_(w), r_(r), lo_(static_cast<size_t>(w + 2 * r), 0xFF), hi_(static_cast<size_t>(w + 2 * r), 0),
          hmin_(static_cast<size_t>(w)), hmax_(static_cast<size_t>(w)), uniform_(static_cast<size_t>(w)) {}

    template <typename RowFn>
    const uint8_t* compute(int64_t y, int64_t h, RowFn&& row) {
        uint8_t* __restrict lo = lo_.data() + r_;
        uint8_t* __restrict hi = hi_.data() + r_;
        const int64_t y0 = std::max<int64_t>(0, y - r_), y1 = std::min<int64_t>(h - 1, y + r_);
        std::memcpy(lo, row(y0), static_cast<size_t>(w_));
        std::memcpy(hi, row(y0), static_cast<size_t>(w_));
        for (int64_t yy = y0 + 1; yy <= y1; ++yy) min_max_rows(lo, hi, row(yy), w_);
        // Horizontal pass: d-shifted rows, one vectorised sweep per shift.
        uint8_t* __restrict mn = hmin_.data();
        uint8_t* __restrict mx = hmax_.data();
        std::memcpy(mn, lo_.data(), static_cast<size_t>(w_));
        std::memcpy(mx, hi_.data(), static_cast<size_t>(w_));
        for (int d = 1; d <= 2 * r_; ++d) min_max_rows(mn, mx, lo_.data() + d, hi_.data() + d, w_);
        mark_uniform(mn, mx, uniform_.data(), w_);
        return uniform_.data();
    }

private:
    static void mark_uniform(const uint8_t* __restrict mn, const uint8_t* __restrict mx, uint8_t* __restrict u, int w) {
        for (int x = 0; x < w; ++x) u[x] = mn[x] == mx[x] ? mn[x] : static_cast<uint8_t>(0xFF);
    }
    static void min_max_rows(uint8_t* __restrict lo, uint8_t* __restrict hi, const uint8_t* __restrict in, int w) {
        min_max_rows(lo, hi, in, in, w);
    }
    static void min_max_rows(uint8_t* __restrict lo, uint8_t* __restrict hi, const uint8_t* __restrict in_lo,
                             const uint8_t* __restrict in_hi, int w) {
        for (int x = 0; x < w; ++x) {
            lo[x] = std::min(lo[x], in_lo[x]);
            hi[x] = std::max(hi[x], in_hi[x]);
        }
    }
    int w_, r_;
    std::vector<uint8_t> lo_, hi_, hmin_, hmax_, uniform_;
};

// The average of all K frames, rounded half up, over n contiguous samples. A double reciprocal
// plus 1e-9 is exact: sums stay below 2^21 (error < 2^-31) and a non-integer quotient is at least
// 1/K below the next integer.
template <typename T>
void average_run(const T* const* frames, int k, int64_t start, int64_t n, T* __restrict out) {
    constexpr int64_t kChunk = 512;
    int32_t acc[kChunk];
    const double inv = 1.0 / static_cast<double>(k);
    for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
        const int64_t m = std::min(kChunk, n - c0);
        for (int64_t i = 0; i < m; ++i) acc[i] = k / 2;
        for (int f = 0; f < k; ++f) {
            const T* __restrict src = frames[f] + start + c0;
            for (int64_t i = 0; i < m; ++i) acc[i] += src[i];
        }
        T* __restrict dst = out + start + c0;
        for (int64_t i = 0; i < m; ++i) dst[i] = static_cast<T>(static_cast<int32_t>(static_cast<double>(acc[i]) * inv + 1e-9));
    }
}

// Scratch rows of blend_run, sized for the longest run (a whole row) once per band.
struct BlendScratch {
    std::vector<uint8_t> counts;          // (K+1) x W window counts, label-major
    std::vector<uint32_t> weight;         // W: one frame's weight (or the divisor) per pixel
    std::vector<uint32_t> divisor;        // W*C: K * window size, per sample
    std::vector<uint32_t> sample_weight;  // W*C: one frame's weight per sample
    std::vector<uint32_t> acc;            // W*C
    BlendScratch(int k, int w, int c)
        : counts(static_cast<size_t>(k + 1) * w), weight(static_cast<size_t>(w)),
          divisor(static_cast<size_t>(w) * c), sample_weight(static_cast<size_t>(w) * c),
          acc(static_cast<size_t>(w) * c) {}
};

// Spreads per-pixel values over the C interleaved samples of each pixel.
inline void per_sample(const uint32_t* __restrict px, int n, int c, uint32_t* __restrict out) {
    if (c == 1) {
        std::memcpy(out, px, static_cast<size_t>(n) * sizeof(uint32_t));
    } else if (c == 3) {
        for (int j = 0; j < n; ++j) out[3 * j] = out[3 * j + 1] = out[3 * j + 2] = px[j];
    } else {
        for (int j = 0; j < n; ++j)
            for (int ch = 0; ch < c; ++ch) out[static_cast<int64_t>(j) * c + ch] = px[j];
    }
}

// The RGB8 blend kernels prefetch each frame kPrefetchBytes ahead: the decision on demo fundus
// frames (blend-bound) ran 1.2x faster with the AVX2 kernel (384 B ahead: slower).

#if defined(__AVX2__)
// blend_run for 8-bit RGB, eight pixels (24 samples) at a time with the sums in registers across
// the K frames: 16-bit products summed by madd (weights <= 31 * 225 < 2^15, samples <= 255) and
// the division as a float reciprocal with one exact integer correction (quotients <= 255, so the
// float estimate is within one). Returns the first pixel it did not blend.
inline int blend_run_rgb8_avx2(const uint8_t* const* frames, int k, const uint8_t* counts, int n, int x0,
                               const uint8_t* widths, uint32_t rows_k, int64_t start, uint8_t* image) {
    const __m256i spread0 = _mm256_setr_epi32(0, 0, 0, 1, 1, 1, 2, 2);
    const __m256i spread1 = _mm256_setr_epi32(2, 3, 3, 3, 4, 4, 4, 5);
    const __m256i spread2 = _mm256_setr_epi32(5, 5, 6, 6, 6, 7, 7, 7);
    const __m256i vk = _mm256_set1_epi32(k), vrows_k = _mm256_set1_epi32(static_cast<int>(rows_k));
    const __m256i one = _mm256_set1_epi32(1);
    const uint8_t* none = counts + static_cast<size_t>(k) * n;
    auto bytes8 = [](const uint8_t* p) {
        int64_t v;
        std::memcpy(&v, p, 8);
        return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v));
    };
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256i d = _mm256_mullo_epi32(bytes8(widths + x0 + j), vrows_k);
        const __m256i d0 = _mm256_permutevar8x32_epi32(d, spread0), d1 = _mm256_permutevar8x32_epi32(d, spread1),
                      d2 = _mm256_permutevar8x32_epi32(d, spread2);
        __m256i a0 = _mm256_srli_epi32(d0, 1), a1 = _mm256_srli_epi32(d1, 1), a2 = _mm256_srli_epi32(d2, 1);
        int64_t none8;
        std::memcpy(&none8, none + j, 8);
        const __m256i ck = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(none8));
        const int64_t s = start + 3 * static_cast<int64_t>(j);
        for (int i = 0; i < k; ++i) {
            int64_t count8;
            std::memcpy(&count8, counts + static_cast<size_t>(i) * n + j, 8);
            if ((count8 | none8) == 0) continue;  // frame i weighs nothing in these eight windows
            const __m256i w = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(count8)), vk), ck);
            const uint8_t* src = frames[i] + s;
            if ((j & 15) == 0) prefetch_ahead(src, kPrefetchBytes);
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_permutevar8x32_epi32(w, spread0), bytes8(src)));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_permutevar8x32_epi32(w, spread1), bytes8(src + 8)));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_permutevar8x32_epi32(w, spread2), bytes8(src + 16)));
        }
        auto quotient = [&](__m256i a, __m256i dv) {
            __m256i q = _mm256_cvttps_epi32(_mm256_div_ps(_mm256_cvtepi32_ps(a), _mm256_cvtepi32_ps(dv)));
            const __m256i r = _mm256_sub_epi32(a, _mm256_mullo_epi32(q, dv));
            q = _mm256_sub_epi32(q, _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), r), one));
            return _mm256_add_epi32(q, _mm256_andnot_si256(_mm256_cmpgt_epi32(dv, r), one));
        };
        const __m256i q01 = _mm256_permute4x64_epi64(_mm256_packus_epi32(quotient(a0, d0), quotient(a1, d1)), 0xD8);
        const __m256i q2 = _mm256_permute4x64_epi64(_mm256_packus_epi32(quotient(a2, d2), quotient(a2, d2)), 0xD8);
        const __m128i lo = _mm_packus_epi16(_mm256_castsi256_si128(q01), _mm256_extracti128_si256(q01, 1));
        const __m128i hi = _mm_packus_epi16(_mm256_castsi256_si128(q2), _mm_setzero_si128());
        _mm_storeu_si128(reinterpret_cast<__m128i*>(image + s), lo);
        _mm_storel_epi64(reinterpret_cast<__m128i*>(image + s + 16), hi);
    }
    return x0 + j;
}
#endif

#if defined(__AVX512BW__)
// blend_run_rgb8_avx2 on sixteen pixels (48 samples) per step, for the AVX-512 copy: the same
// integer rule and the same exact division, the quotients narrowed by vpmovusdb. Returns the first
// pixel it did not blend (the AVX2 kernel takes the rest).
inline int blend_run_rgb8_avx512(const uint8_t* const* frames, int k, const uint8_t* counts, int n, int x0,
                                 const uint8_t* widths, uint32_t rows_k, int64_t start, uint8_t* image) {
    const __m512i spread0 = _mm512_setr_epi32(0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5);
    const __m512i spread1 = _mm512_setr_epi32(5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8, 9, 9, 9, 10, 10);
    const __m512i spread2 = _mm512_setr_epi32(10, 11, 11, 11, 12, 12, 12, 13, 13, 13, 14, 14, 14, 15, 15, 15);
    const __m512i vrows_k = _mm512_set1_epi32(static_cast<int>(rows_k));
    const __m256i vk16 = _mm256_set1_epi16(static_cast<int16_t>(k));
    const __m512i one = _mm512_set1_epi32(1);
    const uint8_t* none = counts + static_cast<size_t>(k) * n;
    auto bytes16 = [](const uint8_t* p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); };
    auto quotient = [&](__m512i a, __m512i dv) {
        __m512i q = _mm512_cvttps_epi32(_mm512_div_ps(_mm512_cvtepi32_ps(a), _mm512_cvtepi32_ps(dv)));
        const __m512i r = _mm512_sub_epi32(a, _mm512_mullo_epi32(q, dv));
        q = _mm512_mask_sub_epi32(q, _mm512_cmplt_epi32_mask(r, _mm512_setzero_si512()), q, one);
        return _mm512_mask_add_epi32(q, _mm512_cmpge_epi32_mask(r, dv), q, one);
    };
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512i d = _mm512_mullo_epi32(bytes16(widths + x0 + j), vrows_k);
        const __m512i d0 = _mm512_permutexvar_epi32(spread0, d), d1 = _mm512_permutexvar_epi32(spread1, d),
                      d2 = _mm512_permutexvar_epi32(spread2, d);
        __m512i a0 = _mm512_srli_epi32(d0, 1), a1 = _mm512_srli_epi32(d1, 1), a2 = _mm512_srli_epi32(d2, 1);
        const __m128i none16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(none + j));
        const __m512i ck = _mm512_cvtepu8_epi32(none16);
        const int64_t s = start + 3 * static_cast<int64_t>(j);
        for (int i = 0; i < k; ++i) {
            const __m128i count16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(counts + static_cast<size_t>(i) * n + j));
            if (_mm_test_all_zeros(_mm_or_si128(count16, none16), _mm_set1_epi8(-1))) continue;  // weighs nothing here
            // count * K <= 225 * 31 fits 16 bits: one cheap 16-bit multiply instead of vpmulld.
            const __m512i w = _mm512_add_epi32(
                _mm512_cvtepu16_epi32(_mm256_mullo_epi16(_mm256_cvtepu8_epi16(count16), vk16)), ck);
            const uint8_t* src = frames[i] + s;
            prefetch_ahead(src, kPrefetchBytes);
            a0 = _mm512_add_epi32(a0, _mm512_madd_epi16(_mm512_permutexvar_epi32(spread0, w), bytes16(src)));
            a1 = _mm512_add_epi32(a1, _mm512_madd_epi16(_mm512_permutexvar_epi32(spread1, w), bytes16(src + 16)));
            a2 = _mm512_add_epi32(a2, _mm512_madd_epi16(_mm512_permutexvar_epi32(spread2, w), bytes16(src + 32)));
        }
        _mm_storeu_si128(reinterpret_cast<__m128i*>(image + s), _mm512_cvtusepi32_epi8(quotient(a0, d0)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(image + s + 16), _mm512_cvtusepi32_epi8(quotient(a1, d1)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(image + s + 32), _mm512_cvtusepi32_epi8(quotient(a2, d2)));
    }
    return x0 + j;
}
#endif

// The boundary run [x0, x1) of one row: frame i weighs (K * count_i + count_K) / (K * n), counts
// of the filtered labels over the clipped (2r+1)^2 window of n pixels, rounded half up, so that
// identical frames give that frame exactly. Whole-run unit-stride loops that vectorise: the
// per-pixel version took 90% of the decision on noisy fundus frames, where nearly every window
// holds two labels (94% of the pixels of a 1080p demo frame).
template <typename T>
void blend_run(const T* const* frames, int k, int c, const WindowLabelCounts& counts, const uint8_t* widths,
               int64_t row_start, int x0, int x1, BlendScratch& s, T* image) {
    const int n0 = x1 - x0;
    for (int l = 0; l <= k; ++l) counts.window_counts(l, x0, x1, s.counts.data() + static_cast<size_t>(l) * n0);
    const uint32_t rows_k = counts.rows() * static_cast<uint32_t>(k);
#if defined(__AVX2__)
    if constexpr (sizeof(T) == 1) {
        if (c == 3) {
            // The vector kernels blend a prefix of the run; the counts rows then drop the pixels
            // done (shifted to the front) so that the next kernel, and the scalar tail, find them
            // laid out for the pixels left.
            int len = n0;  // pixels per counts row, starting at x0
            auto drop_done = [&](int done) {
                for (int l = 0; l <= k; ++l)
                    std::memmove(s.counts.data() + static_cast<size_t>(l) * (x1 - done),
                                 s.counts.data() + static_cast<size_t>(l) * len + (done - x0),
                                 static_cast<size_t>(x1 - done));
                len = x1 - done;
                x0 = done;
            };
#if defined(__AVX512BW__)
            const int done16 = blend_run_rgb8_avx512(frames, k, s.counts.data(), len, x0, widths, rows_k,
                                                     (row_start + x0) * 3, image);
            if (done16 == x1) return;
            if (done16 != x0) drop_done(done16);
#endif
            const int done8 = blend_run_rgb8_avx2(frames, k, s.counts.data(), len, x0, widths, rows_k,
                                                  (row_start + x0) * 3, image);
            if (done8 == x1) return;
            if (done8 != x0) drop_done(done8);
        }
    }
#endif
    const int n = x1 - x0;
    const int64_t m = static_cast<int64_t>(n) * c, start = (row_start + x0) * c;
    const uint8_t* __restrict none = s.counts.data() + static_cast<size_t>(k) * n;
    uint32_t* __restrict weight = s.weight.data();
    uint32_t* __restrict divisor = s.divisor.data();
    uint32_t* __restrict sample_weight = s.sample_weight.data();
    uint32_t* __restrict acc = s.acc.data();
    for (int j = 0; j < n; ++j) weight[j] = rows_k * widths[x0 + j];
    per_sample(weight, n, c, divisor);
    for (int64_t e = 0; e < m; ++e) acc[e] = divisor[e] / 2;
    for (int i = 0; i < k; ++i) {
        const uint8_t* __restrict count = s.counts.data() + static_cast<size_t>(i) * n;
        uint32_t any = 0;
        for (int j = 0; j < n; ++j) {
            weight[j] = static_cast<uint32_t>(k) * count[j] + none[j];
            any |= weight[j];
        }
        if (!any) continue;  // label i is in no window of the run (and there is no label K)
        per_sample(weight, n, c, sample_weight);
        const T* __restrict src = frames[i] + start;
        for (int64_t e = 0; e < m; ++e) acc[e] += sample_weight[e] * static_cast<uint32_t>(src[e]);
    }
    // acc <= 225 * 31 * 65535 + half < 2^31 and divisor < 2^13: the double quotient never rounds up
    // to the next integer (>= 1/divisor away, far above double precision), so truncation is exact.
    // Signed conversions: AVX2 converts only int32 <-> double in vectors.
    T* __restrict out = image + start;
    for (int64_t e = 0; e < m; ++e)
        out[e] = static_cast<T>(static_cast<int32_t>(static_cast<double>(static_cast<int32_t>(acc[e])) /
                                                     static_cast<double>(static_cast<int32_t>(divisor[e]))));
}

// One output row. Windows whose labels all equal one frame: copied from that frame in runs.
// Windows all "no information" (label K): the average of every frame. Elsewhere: blend_run, with
// `counts` holding the filtered labels of rows [y-r, y+r].
template <typename T>
void blend_row(const T* const* frames, int k, int c, int64_t y, int w, const uint8_t* uniform,
               const WindowLabelCounts& counts, const uint8_t* widths, BlendScratch& scratch, T* image) {
    const int64_t row_start = y * static_cast<int64_t>(w);
    int x = 0;
    while (x < w) {
        const uint8_t u = uniform[x];
        int end = x + 1;
        if (u != 0xFF) {
            const uint64_t pattern = 0x0101010101010101ull * u;
            for (uint64_t v; end + 8 <= w && (std::memcpy(&v, uniform + end, 8), v == pattern);) end += 8;
            while (end < w && uniform[end] == u) ++end;
            const int64_t start = (row_start + x) * c, n = static_cast<int64_t>(end - x) * c;
            if (u < k)
                std::memcpy(image + start, frames[u] + start, static_cast<size_t>(n) * sizeof(T));
            else
                average_run<T>(frames, k, start, n, image);
            x = end;
            continue;
        }
        for (uint64_t v; end + 8 <= w && (std::memcpy(&v, uniform + end, 8), v == ~uint64_t{0});) end += 8;
        while (end < w && uniform[end] == 0xFF) ++end;
        blend_run<T>(frames, k, c, counts, widths, row_start, x, end, scratch, image);
        x = end;
    }
}

// ------------------------------------------------------------------------------- the band driver

struct Outputs {
    uint8_t* labels;
    float* depth;
    float* confidence;
};

// Output rows [y0, y1): arg-max rows feed the majority filter, filtered rows feed the blend. Each
// band recomputes its halo (filter_radius + blend_radius rows above and below).
template <typename T>
void fuse_band(const uint32_t* const* focus, const T* const* frames, int k, int64_t h, int w, int c,
               const DecisionParams& p, const Outputs& o, T* image, int64_t y0, int64_t y1) {
    const int rf = p.filter_radius, rb = frames ? p.blend_radius : 0;
    RowRing<uint8_t> raw(w, 2 * rf + 2), filtered(w, 2 * rb + 2);
    RowRing<float> offset(w, 2 * rf + 2), contrast(w, 2 * rf + 2);
    WindowLabelCounts filter(k, w, rf);
    const std::vector<uint8_t> widths = window_widths(w, rf);
    // The blend's state, only when there are frames to blend.
    UniformWindow uniform(frames ? w : 0, rb);
    WindowLabelCounts blend_counts(frames ? k : 0, frames ? w : 0, rb);
    BlendScratch scratch(frames ? k : 0, frames ? w : 0, c);
    const std::vector<uint8_t> blend_widths = window_widths(frames ? w : 0, rb);

    int64_t next_raw = std::max<int64_t>(0, y0 - rb - rf);
    int64_t next_filtered = std::max<int64_t>(0, y0 - rb);
    auto raw_row = [&](int64_t y) -> const uint8_t* { return raw.row(y); };
    auto filtered_row = [&](int64_t y) -> const uint8_t* { return filtered.row(y); };

    auto filter_row = [&](int64_t yf) {
        while (next_raw <= std::min(h - 1, yf + rf)) {
            argmax_row(focus, k, w, next_raw * w, p.flat_threshold, raw.row(next_raw), offset.row(next_raw),
                       contrast.row(next_raw));
            ++next_raw;
        }
        filter.move_to(yf, h, raw_row);
        filter.sweep();
        std::memcpy(filtered.row(yf), filter.mode(), static_cast<size_t>(w));
        if (yf < y0 || yf >= y1) return;
        std::memcpy(o.labels + yf * w, filter.mode(), static_cast<size_t>(w));
        decision_outputs(filter.mode(), filter.count(), raw.row(yf), offset.row(yf), contrast.row(yf), widths.data(),
                         filter.rows(), k, w, o.depth + yf * w, o.confidence + yf * w);
    };

    for (int64_t y = y0; y < y1; ++y) {
        const int64_t need = frames ? std::min(h - 1, y + rb) : y;
        while (next_filtered <= need) filter_row(next_filtered++);
        if (!frames) continue;
        const uint8_t* u = uniform.compute(y, h, filtered_row);
        blend_counts.move_to(y, h, filtered_row);
        blend_row<T>(frames, k, c, y, w, u, blend_counts, blend_widths.data(), scratch, image);
    }
}

// Blend only, from a given label map (stack_blend).
template <typename T>
void blend_band(const T* const* frames, int k, int64_t h, int w, int c, const uint8_t* labels, int r,
                T* image, int64_t y0, int64_t y1) {
    UniformWindow uniform(w, r);
    WindowLabelCounts counts(k, w, r);
    BlendScratch scratch(k, w, c);
    const std::vector<uint8_t> widths = window_widths(w, r);
    auto row = [&](int64_t y) -> const uint8_t* { return labels + y * w; };
    for (int64_t y = y0; y < y1; ++y) {
        const uint8_t* u = uniform.compute(y, h, row);
        counts.move_to(y, h, row);
        blend_row<T>(frames, k, c, y, w, u, counts, widths.data(), scratch, image);
    }
}

// Rows per band: the halo (2 * (filter_radius + blend_radius) rows) stays small against it.
// Two bands per thread: each band recomputes 2 * (filter_radius + blend_radius) halo rows, which
// cost 13% extra at 1080p with the pool's usual four chunks per thread and radii 5 and 4.
int64_t min_band_rows(const DecisionParams& p, int64_t h, int threads) {
    const int64_t n = threads > 0 ? threads : get_num_threads();
    return std::max<int64_t>({32, 8 * (p.filter_radius + p.blend_radius), (h + 2 * n - 1) / (2 * n)});
}

void check_channels(int c) {
    if (c < 1 || c > 16) throw std::invalid_argument("frames must have 1..16 channels, got " + std::to_string(c));
}

template <typename T>
void fuse_impl(const uint32_t* const* focus, const T* const* frames, int k, int h, int w, int c,
               const DecisionParams& p, uint8_t* labels, float* depth, float* confidence, T* image) {
    check_decision_params(k, h, w, p);
    if (frames) check_channels(c);
    const Outputs o{labels, depth, confidence};
    parallel_for(
        0, h, [&](int64_t y0, int64_t y1) { fuse_band<T>(focus, frames, k, h, w, c, p, o, image, y0, y1); },
        p.num_threads, min_band_rows(p, h, p.num_threads));
}

template <typename T>
void blend_impl(const T* const* frames, int k, int h, int w, int c, const uint8_t* labels, int r, int threads,
                T* out) {
    DecisionParams p;
    p.filter_radius = 0;
    p.blend_radius = r;
    check_decision_params(k, h, w, p);
    check_channels(c);
    parallel_for(
        0, h, [&](int64_t y0, int64_t y1) { blend_band<T>(frames, k, h, w, c, labels, r, out, y0, y1); },
        threads, min_band_rows(p, h, threads));
}

}  // namespace

void stack_decision(const uint32_t* const* focus, int k, int h, int w, const DecisionParams& params, uint8_t* labels,
                    float* depth, float* confidence) {
    fuse_impl<uint8_t>(focus, nullptr, k, h, w, 1, params, labels, depth, confidence, nullptr);
}

void fuse_stack_u8(const uint32_t* const* focus, const uint8_t* const* frames, int k, int h, int w, int c,
                   const DecisionParams& params, uint8_t* labels, float* depth, float* confidence, uint8_t* image) {
    fuse_impl<uint8_t>(focus, frames, k, h, w, c, params, labels, depth, confidence, image);
}

void fuse_stack_u16(const uint32_t* const* focus, const uint16_t* const* frames, int k, int h, int w, int c,
                    const DecisionParams& params, uint8_t* labels, float* depth, float* confidence, uint16_t* image) {
    fuse_impl<uint16_t>(focus, frames, k, h, w, c, params, labels, depth, confidence, image);
}

void stack_blend_u8(const uint8_t* const* frames, int k, int h, int w, int c, const uint8_t* labels, int r,
                    int threads, uint8_t* out) {
    blend_impl<uint8_t>(frames, k, h, w, c, labels, r, threads, out);
}

void stack_blend_u16(const uint16_t* const* frames, int k, int h, int w, int c, const uint8_t* labels, int r,
                     int threads, uint16_t* out) {
    blend_impl<uint16_t>(frames, k, h, w, c, labels, r, threads, out);
}

}  // namespace SURGIFUSE_DECISION_ISA
}  // namespace surgifuse
