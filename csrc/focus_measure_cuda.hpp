// Focus Measure Block on the GPU (same maths, borders and integer results as focus_measure.hpp).
// Two entry points: a host round trip (used by the Python binding) and a device-pointer launch
// for CUDA pipelines that keep frames on the GPU. Every CUDA error becomes std::runtime_error.
#pragma once

#include <cstdint>

#include "focus_measure.hpp"

struct CUstream_st;  // cudaStream_t without pulling cuda_runtime.h into C++ translation units

namespace surgifuse {
namespace cuda {

// Number of usable CUDA devices; 0 when there is no device or driver. Never throws.
int device_count() noexcept;

// image: host pointer, H*W*C samples of uint8 (bytes_per_sample 1) or uint16 (2).
// sum_channels false: out is H*W*C of uint16 (out_bytes 2; uint8 input with window <= 3 only)
// or uint32 (out_bytes 4). sum_channels true: out is H*W uint32 (focus_map).
// Validates like the CPU (std::invalid_argument), copies in, computes, copies out, synchronises.
void focus_measure_host(const void* image, int bytes_per_sample, int64_t height, int64_t width,
                        int64_t channels, const FocusParams& p, bool sum_channels, void* out,
                        int out_bytes);

// Same on device pointers, asynchronous on `stream` (nullptr: the legacy default stream).
// d_ml_scratch: device buffer of at least H*W*C uint32 (the thresholded ML). Launch errors are
// checked (cudaGetLastError); execution errors surface at the caller's next synchronisation.
void focus_measure_device(const void* d_image, int bytes_per_sample, int64_t height, int64_t width,
                          int64_t channels, const FocusParams& p, bool sum_channels,
                          uint32_t* d_ml_scratch, void* d_out, int out_bytes, CUstream_st* stream);

}  // namespace cuda
}  // namespace surgifuse
