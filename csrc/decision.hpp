// Stack decision for focal-stack fusion: per-pixel arg-max of the focus measure (sum-modified-
// Laplacian, Nayar & Nakagawa 1994) with parabolic sub-frame refinement, a majority (mode) filter of
// the label map (consistency verification, Li, Manjunath & Mitra 1995) and a label-fraction blend.
#pragma once

#include <cstdint>

namespace surgifuse {

// Labels are uint8 with K meaning "no information" (every focus value of the pixel is at or below
// flat_threshold); the window counts live in 8-bit lanes, hence the two limits.
constexpr int kMaxStackSize = 31;     // K + 1 labels fit in four 64-bit words of 8-bit lanes
constexpr int kMaxDecisionRadius = 7; // (2*7+1)^2 + one column = 240 < 256: a lane never overflows

struct DecisionParams {
    int filter_radius = 5;        // majority filter window (2r+1)^2 on the raw arg-max labels
    int blend_radius = 4;         // blend window (2r+1)^2 on the filtered labels
    uint32_t flat_threshold = 0;  // a pixel whose best focus value is <= this has no information
    int num_threads = 0;          // <= 0: the pool default
};

// Throws std::invalid_argument naming the bad parameter.
void check_decision_params(int k, int height, int width, const DecisionParams& params);

// Decision on K focus maps (HxW, C-contiguous uint32). Writes, per pixel:
//   labels     : the filtered label, 0..K-1, or K where the window holds mostly no information;
//   depth      : label + parabolic sub-frame offset (in [-0.5, 0.5]; 0 where the pixel's own arg-max
//                differs from the filtered label); (K-1)/2 for label K;
//   confidence : (window fraction voting for the label) * (best - second) / best of the pixel's own
//                focus values when its own arg-max is the label, else 0; in [0, 1].
void stack_decision(const uint32_t* const* focus, int k, int height, int width,
                    const DecisionParams& params, uint8_t* labels, float* depth, float* confidence);

// Decision and blend in one pass over bands of rows (the intermediates stay in cache): the outputs
// of stack_decision plus the image of stack_blend (HxWxC like the frames).
void fuse_stack_u8(const uint32_t* const* focus, const uint8_t* const* frames, int k, int height, int width,
                   int channels, const DecisionParams& params, uint8_t* labels, float* depth, float* confidence,
                   uint8_t* image);
void fuse_stack_u16(const uint32_t* const* focus, const uint16_t* const* frames, int k, int height, int width,
                    int channels, const DecisionParams& params, uint8_t* labels, float* depth, float* confidence,
                    uint16_t* image);

// Blend K frames (HxWxC, C-contiguous) by the filtered labels: where every label of the
// (2r+1)^2 window equals the centre label (< K) the pixel is copied from that frame; otherwise each
// frame is weighted by the fraction of its label in the window, label K counting 1/K for every frame;
// integer arithmetic, rounded half up, so that identical frames give that frame exactly.
void stack_blend_u8(const uint8_t* const* frames, int k, int height, int width, int channels,
                    const uint8_t* labels, int blend_radius, int num_threads, uint8_t* out);
void stack_blend_u16(const uint16_t* const* frames, int k, int height, int width, int channels,
                     const uint8_t* labels, int blend_radius, int num_threads, uint16_t* out);

}  // namespace surgifuse
