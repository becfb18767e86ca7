// Python bindings of the Focus Measure Block (CPU and CUDA) and of the shared thread pool.
// Arrays are used in place (no forcecast, no copy): wrong dtype/layout is an error, not a copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "focus_measure.hpp"
#include "thread_pool.hpp"
#ifdef SURGIFUSE_WITH_CUDA
#include "focus_measure_cuda.hpp"
#endif

namespace py = pybind11;
using surgifuse::FocusParams;

namespace {

struct ImageView {
    py::array array;
    int bytes = 1;  // 1: uint8, 2: uint16
    int64_t height = 0, width = 0, channels = 1;
    bool has_channel_axis = false;
};

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
        if (i) s += ", ";
        s += std::to_string(a.shape(i));
    }
    if (a.ndim() == 1) s += ",";
    return s + ")";
}

// Checks type, dtype, shape and layout; never copies.
ImageView view_image(const py::object& obj, const char* name = "image") {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(name) + " must be a numpy.ndarray, got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    ImageView v;
    v.array = py::reinterpret_borrow<py::array>(obj);
    const py::dtype dt = v.array.dtype();
    if (dt.equal(py::dtype::of<uint8_t>()))
        v.bytes = 1;
    else if (dt.equal(py::dtype::of<uint16_t>()))
        v.bytes = 2;
    else
        throw py::type_error(std::string(name) + " dtype must be uint8 or uint16 (native byte order), got " +
                             std::string(py::str(dt)));
    if (v.array.ndim() != 2 && v.array.ndim() != 3)
        throw py::value_error(std::string(name) + " must be 2-D (HxW) or 3-D (HxWxC), got shape " +
                              shape_str(v.array));
    if (v.array.size() == 0)
        throw py::value_error(std::string(name) + " is empty: shape " + shape_str(v.array));
    if (!(v.array.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + " must be C-contiguous (got shape " + shape_str(v.array) +
                              " with non-contiguous strides); pass np.ascontiguousarray(" + name + ")");
    if (reinterpret_cast<std::uintptr_t>(v.array.data()) % v.bytes != 0)
        throw py::value_error(std::string(name) + " data is not aligned for uint16");
    v.height = v.array.shape(0);
    v.width = v.array.shape(1);
    v.has_channel_axis = v.array.ndim() == 3;
    v.channels = v.has_channel_axis ? v.array.shape(2) : 1;
    return v;
}

FocusParams make_params(int64_t step, int64_t threshold, int64_t window) {
    FocusParams p;
    p.step = step;
    p.threshold = threshold;
    p.window = window;
    return p;
}

int check_threads(int threads) {
    if (threads < 0) throw py::value_error("threads must be >= 0 (0 = global setting), got " + std::to_string(threads));
    return threads;
}

// Validation errors from C++ arrive as std::invalid_argument: Python sees ValueError.
template <class F>
void call_checked(F&& f) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        throw py::value_error(e.what());
    }
}

template <class O>
py::array_t<O> alloc_like(const ImageView& v, bool per_channel) {
    if (per_channel && v.has_channel_axis)
        return py::array_t<O>({v.height, v.width, v.channels});
    return py::array_t<O>({v.height, v.width});
}

py::array focus_measure_py(const py::object& image, int64_t step, int64_t threshold, int64_t window, int threads) {
    ImageView v = view_image(image);
    FocusParams p = make_params(step, threshold, window);
    check_threads(threads);
    call_checked([&] { surgifuse::check_focus_params(v.height, v.width, v.channels, p, v.bytes, false); });
    if (v.bytes == 1 && surgifuse::focus_measure_fits_uint16(1, window)) {
        auto out = alloc_like<uint16_t>(v, true);
        const auto* in = static_cast<const uint8_t*>(v.array.data());
        uint16_t* dst = out.mutable_data();
        py::gil_scoped_release release;
        call_checked([&] { surgifuse::focus_measure(in, v.height, v.width, v.channels, p, dst, threads); });
        return std::move(out);
    }
    auto out = alloc_like<uint32_t>(v, true);
    uint32_t* dst = out.mutable_data();
    const void* data = v.array.data();
    py::gil_scoped_release release;
    call_checked([&] {
        if (v.bytes == 1)
            surgifuse::focus_measure(static_cast<const uint8_t*>(data), v.height, v.width, v.channels, p, dst, threads);
        else
            surgifuse::focus_measure(static_cast<const uint16_t*>(data), v.height, v.width, v.channels, p, dst,
                                     threads);
    });
    return std::move(out);
}

py::array focus_map_py(const py::object& image, int64_t step, int64_t threshold, int64_t window, int threads) {
    ImageView v = view_image(image);
    FocusParams p = make_params(step, threshold, window);
    check_threads(threads);
    call_checked([&] { surgifuse::check_focus_params(v.height, v.width, v.channels, p, v.bytes, true); });
    auto out = alloc_like<uint32_t>(v, false);
    uint32_t* dst = out.mutable_data();
    const void* data = v.array.data();
    py::gil_scoped_release release;
    call_checked([&] {
        if (v.bytes == 1)
            surgifuse::focus_map(static_cast<const uint8_t*>(data), v.height, v.width, v.channels, p, dst, threads);
        else
            surgifuse::focus_map(static_cast<const uint16_t*>(data), v.height, v.width, v.channels, p, dst, threads);
    });
    return std::move(out);
}

py::array rgb_to_luma_py(const py::object& image, int threads) {
    ImageView v = view_image(image);
    check_threads(threads);
    if (!v.has_channel_axis || v.channels < 3)
        throw py::value_error("image must be HxWxC with C >= 3 (RGB first), got shape " + shape_str(v.array));
    const void* data = v.array.data();
    if (v.bytes == 1) {
        py::array_t<uint8_t> out({v.height, v.width});
        uint8_t* dst = out.mutable_data();
        py::gil_scoped_release release;
        surgifuse::rgb_to_luma(static_cast<const uint8_t*>(data), v.height, v.width, v.channels, dst, threads);
        return std::move(out);
    }
    py::array_t<uint16_t> out({v.height, v.width});
    uint16_t* dst = out.mutable_data();
    py::gil_scoped_release release;
    surgifuse::rgb_to_luma(static_cast<const uint16_t*>(data), v.height, v.width, v.channels, dst, threads);
    return std::move(out);
}

int cuda_device_count_py() {
#ifdef SURGIFUSE_WITH_CUDA
    return surgifuse::cuda::device_count();
#else
    return 0;
#endif
}

#ifdef SURGIFUSE_WITH_CUDA
void require_cuda_device() {
    if (surgifuse::cuda::device_count() <= 0) throw std::runtime_error("no CUDA device");
}
#endif

py::array focus_cuda_py(const py::object& image, int64_t step, int64_t threshold, int64_t window, bool sum_channels) {
    ImageView v = view_image(image);
    FocusParams p = make_params(step, threshold, window);
    call_checked([&] { surgifuse::check_focus_params(v.height, v.width, v.channels, p, v.bytes, sum_channels); });
#ifndef SURGIFUSE_WITH_CUDA
    throw std::runtime_error("no CUDA device: surgifuse._core was built without CUDA");
#else
    require_cuda_device();
    const void* data = v.array.data();
    const bool u16_out = !sum_channels && v.bytes == 1 && surgifuse::focus_measure_fits_uint16(1, window);
    py::array out = u16_out ? py::array(alloc_like<uint16_t>(v, true))
                            : py::array(alloc_like<uint32_t>(v, !sum_channels));
    void* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        // Errors from the CUDA runtime arrive as std::runtime_error: Python sees RuntimeError.
        surgifuse::cuda::focus_measure_host(data, v.bytes, v.height, v.width, v.channels, p, sum_channels, dst,
                                            u16_out ? 2 : 4);
    }
    return out;
#endif
}

}  // namespace

void register_focus_measure(py::module_& m) {
    m.def("set_num_threads", [](int n) { surgifuse::set_num_threads(n); }, py::arg("n"),
          "Set the number of threads of every native routine; n <= 0 restores the default "
          "(SURGIFUSE_NUM_THREADS, else the CPUs this process may use).");
    m.def("get_num_threads", &surgifuse::get_num_threads, "Number of threads native routines use by default.");
    m.def("cuda_device_count", &cuda_device_count_py,
          "Number of usable CUDA devices; 0 when built without CUDA or when no device/driver is present.");
    m.def("focus_measure", &focus_measure_py, py::arg("image"), py::kw_only(), py::arg("step") = 1,
          py::arg("threshold") = 7, py::arg("window") = 1, py::arg("threads") = 0,
          "Per-channel thresholded sum-modified-Laplacian (FMB). uint8 -> uint16 (window <= 3) or "
          "uint32; uint16 -> uint32. Same shape as image. See surgifuse.focus_measure.");
    m.def("focus_map", &focus_map_py, py::arg("image"), py::kw_only(), py::arg("step") = 1,
          py::arg("threshold") = 7, py::arg("window") = 1, py::arg("threads") = 0,
          "Focus measure summed over channels (FMB3 per-pixel focus), uint32 HxW.");
    m.def("focus_measure_kernel", &surgifuse::focus_measure_kernel,
          "Kernel of focus_measure for uint8 input with window 1 on this CPU: 'box3-avx512' or 'generic' "
          "(SURGIFUSE_FMB_KERNEL=generic forces it); both are bit-identical.");
    m.def("rgb_to_luma", &rgb_to_luma_py, py::arg("image"), py::kw_only(), py::arg("threads") = 0,
          "ITU-R BT.601 integer luma (77R + 150G + 29B + 128) >> 8 of HxWxC (C >= 3), same dtype.");
    m.def(
        "focus_measure_cuda",
        [](const py::object& image, int64_t step, int64_t threshold, int64_t window) {
            return focus_cuda_py(image, step, threshold, window, false);
        },
        py::arg("image"), py::kw_only(), py::arg("step") = 1, py::arg("threshold") = 7, py::arg("window") = 1,
        "focus_measure on the GPU (host array in, host array out), bit-identical to the CPU. "
        "RuntimeError('no CUDA device') without a device.");
    m.def(
        "focus_map_cuda",
        [](const py::object& image, int64_t step, int64_t threshold, int64_t window) {
            return focus_cuda_py(image, step, threshold, window, true);
        },
        py::arg("image"), py::kw_only(), py::arg("step") = 1, py::arg("threshold") = 7, py::arg("window") = 1,
        "focus_map on the GPU (host array in, host array out), bit-identical to the CPU.");
}
