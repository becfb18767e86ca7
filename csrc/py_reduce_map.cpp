// Block sums of a focus map (surgifuse/scaled_decision.py): the classical decision of a large frame
// runs on focus summed over f x f blocks. In one threaded pass over the map; as NumPy and OpenCV
// calls it took three passes (float conversion, area resize, rounding) and 1.4 ms at 1080p.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "thread_pool.hpp"

namespace py = pybind11;

namespace {

// out[by][bx] = sum of map over the f x f block at (by*f, bx*f); a block that overhangs the right or
// bottom edge counts the edge row/column again for each missing one, so every block sums f*f
// values. Saturates at UINT32_MAX.
void reduce_rows(const uint32_t* map, int64_t h, int64_t w, int64_t f, uint32_t* out, int64_t ow,
                 int64_t by0, int64_t by1) {
    // Column sums over the block's f rows first (a loop the compiler vectorises), then the sums of
    // f neighbouring columns.
    std::vector<uint64_t> columns(static_cast<size_t>(w));
    for (int64_t by = by0; by < by1; ++by) {
        const uint32_t* first = map + std::min(by * f, h - 1) * w;
        for (int64_t x = 0; x < w; ++x) columns[static_cast<size_t>(x)] = first[x];
        for (int64_t dy = 1; dy < f; ++dy) {
            const uint32_t* row = map + std::min(by * f + dy, h - 1) * w;
            uint64_t* c = columns.data();
            for (int64_t x = 0; x < w; ++x) c[x] += row[x];
        }
        uint32_t* dst = out + by * ow;
        const uint64_t* c = columns.data();
        for (int64_t bx = 0; bx < ow; ++bx) {
            uint64_t s = 0;
            const int64_t x0 = bx * f;
            for (int64_t dx = 0; dx < f; ++dx) s += c[std::min(x0 + dx, w - 1)];
            dst[bx] = static_cast<uint32_t>(std::min<uint64_t>(s, std::numeric_limits<uint32_t>::max()));
        }
    }
}

py::array_t<uint32_t> reduce_focus_map(const py::array& focus_map, int64_t factor, int threads) {
    if (!py::isinstance<py::array_t<uint32_t>>(focus_map) || !focus_map.dtype().equal(py::dtype::of<uint32_t>()))
        throw py::type_error("focus_map must be a uint32 array, got " + py::str(focus_map.dtype()).cast<std::string>());
    if (focus_map.ndim() != 2) throw py::value_error("focus_map must be 2-D (HxW)");
    if (!(focus_map.flags() & py::array::c_style)) throw py::value_error("focus_map must be C-contiguous");
    if (factor < 1) throw py::value_error("factor must be >= 1, got " + std::to_string(factor));
    if (threads < 0) throw py::value_error("threads must be >= 0, got " + std::to_string(threads));
    const int64_t h = focus_map.shape(0), w = focus_map.shape(1);
    if (h == 0 || w == 0) throw py::value_error("focus_map is empty");
    const int64_t oh = (h + factor - 1) / factor, ow = (w + factor - 1) / factor;
    py::array_t<uint32_t> out({oh, ow});
    const auto* src = static_cast<const uint32_t*>(focus_map.data());
    uint32_t* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        surgifuse::parallel_for(
            0, oh, [&](int64_t b, int64_t e) { reduce_rows(src, h, w, factor, dst, ow, b, e); }, threads, 8);
    }
    return out;
}

}  // namespace

void register_reduce_map(py::module_& m) {
    m.def("reduce_focus_map", &reduce_focus_map, py::arg("focus_map"), py::kw_only(), py::arg("factor"),
          py::arg("threads") = 0,
          "Sum a uint32 focus map over factor x factor blocks (edge repeated for partial blocks; saturating).");
}
