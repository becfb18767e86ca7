// The stack decision is compiled three times (CMakeLists.txt): for the x86-64-v2 baseline, for
// AVX2 (x86-64-v3) and for AVX-512 (x86-64-v4), each copy in its own namespace;
// decision_dispatch.cpp picks one per call from the CPU it runs on. AVX2 measured 1.2x faster than
// the baseline at 1080p, K=5, two threads; AVX-512 1.3x faster than AVX2 on two threads and 1.05x
// on one on demo fundus frames (medians of four interleaved runs, docs/classical-engine.md). The
// module still loads on any x86-64-v2 CPU.
#pragma once

#include <cstdint>

#include "decision.hpp"

#ifndef SURGIFUSE_DECISION_ISA
#define SURGIFUSE_DECISION_ISA isa_baseline
#endif

#define SURGIFUSE_DECLARE_DECISION_ISA(ns)                                                                          \
    namespace ns {                                                                                                  \
    void stack_decision(const uint32_t* const* focus, int k, int height, int width, const DecisionParams& params,  \
                        uint8_t* labels, float* depth, float* confidence);                                          \
    void fuse_stack_u8(const uint32_t* const* focus, const uint8_t* const* frames, int k, int height, int width,    \
                       int channels, const DecisionParams& params, uint8_t* labels, float* depth, float* confidence, \
                       uint8_t* image);                                                                             \
    void fuse_stack_u16(const uint32_t* const* focus, const uint16_t* const* frames, int k, int height, int width,  \
                        int channels, const DecisionParams& params, uint8_t* labels, float* depth,                  \
                        float* confidence, uint16_t* image);                                                        \
    void stack_blend_u8(const uint8_t* const* frames, int k, int height, int width, int channels,                  \
                        const uint8_t* labels, int blend_radius, int num_threads, uint8_t* out);                    \
    void stack_blend_u16(const uint16_t* const* frames, int k, int height, int width, int channels,                \
                         const uint8_t* labels, int blend_radius, int num_threads, uint16_t* out);                  \
    }

namespace surgifuse {
SURGIFUSE_DECLARE_DECISION_ISA(isa_baseline)
SURGIFUSE_DECLARE_DECISION_ISA(isa_avx2)
SURGIFUSE_DECLARE_DECISION_ISA(isa_avx512)

// Which copy runs here: "avx512", "avx2" or "baseline" (reported by _core.build_info()).
const char* decision_isa();
}  // namespace surgifuse
