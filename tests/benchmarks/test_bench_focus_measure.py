"""Focus Measure Block speed: the native core against the fastest OpenCV composition we found.

Run: .venv/bin/python -m pytest -p no:cacheprovider --benchmark-only tests/benchmarks/test_bench_focus_measure.py
The OpenCV composition is checked equal to the NumPy reference (so the comparison is fair) by a
plain test that also runs in the normal suite.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from reference_focus_measure import reference_focus_measure

from surgifuse import _core
from surgifuse.bench.compare import opencv_focus_measure

cv2 = pytest.importorskip("cv2")

FULL_HD_RGB = (1080, 1920, 3)


@pytest.fixture(scope="module")
def frame():
    return np.random.default_rng(7).integers(0, 256, size=FULL_HD_RGB, dtype=np.uint8)


@pytest.fixture
def opencv_one_thread():
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(before)


def best_time(fn, repeats: int = 15) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.mark.parametrize("window", [1, 2])
@pytest.mark.parametrize("step", [1, 2])
def test_opencv_composition_equals_reference(rng, step, window):
    # Not a benchmark (runs in the normal suite): the baseline must compute the same thing.
    image = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    want = reference_focus_measure(image, step=step, window=window)
    got = opencv_focus_measure(image, step=step, window=window).astype(np.int64)
    inner = (slice(step + window, -step - window), slice(step + window, -step - window))
    np.testing.assert_array_equal(got[inner], want[inner])
    np.testing.assert_array_equal(got, want)  # OpenCV's default border is reflect-101 too


def record_against_opencv(benchmark, frame, label):
    opencv_s = best_time(lambda: opencv_focus_measure(frame))
    ours_s = benchmark.stats.stats.min
    benchmark.extra_info.update(opencv_ms=round(opencv_s * 1e3, 3), ours_ms=round(ours_s * 1e3, 3),
                                speedup=round(opencv_s / ours_s, 2))
    print(f"\n{label}: ours {ours_s * 1e3:.2f} ms, OpenCV composition (1 thread) {opencv_s * 1e3:.2f} ms, "
          f"speedup {opencv_s / ours_s:.1f}x")


def test_bench_opencv_composition_one_thread(benchmark, frame, opencv_one_thread):
    benchmark(opencv_focus_measure, frame)


@pytest.mark.parametrize("threads", [1, 2])
def test_bench_focus_measure(benchmark, frame, opencv_one_thread, threads):
    out = benchmark(_core.focus_measure, frame, threads=threads)
    assert out.shape == FULL_HD_RGB
    record_against_opencv(benchmark, frame, f"focus_measure 1080p RGB, {threads} thread(s)")


@pytest.mark.parametrize("threads", [1, 2])
def test_bench_focus_map(benchmark, frame, opencv_one_thread, threads):
    out = benchmark(_core.focus_map, frame, threads=threads)
    assert out.shape == FULL_HD_RGB[:2]
    record_against_opencv(benchmark, frame, f"focus_map 1080p RGB, {threads} thread(s)")


def test_bench_focus_map_fmb1(benchmark, frame):
    from surgifuse.focus_measure import focus_map

    benchmark(focus_map, frame, mode="fmb1", threads=1)
