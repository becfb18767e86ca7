"""The ratio comparisons of ``surgifuse bench``: C++ FMB vs the best OpenCV composition, streaming
update vs whole-stack fusion, each engine vs the classical one, GPU vs CPU.

Every comparison is reported as ``speedup = baseline p50 / candidate p50`` (above 1: the candidate
is faster). A ratio is only fair when both sides compute the same thing, so the OpenCV composition
of the FMB is checked equal to ``_core.focus_measure`` on interior pixels (borders may differ by
convention) before it is timed.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from surgifuse.errors import InputError, InputTypeError

from .stats import summarize

# Largest |modified Laplacian| of 8-bit data: |2*255 - 0 - 0| twice.
_ML_MAX_UINT8 = 2 * 510
_INT16_MAX = 32767


def opencv_focus_measure(image: np.ndarray, *, step: int = 1, threshold: int = 7, window: int = 1) -> np.ndarray:
    """The FMB (sum-modified-Laplacian, DESIGN.md section 1) from OpenCV primitives only.

    ``filter2D`` with the spaced [-1, 2, -1] kernels, ``np.abs`` and an in-place add for the
    modified Laplacian, ``threshold(TOZERO)`` for the per-pixel mask, ``boxFilter(normalize=False)``
    for the window sum. Int16 arithmetic where the window sum cannot overflow it (half the memory
    traffic of float32, measured 1.6x faster at 1080p), float32 otherwise. This is the fastest
    composition we found (``cv2.absdiff`` against 0 instead of ``np.abs``: 1.45x slower at 1080p;
    ``sepFilter2D`` and float32 throughout slower too), so the C++ ratio is against a fair opponent.

    Parameters
    ----------
    image : ndarray of uint8, HxW or HxWxC
    step, threshold, window : int
        As ``_core.focus_measure``: Laplacian spacing, the ML threshold T (ML >= T counts), and
        the half-width N of the (2N+1)x(2N+1) summing window.

    Returns
    -------
    ndarray, same shape as ``image``
        int16 or float32 holding exact integer focus values. Borders are reflect-101 like the
        core's, but the fairness check compares ``interior(...)`` pixels only, where no border
        convention matters.
    """
    import cv2

    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise InputTypeError(f"opencv_focus_measure needs uint8 input, got dtype {image.dtype}")
    if image.ndim not in (2, 3):
        raise InputError(f"image must be HxW or HxWxC, got shape {image.shape}")
    if step < 1 or window < 0 or threshold < 0:
        raise InputError(f"need step >= 1, window >= 0, threshold >= 0; got step={step}, window={window}, threshold={threshold}")
    side = 2 * window + 1
    use_int16 = side * side * _ML_MAX_UINT8 <= _INT16_MAX
    depth = cv2.CV_16S if use_int16 else cv2.CV_32F
    kernel = np.zeros((1, 2 * step + 1), np.float32)
    kernel[0, 0], kernel[0, step], kernel[0, -1] = -1.0, 2.0, -1.0
    # The core's border convention is reflect-101 for both the Laplacian and the window sum, which
    # is OpenCV's default: the two agree on every pixel, not only the interior.
    dx = cv2.filter2D(image, depth, kernel, borderType=cv2.BORDER_REFLECT_101)
    dy = cv2.filter2D(image, depth, kernel.T, borderType=cv2.BORDER_REFLECT_101)
    ml = np.abs(dx)
    ml += np.abs(dy)  # <= 1020 for uint8: exact in int16
    # TOZERO keeps src > thresh; ML is an integer, so thresh = T - 0.5 keeps exactly ML >= T.
    cv2.threshold(ml, threshold - 0.5, 0, cv2.THRESH_TOZERO, dst=ml)
    return cv2.boxFilter(ml, -1, (side, side), normalize=False, borderType=cv2.BORDER_REFLECT_101)


def interior(shape: Sequence[int], *, step: int, window: int) -> tuple[slice, slice]:
    """Rows and columns whose FMB does not depend on how the border is extended."""
    margin = step + window
    h, w = shape[0], shape[1]
    if h <= 2 * margin or w <= 2 * margin:
        raise InputError(f"image {w}x{h} has no interior for step={step}, window={window}")
    return slice(margin, h - margin), slice(margin, w - margin)


def check_opencv_matches_core(image: np.ndarray, *, step: int = 1, threshold: int = 7, window: int = 1) -> dict[str, Any]:
    """Compare ``opencv_focus_measure`` with ``_core.focus_measure`` on interior pixels.

    Returns ``{"equal": bool, "max_abs_diff": int, "interior_pixels": int, "equal_everywhere": bool}``
    (``equal`` is over the interior, the fairness criterion).
    """
    from surgifuse import _core

    ours = np.asarray(_core.focus_measure(image, step=step, threshold=threshold, window=window))
    theirs = opencv_focus_measure(image, step=step, threshold=threshold, window=window)
    if ours.shape != theirs.shape:
        raise InputError(f"_core.focus_measure returned shape {ours.shape}, OpenCV {theirs.shape}")
    rows, cols = interior(image.shape, step=step, window=window)
    diff = np.abs(ours[rows, cols].astype(np.int64) - theirs[rows, cols].astype(np.int64))
    everywhere = bool(np.array_equal(ours.astype(np.int64), theirs.astype(np.int64)))
    return {"equal": bool(diff.max() == 0), "max_abs_diff": int(diff.max()), "interior_pixels": int(diff.size),
            "equal_everywhere": everywhere}


def time_call(fn: Callable[[], Any], *, repeats: int, warmup: int = 2) -> list[float]:
    """Milliseconds per call of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    if repeats < 1:
        raise InputError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def comparison(name: str, *, baseline: str, candidate: str, baseline_ms: Sequence[float],
               candidate_ms: Sequence[float], note: str = "", **extra: Any) -> dict[str, Any]:
    """One comparison record: both sides' summaries and ``speedup = baseline p50 / candidate p50``."""
    base, cand = summarize(baseline_ms), summarize(candidate_ms)
    if cand["p50"] <= 0:
        raise InputError(f"{name}: candidate p50 is {cand['p50']} ms; cannot form a ratio")
    record = {
        "name": name,
        "baseline": baseline,
        "candidate": candidate,
        "baseline_p50_ms": base["p50"],
        "candidate_p50_ms": cand["p50"],
        "baseline_p99_ms": base["p99"],
        "candidate_p99_ms": cand["p99"],
        "speedup": base["p50"] / cand["p50"],
        "note": note,
    }
    record.update(extra)
    return record


def compare_fmb_core_vs_opencv(image: np.ndarray, *, repeats: int, step: int = 1, threshold: int = 7,
                               window: int = 1) -> dict[str, Any]:
    """C++ ``_core.focus_measure`` against ``opencv_focus_measure`` on one frame, both on one thread
    (the per-core ratio: thread counts would otherwise decide it)."""
    import cv2

    from surgifuse import _core

    check = check_opencv_matches_core(image, step=step, threshold=threshold, window=window)
    opts = dict(step=step, threshold=threshold, window=window)
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        cv_ms = time_call(lambda: opencv_focus_measure(image, **opts), repeats=repeats)
    finally:
        cv2.setNumThreads(cv_threads)
    core_ms = time_call(lambda: _core.focus_measure(image, threads=1, **opts), repeats=repeats)
    note = "one thread each; outputs equal on interior pixels" if check["equal"] else (
        f"UNFAIR: outputs differ on interior pixels (max |diff| {check['max_abs_diff']})")
    return comparison("FMB: C++ vs OpenCV composition", baseline="opencv filter2D+abs+threshold+boxFilter",
                      candidate="_core.focus_measure", baseline_ms=cv_ms, candidate_ms=core_ms, note=note,
                      outputs_equal=check["equal"])


def compare_streaming_vs_whole(engine, frames: Sequence[np.ndarray], *, repeats: int) -> dict[str, Any]:
    """One streaming update (prepare the newest frame + ``fuse_prepared`` over K, the other K-1
    prepared frames cached) against ``engine.fuse`` of the whole stack (prepares all K)."""
    frames = list(frames)
    prepared = [engine.prepare_frame(f) for f in frames]

    def streaming():
        prepared[-1] = engine.prepare_frame(frames[-1])
        engine.fuse_prepared(frames, prepared)

    whole_ms = time_call(lambda: engine.fuse(frames), repeats=repeats)
    stream_ms = time_call(streaming, repeats=repeats)
    return comparison(f"{engine.name}: streaming update vs whole-stack fusion (K={len(frames)})",
                      baseline="whole-stack fuse", candidate="streaming update",
                      baseline_ms=whole_ms, candidate_ms=stream_ms)


def compare_engines_to_classical(runs: Sequence[dict]) -> list[dict[str, Any]]:
    """Each engine's per-frame total against the classical engine's, from finished bench runs."""
    by_name = {r["engine"]: r for r in runs}
    base = by_name.get("classical")
    if base is None:
        return []
    out = []
    for name, run in by_name.items():
        if name == "classical":
            continue
        out.append(comparison(f"{name} vs classical (per-frame total, streaming)", baseline="classical",
                              candidate=name, baseline_ms=base["samples_ms"]["total"],
                              candidate_ms=run["samples_ms"]["total"],
                              note="speedup < 1: the engine is slower than classical"))
    return out


def compare_fmb_gpu_vs_cpu(image: np.ndarray, *, repeats: int, step: int = 1, threshold: int = 7,
                           window: int = 1) -> dict[str, Any]:
    """``_core.focus_measure_cuda`` (host in, host out) against ``_core.focus_measure``; the GPU
    result must be bit-exact. Raises ``bench.cuda.CudaUnavailableError`` without a device."""
    from surgifuse import _core
    from surgifuse.bench.cuda import require_cuda

    require_cuda()
    opts = dict(step=step, threshold=threshold, window=window)
    exact = bool(np.array_equal(np.asarray(_core.focus_measure_cuda(image, **opts)),
                                np.asarray(_core.focus_measure(image, **opts))))
    cpu_ms = time_call(lambda: _core.focus_measure(image, **opts), repeats=repeats)
    gpu_ms = time_call(lambda: _core.focus_measure_cuda(image, **opts), repeats=repeats)
    return comparison("FMB: CUDA vs CPU", baseline="_core.focus_measure", candidate="_core.focus_measure_cuda",
                      baseline_ms=cpu_ms, candidate_ms=gpu_ms, outputs_equal=exact,
                      note="bit-exact" if exact else "NOT bit-exact: CUDA result differs from CPU")
