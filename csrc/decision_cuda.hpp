// Stack decision on a CUDA device: the same rules and outputs as decision.hpp (arg-max with
// parabolic refinement, majority filter, label-fraction blend), one thread per pixel.
#pragma once

#include <cstdint>

#include "decision.hpp"

namespace surgifuse {

// Host pointers in and out; copies to the current device, runs three kernels, copies back.
// frames: K HxWxC planes of uint8 (bytes_per_sample 1) or uint16 (2); focus: K HxW uint32.
// Outputs as stack_decision + stack_blend. Throws std::runtime_error naming the failing CUDA call.
void fuse_stack_cuda(const void* const* frames, int bytes_per_sample, const uint32_t* const* focus, int k, int height,
                     int width, int channels, const DecisionParams& params, void* out, float* depth,
                     float* confidence, uint8_t* labels);

}  // namespace surgifuse
