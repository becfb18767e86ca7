// Python module surgifuse._core: the focus measure block and the stack decision, CPU and CUDA.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_focus_measure(py::module_& m);
void register_decision(py::module_& m);
void register_reduce_map(py::module_& m);

PYBIND11_MODULE(_core, m) {
    m.doc() = "SurgiFuse native core: focus measure (sum-modified-Laplacian) and stack decision";
#ifdef SURGIFUSE_WITH_CUDA
    m.attr("built_with_cuda") = true;
#else
    m.attr("built_with_cuda") = false;
#endif
    register_focus_measure(m);
    register_decision(m);
    register_reduce_map(m);
}
