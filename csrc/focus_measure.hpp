// Focus Measure Block (FMB): thresholded sum-modified-Laplacian over a (2N+1)^2 window, per channel
// (Nayar & Nakagawa 1994, as used by the retinal-microsurgery Fusion Network, see DESIGN.md s.1).
//
//   ML(x,y) = |2I(x,y) - I(x-step,y) - I(x+step,y)| + |2I(x,y) - I(x,y-step) - I(x,y+step)|
//   FM(x,y) = sum over the (2N+1)x(2N+1) window around (x,y) of ML * [ML >= threshold]
//
// Borders: reflect-101 (index -1 -> 1, n -> n-2); an axis of length 1 reflects onto itself.
// Images are row-major HxWxC (C >= 1, channels interleaved), contiguous.
// Every function validates its parameters (check_focus_params) and throws std::invalid_argument
// with a message naming the problem; the work is split over rows with parallel_for.
#pragma once

#include <cstdint>

namespace surgifuse {

struct FocusParams {
    int64_t step = 1;       // Laplacian spacing, >= 1
    int64_t threshold = 7;  // ML values below it are not summed; 0 counts every value
    int64_t window = 1;     // window radius N: the window is (2N+1)x(2N+1); 0 = ML alone
};

// Throws std::invalid_argument when the image is empty, a parameter is negative/zero, or the
// step/window needs more than one reflection: on an axis of length n > 1, step and window must
// be <= n - 1 (an axis of length 1 accepts any step/window). Also throws when the uint32 result
// could overflow (huge windows). bytes_per_sample: 1 (uint8) or 2 (uint16).
void check_focus_params(int64_t height, int64_t width, int64_t channels, const FocusParams& p,
                        int bytes_per_sample, bool sum_channels);

// Largest ML value: 4 * max sample (1020 for uint8, 262140 for uint16).
int64_t max_modified_laplacian(int bytes_per_sample);

// Whether focus_measure of this input returns uint16 (else uint32): uint8 input with
// (2N+1)^2 * 1020 <= 65535, i.e. window <= 3. uint16 input always gives uint32.
bool focus_measure_fits_uint16(int bytes_per_sample, int64_t window);

// Which kernel focus_measure runs for uint8 input with window 1 (the paper's setting) on this CPU:
// "box3-avx512" (AVX-512BW) or "generic"; SURGIFUSE_FMB_KERNEL=generic forces the latter. Both give
// the same output bit for bit.
const char* focus_measure_kernel();

// Per-channel FM, out has the input's shape (H*W*C values). num_threads <= 0: global setting.
void focus_measure(const uint8_t* image, int64_t height, int64_t width, int64_t channels,
                   const FocusParams& p, uint16_t* out, int num_threads = 0);  // window <= 3
void focus_measure(const uint8_t* image, int64_t height, int64_t width, int64_t channels,
                   const FocusParams& p, uint32_t* out, int num_threads = 0);
void focus_measure(const uint16_t* image, int64_t height, int64_t width, int64_t channels,
                   const FocusParams& p, uint32_t* out, int num_threads = 0);

// FM summed over the channels (FMB3 per-pixel focus), out is H*W, computed without the
// per-channel maps. For one channel it equals focus_measure.
void focus_map(const uint8_t* image, int64_t height, int64_t width, int64_t channels,
               const FocusParams& p, uint32_t* out, int num_threads = 0);
void focus_map(const uint16_t* image, int64_t height, int64_t width, int64_t channels,
               const FocusParams& p, uint32_t* out, int num_threads = 0);

// ITU-R BT.601 integer luma of the first three channels (R, G, B): (77R + 150G + 29B + 128) >> 8.
// channels must be >= 3; out is H*W of the input's type.
void rgb_to_luma(const uint8_t* image, int64_t height, int64_t width, int64_t channels,
                 uint8_t* out, int num_threads = 0);
void rgb_to_luma(const uint16_t* image, int64_t height, int64_t width, int64_t channels,
                 uint16_t* out, int num_threads = 0);

}  // namespace surgifuse
