// Python bindings of the stack decision (decision.hpp): lists of NumPy frames and focus maps in,
// fused image / depth index / confidence out; no input copies, the GIL released while computing.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "decision.hpp"
#include "decision_isa.hpp"
#ifdef SURGIFUSE_WITH_CUDA
#include "decision_cuda.hpp"
#endif

namespace py = pybind11;
using surgifuse::DecisionParams;

namespace {

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// Items of a sequence as arrays, each checked to be a C-contiguous NumPy array (never copied).
std::vector<py::array> array_list(const py::sequence& seq, const char* what) {
    std::vector<py::array> out;
    const size_t n = py::len(seq);
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        py::object item = seq[i];
        if (!py::isinstance<py::array>(item))
            throw py::type_error(std::string(what) + "[" + std::to_string(i) + "] must be a numpy array, got " +
                                 py::str(py::type::of(item)).cast<std::string>());
        py::array a = py::reinterpret_borrow<py::array>(item);
        if (!(a.flags() & py::array::c_style))
            throw py::value_error(std::string(what) + "[" + std::to_string(i) +
                                  "] must be C-contiguous (use numpy.ascontiguousarray)");
        out.push_back(a);
    }
    if (out.empty()) throw py::value_error(std::string(what) + " is empty: a focal stack needs at least one frame");
    return out;
}

struct FocusStack {
    std::vector<py::array> maps;
    std::vector<const uint32_t*> ptrs;
    int k = 0, h = 0, w = 0;
};

FocusStack check_focus_maps(const py::sequence& seq) {
    FocusStack s;
    s.maps = array_list(seq, "focus_maps");
    s.k = static_cast<int>(s.maps.size());
    if (s.k > surgifuse::kMaxStackSize)
        throw py::value_error("got " + std::to_string(s.k) + " focus maps: at most " +
                              std::to_string(surgifuse::kMaxStackSize) + " frames are supported");
    const py::array& first = s.maps[0];
    if (first.ndim() != 2) throw py::value_error("focus_maps[0] must be HxW, got shape " + shape_str(first));
    s.h = static_cast<int>(first.shape(0));
    s.w = static_cast<int>(first.shape(1));
    for (int i = 0; i < s.k; ++i) {
        const py::array& a = s.maps[i];
        if (!a.dtype().equal(py::dtype::of<uint32_t>()))
            throw py::type_error("focus_maps[" + std::to_string(i) + "] must be uint32, got " + dtype_str(a));
        if (a.ndim() != 2 || a.shape(0) != s.h || a.shape(1) != s.w)
            throw py::value_error("focus_maps[" + std::to_string(i) + "] has shape " + shape_str(a) +
                                  ", focus_maps[0] has " + shape_str(first) + ": all must match");
        s.ptrs.push_back(static_cast<const uint32_t*>(a.data()));
    }
    return s;
}

struct FrameStack {
    std::vector<py::array> frames;
    std::vector<const void*> ptrs;
    int k = 0, h = 0, w = 0, c = 0;
    bool u16 = false;
};

FrameStack check_frames(const py::sequence& seq) {
    FrameStack s;
    s.frames = array_list(seq, "frames");
    s.k = static_cast<int>(s.frames.size());
    const py::array& first = s.frames[0];
    if (first.ndim() != 2 && first.ndim() != 3)
        throw py::value_error("frames[0] must be HxW or HxWxC, got shape " + shape_str(first));
    const bool u8 = first.dtype().equal(py::dtype::of<uint8_t>());
    s.u16 = first.dtype().equal(py::dtype::of<uint16_t>());
    if (!u8 && !s.u16) throw py::type_error("frames must be uint8 or uint16, got " + dtype_str(first));
    s.h = static_cast<int>(first.shape(0));
    s.w = static_cast<int>(first.shape(1));
    s.c = first.ndim() == 3 ? static_cast<int>(first.shape(2)) : 1;
    if (s.c < 1 || s.c > 16) throw py::value_error("frames must have 1..16 channels, got shape " + shape_str(first));
    for (int i = 0; i < s.k; ++i) {
        const py::array& a = s.frames[i];
        if (!a.dtype().equal(first.dtype()))
            throw py::type_error("frames[" + std::to_string(i) + "] has dtype " + dtype_str(a) + ", frames[0] has " +
                                 dtype_str(first) + ": all frames must match");
        bool same = a.ndim() == first.ndim();
        for (py::ssize_t d = 0; same && d < a.ndim(); ++d) same = a.shape(d) == first.shape(d);
        if (!same)
            throw py::value_error("frames[" + std::to_string(i) + "] has shape " + shape_str(a) + ", frames[0] has " +
                                  shape_str(first) + ": all frames must match");
        s.ptrs.push_back(a.data());
    }
    return s;
}

py::array new_image(const FrameStack& f) {
    std::vector<py::ssize_t> shape = {f.h, f.w};
    if (f.frames[0].ndim() == 3) shape.push_back(f.c);
    return py::array(f.frames[0].dtype(), shape);
}

void blend(const FrameStack& f, const uint8_t* labels, int radius, int threads, void* out) {
    if (f.u16) {
        std::vector<const uint16_t*> p;
        for (const void* q : f.ptrs) p.push_back(static_cast<const uint16_t*>(q));
        surgifuse::stack_blend_u16(p.data(), f.k, f.h, f.w, f.c, labels, radius, threads,
                                   static_cast<uint16_t*>(out));
    } else {
        std::vector<const uint8_t*> p;
        for (const void* q : f.ptrs) p.push_back(static_cast<const uint8_t*>(q));
        surgifuse::stack_blend_u8(p.data(), f.k, f.h, f.w, f.c, labels, radius, threads,
                                  static_cast<uint8_t*>(out));
    }
}

void check_pair(const FrameStack& f, const FocusStack& m) {
    if (f.k != m.k)
        throw py::value_error("got " + std::to_string(f.k) + " frames but " + std::to_string(m.k) +
                              " focus maps: K must match");
    if (f.h != m.h || f.w != m.w)
        throw py::value_error("frames are " + std::to_string(f.h) + "x" + std::to_string(f.w) + " but focus maps are " +
                              std::to_string(m.h) + "x" + std::to_string(m.w) + ": sizes must match");
}

DecisionParams make_params(int k, int h, int w, int filter_radius, int blend_radius, uint32_t flat_threshold,
                           int num_threads) {
    DecisionParams p;
    p.filter_radius = filter_radius;
    p.blend_radius = blend_radius;
    p.flat_threshold = flat_threshold;
    p.num_threads = num_threads;
    surgifuse::check_decision_params(k, h, w, p);  // std::invalid_argument -> ValueError
    return p;
}

// The four outputs of a decision over frames, allocated (and their pointers taken) while the GIL
// is held; the computation then writes them without it.
struct FusedOutputs {
    py::array image;
    py::array_t<uint8_t> labels;
    py::array_t<float> depth, confidence;
    void* ip;
    uint8_t* lp;
    float* dp;
    float* cp;
    FusedOutputs(const FrameStack& f, const FocusStack& m)
        : image(new_image(f)), labels({m.h, m.w}), depth({m.h, m.w}), confidence({m.h, m.w}),
          ip(image.mutable_data()), lp(labels.mutable_data()), dp(depth.mutable_data()),
          cp(confidence.mutable_data()) {}
    py::tuple result() const { return py::make_tuple(image, depth, confidence, labels); }
};

py::tuple fuse_stack(const py::sequence& frames, const py::sequence& focus_maps, int filter_radius, int blend_radius,
                     uint32_t flat_threshold, int num_threads) {
    FrameStack f = check_frames(frames);
    FocusStack m = check_focus_maps(focus_maps);
    check_pair(f, m);
    DecisionParams p = make_params(m.k, m.h, m.w, filter_radius, blend_radius, flat_threshold, num_threads);
    FusedOutputs out(f, m);
    {
        py::gil_scoped_release release;
        if (f.u16) {
            std::vector<const uint16_t*> fp;
            for (const void* q : f.ptrs) fp.push_back(static_cast<const uint16_t*>(q));
            surgifuse::fuse_stack_u16(m.ptrs.data(), fp.data(), m.k, m.h, m.w, f.c, p, out.lp, out.dp, out.cp,
                                      static_cast<uint16_t*>(out.ip));
        } else {
            std::vector<const uint8_t*> fp;
            for (const void* q : f.ptrs) fp.push_back(static_cast<const uint8_t*>(q));
            surgifuse::fuse_stack_u8(m.ptrs.data(), fp.data(), m.k, m.h, m.w, f.c, p, out.lp, out.dp, out.cp,
                                     static_cast<uint8_t*>(out.ip));
        }
    }
    return out.result();
}

#ifdef SURGIFUSE_WITH_CUDA
py::tuple fuse_stack_cuda(const py::sequence& frames, const py::sequence& focus_maps, int filter_radius,
                          int blend_radius, uint32_t flat_threshold) {
    FrameStack f = check_frames(frames);
    FocusStack m = check_focus_maps(focus_maps);
    check_pair(f, m);
    DecisionParams p = make_params(m.k, m.h, m.w, filter_radius, blend_radius, flat_threshold, 0);
    FusedOutputs out(f, m);  // check_frames has limited the channels to 1..16, as the kernel needs
    {
        py::gil_scoped_release release;
        surgifuse::fuse_stack_cuda(f.ptrs.data(), f.u16 ? 2 : 1, m.ptrs.data(), m.k, m.h, m.w, f.c, p, out.ip, out.dp,
                                   out.cp, out.lp);
    }
    return out.result();
}
#endif

}  // namespace

void register_decision(py::module_& m) {
    m.def("decision_isa", &surgifuse::decision_isa,
          "Which compiled copy of the stack decision runs on this CPU: 'avx2' or 'baseline'.");
    m.def("fuse_stack", &fuse_stack, py::arg("frames"), py::arg("focus_maps"), py::kw_only(),
          py::arg("filter_radius") = 5, py::arg("blend_radius") = 4, py::arg("flat_threshold") = 0u,
          py::arg("threads") = 0,
          R"doc(Fuse K frames by their focus maps: arg-max, majority filter, boundary blend.

frames: sequence of K C-contiguous HxW or HxWxC uint8/uint16 arrays; focus_maps: K HxW uint32.
Returns (image like frames[0], depth_index float32 HxW, confidence float32 HxW, labels uint8 HxW);
labels hold K where no frame has focus information. Releases the GIL; uses the thread pool.)doc");

    m.def(
        "stack_decision",
        [](const py::sequence& focus_maps, int filter_radius, uint32_t flat_threshold, int num_threads) {
            FocusStack s = check_focus_maps(focus_maps);
            DecisionParams p = make_params(s.k, s.h, s.w, filter_radius, 0, flat_threshold, num_threads);
            py::array_t<uint8_t> labels({s.h, s.w});
            py::array_t<float> depth({s.h, s.w}), confidence({s.h, s.w});
            uint8_t* lp = labels.mutable_data();
            float* dp = depth.mutable_data();
            float* cp = confidence.mutable_data();
            {
                py::gil_scoped_release release;
                surgifuse::stack_decision(s.ptrs.data(), s.k, s.h, s.w, p, lp, dp, cp);
            }
            return py::make_tuple(labels, depth, confidence);
        },
        py::arg("focus_maps"), py::kw_only(), py::arg("filter_radius") = 5, py::arg("flat_threshold") = 0u,
        py::arg("threads") = 0,
        "Decision only: (labels uint8, depth_index float32, confidence float32) from K HxW uint32 focus maps.");

    m.def(
        "stack_blend",
        [](const py::sequence& frames, const py::array& labels, int blend_radius, int num_threads) {
            FrameStack f = check_frames(frames);
            if (!labels.dtype().equal(py::dtype::of<uint8_t>()))
                throw py::type_error("labels must be uint8, got " + dtype_str(labels));
            if (labels.ndim() != 2 || labels.shape(0) != f.h || labels.shape(1) != f.w)
                throw py::value_error("labels has shape " + shape_str(labels) + ", frames are " + std::to_string(f.h) +
                                      "x" + std::to_string(f.w));
            if (!(labels.flags() & py::array::c_style)) throw py::value_error("labels must be C-contiguous");
            const uint8_t* lp = static_cast<const uint8_t*>(labels.data());
            const size_t n = static_cast<size_t>(f.h) * static_cast<size_t>(f.w);
            for (size_t i = 0; i < n; ++i)
                if (lp[i] > f.k)
                    throw py::value_error("labels must be in [0, K=" + std::to_string(f.k) + "], found " +
                                          std::to_string(lp[i]));
            make_params(f.k, f.h, f.w, 0, blend_radius, 0, num_threads);
            py::array image = new_image(f);
            void* ip = image.mutable_data();
            {
                py::gil_scoped_release release;
                blend(f, lp, blend_radius, num_threads, ip);
            }
            return image;
        },
        py::arg("frames"), py::arg("labels"), py::kw_only(), py::arg("blend_radius") = 4, py::arg("threads") = 0,
        "Blend K frames by a uint8 label map (values 0..K, K = average of all frames).");

#ifdef SURGIFUSE_WITH_CUDA
    m.def("fuse_stack_cuda", &fuse_stack_cuda, py::arg("frames"), py::arg("focus_maps"), py::kw_only(),
          py::arg("filter_radius") = 5, py::arg("blend_radius") = 4, py::arg("flat_threshold") = 0u,
          "fuse_stack on the first CUDA device (same rules, same outputs).");
#endif
}
