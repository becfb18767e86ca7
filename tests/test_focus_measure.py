"""Focus Measure Block: the native core against the NumPy reference, threading, errors, CUDA parity."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import cuda_device_available
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_focus_measure import reference_focus_map, reference_focus_measure, reference_luma

from surgifuse import _core
from surgifuse.focus_measure import focus_map, focus_measure, focus_measure_dtype, get_num_threads, rgb_to_luma


def random_image(rng, shape, dtype):
    return rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)


def allowed(shape, step, window):
    """reflect-101 needs offset <= n - 1 on every axis longer than one pixel."""
    return all(n == 1 or (step <= n - 1 and window <= n - 1) for n in shape[:2])


# --- exactness against the reference -------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (3, 2), (1, 7), (6, 1), (17, 31)])
def test_matches_reference_small_sizes(rng, hw, channels, dtype):
    shape = hw if channels is None else (*hw, channels)
    image = random_image(rng, shape, dtype)
    checked = 0
    for step in (1, 2, 3):
        for window in (0, 1, 2, 3, 4):
            if not allowed(shape, step, window):
                continue
            for threshold in (0, 7, 50, 10**9):
                got = focus_measure(image, step=step, threshold=threshold, window=window)
                want = reference_focus_measure(image, step=step, threshold=threshold, window=window)
                assert got.shape == image.shape
                assert got.dtype == focus_measure_dtype(dtype, window)
                np.testing.assert_array_equal(got.astype(np.int64), want)
                fmap = focus_map(image, step=step, threshold=threshold, window=window)
                assert fmap.dtype == np.uint32 and fmap.shape == hw
                np.testing.assert_array_equal(fmap.astype(np.int64), reference_focus_map(
                    image, step=step, threshold=threshold, window=window))
                checked += 1
    assert checked > 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    channels=st.sampled_from([None, 1, 2, 3, 4]),
    dtype=st.sampled_from([np.uint8, np.uint16]),
    step=st.integers(1, 3),
    window=st.integers(0, 5),
    threshold=st.sampled_from([0, 1, 7, 50, 600, 1020, 1021, 70000, 262140, 262141, 10**12]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_equals_reference(height, width, channels, dtype, step, window, threshold, seed):
    shape = (height, width) if channels is None else (height, width, channels)
    image = random_image(np.random.default_rng(seed), shape, dtype)
    if not allowed(shape, step, window):
        with pytest.raises(ValueError, match="too large"):
            focus_measure(image, step=step, threshold=threshold, window=window)
        return
    got = focus_measure(image, step=step, threshold=threshold, window=window)
    want = reference_focus_measure(image, step=step, threshold=threshold, window=window)
    np.testing.assert_array_equal(got.astype(np.int64), want)
    fmap = focus_map(image, step=step, threshold=threshold, window=window)
    np.testing.assert_array_equal(fmap.astype(np.int64), want if want.ndim == 2 else want.sum(axis=2))


def test_full_hd_rgb_matches_reference_and_threads_agree(rng):
    image = random_image(rng, (1080, 1920, 3), np.uint8)
    got = _core.focus_measure(image, threads=1)
    np.testing.assert_array_equal(got.astype(np.int64), reference_focus_measure(image))
    np.testing.assert_array_equal(_core.focus_measure(image, threads=2), got)
    np.testing.assert_array_equal(_core.focus_map(image, threads=2).astype(np.int64), got.astype(np.int64).sum(axis=2))


@pytest.mark.parametrize("dtype, step, window", [(np.uint8, 1, 1), (np.uint16, 2, 2)])
def test_large_outputs_written_with_streaming_stores_match_reference(rng, dtype, step, window):
    # Outputs of 4 MiB and more go through non-temporal stores (focus_measure.cpp); an odd width
    # starts every row at a different alignment, so the unaligned head and tail copies are hit.
    image = random_image(rng, (731, 1923, 3), dtype)
    want = reference_focus_measure(image, step=step, window=window)
    for threads in (1, 2):
        got = _core.focus_measure(image, step=step, window=window, threads=threads)
        assert got.nbytes >= 4 << 20
        np.testing.assert_array_equal(got.astype(np.int64), want)
        fmap = _core.focus_map(image, step=step, window=window, threads=threads)
        np.testing.assert_array_equal(fmap.astype(np.int64), want.sum(axis=2))


@pytest.mark.parametrize("window", [0, 1, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_threads_do_not_change_the_result(rng, window, dtype):
    image = random_image(rng, (203, 77, 3), dtype)
    one = _core.focus_measure(image, window=window, threads=1)
    for threads in (2, 3, 7):
        np.testing.assert_array_equal(_core.focus_measure(image, window=window, threads=threads), one)
        np.testing.assert_array_equal(_core.focus_map(image, window=window, threads=threads),
                                      _core.focus_map(image, window=window, threads=1))


# --- known values ---------------------------------------------------------------------------------

def test_single_bright_pixel_known_values():
    image = np.zeros((7, 7), dtype=np.uint8)
    image[3, 3] = 100
    ml = focus_measure(image, threshold=0, window=0)
    assert ml[3, 3] == 400  # |200| + |200|
    assert ml[3, 2] == ml[2, 3] == ml[3, 4] == ml[4, 3] == 100
    assert ml.sum() == 800
    fm = focus_measure(image, threshold=0, window=1)
    assert fm[3, 3] == 800  # the whole response lies in the 3x3 window
    assert fm[2, 2] == 600  # window covers the centre and two of its neighbours
    # threshold masks each summed value: at T=101 only the centre (400) survives
    fm_t = focus_measure(image, threshold=101, window=1)
    assert fm_t[2, 2] == 400 and fm_t[3, 3] == 400 and fm_t[0, 0] == 0


def test_threshold_masks_summed_pixels_not_the_centre():
    image = np.zeros((7, 7), dtype=np.uint8)
    image[3, 3] = 100
    # (3,1) has ML 0 < T, yet its window contains ML 100 at (3,2): masking per summed pixel keeps it
    assert focus_measure(image, threshold=7, window=1)[3, 1] == 100


def test_threshold_boundary_is_inclusive():
    image = np.zeros((5, 5), dtype=np.uint8)
    image[2, 2] = 10  # centre ML 40, 4-neighbour ML 10
    assert focus_measure(image, threshold=10, window=0)[2, 1] == 10
    assert focus_measure(image, threshold=11, window=0)[2, 1] == 0


def test_reflect101_border_known_value():
    # 1-D row [0, 10, 0, 0]: at x=0 reflect-101 reads I(-1) = I(1) = 10 -> |0 - 10 - 10| = 20
    image = np.array([[0, 10, 0, 0]], dtype=np.uint8)
    assert focus_measure(image, threshold=0, window=0)[0, 0] == 20


def test_one_pixel_and_constant_images_have_zero_focus():
    assert focus_measure(np.array([[200]], dtype=np.uint8), step=5, window=3).tolist() == [[0]]
    flat = np.full((9, 11, 3), 77, dtype=np.uint16)
    assert not focus_measure(flat, threshold=0).any()


def test_output_dtype_rule_and_maximum_fits():
    # a checkerboard reaches the largest ML, 4 * 255 = 1020 (|2*255 - 0 - 0| + |...|)
    checker = np.indices((11, 11)).sum(axis=0) % 2 * 255
    image = checker.astype(np.uint8)
    for window, dtype, value in [(0, np.uint16, 1020), (1, np.uint16, 9 * 1020), (3, np.uint16, 49 * 1020),
                                 (4, np.uint32, 81 * 1020)]:
        fm = focus_measure(image, threshold=0, window=window)
        assert fm.dtype == dtype
        assert fm[5, 5] == value == fm.max()
    fm16 = focus_measure((checker * 257).astype(np.uint16), threshold=0, window=1)
    assert fm16.dtype == np.uint32 and fm16[5, 5] == 9 * 4 * 65535


def test_focus_map_grey_equals_focus_measure(rng):
    grey = random_image(rng, (33, 45), np.uint8)
    np.testing.assert_array_equal(focus_map(grey), focus_measure(grey).astype(np.uint32))
    np.testing.assert_array_equal(focus_map(grey, mode="fmb1"), focus_measure(grey).astype(np.uint32))


def test_focus_map_fmb1_uses_bt601_luma(rng):
    image = random_image(rng, (40, 50, 3), np.uint8)
    grey = reference_luma(image)
    np.testing.assert_array_equal(rgb_to_luma(image), grey)
    np.testing.assert_array_equal(focus_map(image, mode="fmb1", window=2).astype(np.int64),
                                  reference_focus_measure(grey, window=2))


def test_thread_setting_round_trip():
    before = get_num_threads()
    try:
        _core.set_num_threads(3)
        assert _core.get_num_threads() == 3
        _core.set_num_threads(0)
        assert _core.get_num_threads() >= 1
    finally:
        _core.set_num_threads(before)


def test_input_is_not_modified(rng):
    image = random_image(rng, (20, 30, 3), np.uint8)
    copy = image.copy()
    focus_measure(image)
    focus_map(image)
    np.testing.assert_array_equal(image, copy)


# --- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [_core.focus_measure, _core.focus_map, focus_measure, focus_map])
def test_bad_input_errors_name_the_problem(fn):
    good = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(TypeError, match="float32"):
        fn(good.astype(np.float32))
    with pytest.raises(TypeError, match="int8"):
        fn(good.astype(np.int8))
    with pytest.raises(TypeError, match="ndarray"):
        fn(good.tolist())
    with pytest.raises(ValueError, match=r"shape \(2, 8, 8, 3\)"):
        fn(np.zeros((2, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        fn(np.zeros(8, dtype=np.uint8))
    with pytest.raises(ValueError, match="empty"):
        fn(np.zeros((0, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="C-contiguous"):
        fn(np.zeros((8, 16, 3), dtype=np.uint8)[:, ::2])
    with pytest.raises(ValueError, match="C-contiguous"):
        fn(np.zeros((8, 8), dtype=np.uint8).T[:, :5])
    with pytest.raises(ValueError, match="step=8 is too large for (an )?image height (of )?8"):
        fn(good, step=8)
    with pytest.raises(ValueError, match="window=4 is too large for (an )?image width (of )?4"):
        fn(np.zeros((9, 4), dtype=np.uint16), window=4)
    with pytest.raises(ValueError, match="step must be >= 1, got 0"):
        fn(good, step=0)
    with pytest.raises(ValueError, match="window must be >= 0, got -1"):
        fn(good, window=-1)
    with pytest.raises(ValueError, match="threshold must be >= 0, got -3"):
        fn(good, threshold=-3)
    with pytest.raises(ValueError, match="threads must be >= 0"):
        fn(good, threads=-1)


def test_non_native_byte_order_is_rejected():
    with pytest.raises(TypeError, match="uint8 or uint16"):
        _core.focus_measure(np.zeros((4, 4), dtype=">u2"))


def test_wrapper_rejects_non_integer_parameters_and_bad_mode():
    image = np.zeros((8, 8), dtype=np.uint8)
    with pytest.raises(TypeError, match="step must be an integer"):
        focus_measure(image, step=1.5)
    with pytest.raises(ValueError, match="mode must be one of"):
        focus_map(image, mode="fmb2")
    with pytest.raises(ValueError, match=r"C >= 3"):
        rgb_to_luma(np.zeros((4, 4, 2), dtype=np.uint8))


def test_cuda_entry_points_fail_cleanly_without_a_device():
    if cuda_device_available():
        pytest.skip("a CUDA device is present")
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    assert _core.cuda_device_count() == 0
    with pytest.raises(RuntimeError, match="no CUDA device"):
        _core.focus_measure_cuda(image)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        _core.focus_map_cuda(image)
    with pytest.raises(ValueError, match="step must be >= 1"):  # inputs are checked first
        _core.focus_measure_cuda(image, step=0)


# --- CUDA parity ---------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not cuda_device_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_cuda_equals_cpu_bit_exact(rng, dtype):
    for shape in [(1, 1), (2, 3, 3), (17, 31, 4), (1080, 1920, 3)]:
        image = random_image(rng, shape, dtype)
        for step in (1, 2):
            for window in (0, 1, 3):
                if not allowed(shape, step, window):
                    continue
                for threshold in (0, 7, 10**9):
                    kw = dict(step=step, threshold=threshold, window=window)
                    cpu = _core.focus_measure(image, **kw)
                    gpu = _core.focus_measure_cuda(image, **kw)
                    assert gpu.dtype == cpu.dtype and gpu.shape == cpu.shape
                    np.testing.assert_array_equal(gpu, cpu)
                    np.testing.assert_array_equal(_core.focus_map_cuda(image, **kw), _core.focus_map(image, **kw))


# --- the AVX-512 3x3 kernel ----------------------------------------------------------------------

KERNEL_SCRIPT = """
import hashlib
import numpy as np
from surgifuse import _core
rng = np.random.default_rng(3)
out = [_core.focus_measure_kernel()]
shapes = [(1, 1), (1, 2, 3), (2, 3), (3, 1, 3), (5, 17, 1), (9, 33, 3), (4, 11, 16), (6, 7, 17), (31, 63, 4),
          (64, 129, 2), (731, 1923, 3)]
for shape in shapes:
    image = rng.integers(0, 256, shape).astype(np.uint8)
    digest = hashlib.sha256()
    for step in (1, 2, 3):
        if any(n > 1 and step > n - 1 for n in shape[:2]):
            continue
        for threshold in (0, 7, 300, 5000):
            for threads in (1, 3):
                digest.update(_core.focus_measure(image, step=step, threshold=threshold, threads=threads).tobytes())
    out.append(digest.hexdigest())
print(" ".join(out))
"""


def test_avx512_box3_kernel_equals_the_generic_kernels():
    # On AVX-512 CPUs uint8 with the 3x3 window takes its own kernel (focus_measure.cpp); the
    # generic kernels (SURGIFUSE_FMB_KERNEL=generic) must give the same bits on every shape, from
    # one pixel to rows that start at every alignment, with and without the streaming stores.
    import os
    import subprocess

    if _core.focus_measure_kernel() != "box3-avx512":
        pytest.skip("this CPU has no AVX-512BW: only the generic kernels run")
    runs = {}
    for kernel in ("box3-avx512", "generic"):
        env = {**os.environ, "SURGIFUSE_FMB_KERNEL": kernel}
        done = subprocess.run([sys.executable, "-c", KERNEL_SCRIPT], env=env, capture_output=True, text=True, check=True)
        runs[kernel] = done.stdout.split()
    assert runs["box3-avx512"][0] == "box3-avx512" and runs["generic"][0] == "generic"
    assert runs["box3-avx512"][1:] == runs["generic"][1:]


def test_box3_kernel_matches_reference_at_odd_sizes(rng):
    # Whichever kernel this CPU runs, against the equation (the property test covers more sizes).
    for shape in [(1, 1, 3), (2, 40, 3), (3, 31, 16), (7, 33, 5)]:
        image = random_image(rng, shape, np.uint8)
        for step in (1, 2):
            if any(n > 1 and step > n - 1 for n in shape[:2]):
                continue
            want = reference_focus_measure(image, step=step, window=1)
            np.testing.assert_array_equal(_core.focus_measure(image, step=step, window=1).astype(np.int64), want)


def test_concurrent_callers_share_the_pool_safely(rng):
    # The GIL is released, so Python threads enter the native pool at the same time.
    from concurrent.futures import ThreadPoolExecutor

    images = [random_image(rng, (120, 90, 3), np.uint8) for _ in range(6)]
    want = [_core.focus_map(image, threads=1) for image in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda image: _core.focus_map(image, threads=3), images * 4))
    for i, result in enumerate(got):
        np.testing.assert_array_equal(result, want[i % len(images)])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux behaviour")
def test_pool_workers_run_at_the_callers_priority():
    # The live service lowers its fusion thread's priority; the native workers doing that thread's
    # work must follow it, or fusion would still starve capture and encoding.
    import os
    import threading

    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    _core.focus_measure(image, threads=2)  # workers exist, at the main thread's priority
    before = {int(t) for t in os.listdir("/proc/self/task")}
    main_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    lowered = min(19, main_nice + 7)

    def niced_job():
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), lowered)
        _core.focus_measure(image, threads=2)

    job = threading.Thread(target=niced_job)
    job.start()
    job.join()

    def nice_of(tid):
        with open(f"/proc/self/task/{tid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[16])

    niced = [t for t in before if t != threading.get_native_id() and nice_of(t) == lowered]
    assert niced, "no native worker took the calling thread's nice value"
    # and back: a job from a normal-priority thread (root may raise priority again)
    _core.focus_measure(image, threads=2)
    if os.geteuid() == 0:
        assert all(nice_of(t) == main_nice for t in niced)
