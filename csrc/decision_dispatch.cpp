// The public stack decision (decision.hpp): parameter checks, then the AVX-512, AVX2 or baseline
// copy of decision.cpp (see decision_isa.hpp) for the CPU this process runs on.
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "decision.hpp"
#include "decision_isa.hpp"

namespace surgifuse {
namespace {

enum class Isa { baseline, avx2, avx512 };

// The best copy this CPU runs (each copy's -march level). SURGIFUSE_DECISION_ISA=avx2 or
// =baseline caps it (the tests compare the copies); other values are ignored.
Isa chosen_isa() {
    static const Isa isa = [] {
        Isa best = Isa::baseline;
#if defined(SURGIFUSE_DECISION_HAVE_X86_COPIES)
        if (__builtin_cpu_supports("x86-64-v3")) best = Isa::avx2;
        if (__builtin_cpu_supports("x86-64-v4")) best = Isa::avx512;
#endif
        const char* forced = std::getenv("SURGIFUSE_DECISION_ISA");
        const std::string cap = forced ? forced : "";
        if (cap == "baseline") return Isa::baseline;
        if (cap == "avx2" && best == Isa::avx512) return Isa::avx2;
        return best;
    }();
    return isa;
}

}  // namespace

const char* decision_isa() {
    switch (chosen_isa()) {
        case Isa::avx512: return "avx512";
        case Isa::avx2: return "avx2";
        default: return "baseline";
    }
}

void check_decision_params(int k, int height, int width, const DecisionParams& params) {
    if (k < 1 || k > kMaxStackSize)
        throw std::invalid_argument("stack size K must be in [1, " + std::to_string(kMaxStackSize) + "], got " +
                                    std::to_string(k));
    if (height < 1 || width < 1)
        throw std::invalid_argument("image size must be at least 1x1, got " + std::to_string(height) + "x" +
                                    std::to_string(width));
    auto radius = [](const char* name, int r) {
        if (r < 0 || r > kMaxDecisionRadius)
            throw std::invalid_argument(std::string(name) + " must be in [0, " + std::to_string(kMaxDecisionRadius) +
                                        "], got " + std::to_string(r));
    };
    radius("filter_radius", params.filter_radius);
    radius("blend_radius", params.blend_radius);
}

// Without the AVX2 and AVX-512 objects (non-x86 builds) only the baseline is linked.
#if defined(SURGIFUSE_DECISION_HAVE_X86_COPIES)
#define SF_DISPATCH(fn, ...)                                      \
    (chosen_isa() == Isa::avx512 ? isa_avx512::fn(__VA_ARGS__)    \
     : chosen_isa() == Isa::avx2 ? isa_avx2::fn(__VA_ARGS__)      \
                                 : isa_baseline::fn(__VA_ARGS__))
#else
#define SF_DISPATCH(fn, ...) isa_baseline::fn(__VA_ARGS__)
#endif

void stack_decision(const uint32_t* const* focus, int k, int h, int w, const DecisionParams& params, uint8_t* labels,
                    float* depth, float* confidence) {
    SF_DISPATCH(stack_decision, focus, k, h, w, params, labels, depth, confidence);
}

void fuse_stack_u8(const uint32_t* const* focus, const uint8_t* const* frames, int k, int h, int w, int c,
                   const DecisionParams& params, uint8_t* labels, float* depth, float* confidence, uint8_t* image) {
    SF_DISPATCH(fuse_stack_u8, focus, frames, k, h, w, c, params, labels, depth, confidence, image);
}

void fuse_stack_u16(const uint32_t* const* focus, const uint16_t* const* frames, int k, int h, int w, int c,
                    const DecisionParams& params, uint8_t* labels, float* depth, float* confidence, uint16_t* image) {
    SF_DISPATCH(fuse_stack_u16, focus, frames, k, h, w, c, params, labels, depth, confidence, image);
}

void stack_blend_u8(const uint8_t* const* frames, int k, int h, int w, int c, const uint8_t* labels, int r,
                    int threads, uint8_t* out) {
    SF_DISPATCH(stack_blend_u8, frames, k, h, w, c, labels, r, threads, out);
}

void stack_blend_u16(const uint16_t* const* frames, int k, int h, int w, int c, const uint8_t* labels, int r,
                     int threads, uint16_t* out) {
    SF_DISPATCH(stack_blend_u16, frames, k, h, w, c, labels, r, threads, out);
}

}  // namespace surgifuse
