// Non-temporal ("streaming") copies of finished output rows into large output arrays.
//
// An ordinary store first reads the cache line it writes (read for ownership); outputs too large to
// stay in cache for their consumer gain nothing from that read. Streaming stores skip it and go to
// memory through the write-combining buffers: measured 1.6x faster for a 1080p RGB focus_measure on
// one thread (docs/focus-measure.md). The focus measure's generic kernels compute a row into an
// L1-sized scratch row and copy it out with stream_copy (its 3x3 AVX-512 kernel stores its vectors
// itself); the stores are weakly ordered, so stream_fence() must run before another thread reads
// the output (before the thread pool reports the chunk done).
//
// Everything here has internal linkage on purpose: a translation unit built with other -march
// flags (as the decision's copies are) may include it without the linker merging its inline copy
// with one built for another instruction set.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace surgifuse {
namespace {

// Outputs at least this large are written with streaming stores. A 1080p map (8 MB) does not stay
// in cache for its consumer anyway; a 640x480 one (1.2 MB) does, for the stack decision that reads
// it next.
constexpr int64_t kStreamingStoreBytes = int64_t(4) << 20;

#if defined(__SSE2__)
constexpr bool kHaveStreamingStores = true;

// 64-byte streaming stores where the CPU has them: a quarter of the store instructions of the SSE2
// loop, measured 1.2x faster for the whole 1080p focus_measure. Returns the first byte not copied.
__attribute__((target("avx512f"))) inline int64_t stream_copy_avx512(const char* src, char* dst, int64_t i,
                                                                     int64_t bytes) {
    for (; i + 16 <= bytes && (reinterpret_cast<uintptr_t>(dst + i) & 63) != 0; i += 16)
        _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    for (; i + 64 <= bytes; i += 64) _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i), _mm512_loadu_si512(src + i));
    return i;
}

// dst[0, bytes) = src[0, bytes); streaming stores where dst is 16-byte aligned, plain copies for the
// unaligned head and the tail.
inline void stream_copy(const void* src_v, void* dst_v, int64_t bytes) {
    static const bool avx512 = __builtin_cpu_supports("avx512f");
    const char* src = static_cast<const char*>(src_v);
    char* dst = static_cast<char*>(dst_v);
    int64_t i = std::min<int64_t>(bytes, int64_t((16 - (reinterpret_cast<uintptr_t>(dst) & 15)) & 15));
    std::memcpy(dst, src, size_t(i));
    if (avx512) i = stream_copy_avx512(src, dst, i, bytes);
    for (; i + 16 <= bytes; i += 16)
        _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    std::memcpy(dst + i, src + i, size_t(bytes - i));
}

inline void stream_fence() { _mm_sfence(); }

#else
constexpr bool kHaveStreamingStores = false;
inline void stream_copy(const void* src, void* dst, int64_t bytes) { std::memcpy(dst, src, size_t(bytes)); }
inline void stream_fence() {}
#endif

}  // namespace
}  // namespace surgifuse
