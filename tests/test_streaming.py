"""Streaming fusion (``surgifuse.streaming``): stacks of any K in bounded memory, frame by frame.

The classical engine's result to the bit where both run (K <= 31), depth against synthetic truth
deeper than that, the lazy reader (``imageio.open_stack``) holding few frames, frame order, errors
that name the file, and ``surgifuse fuse`` / ``POST /v1/fuse`` on stacks deeper than 31.
"""

from __future__ import annotations

import gc
import io
import tracemalloc
import weakref

import cv2
import httpx
import numpy as np
import pytest
import tifffile

from surgifuse import imageio, streaming
from surgifuse.cli import main
from surgifuse.engines import create_engine, engine_spec
from surgifuse.engines.classical import ClassicalEngine
from surgifuse.errors import InputError
from surgifuse.fusion import fuse_focal_stack
from surgifuse.synth import generate_stack

H, W = 120, 160


def _assert_same_result(got, expected):
    """Image, depth index and confidence equal to the bit."""
    np.testing.assert_array_equal(got.image, expected.image)
    np.testing.assert_array_equal(got.depth_index, expected.depth_index)
    np.testing.assert_array_equal(got.confidence, expected.confidence)


def _psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def cells_stack(k: int, *, h: int = H, w: int = W, seed: int = 0, step_sigma: float = 0.8):
    """K frames of one texture on a grid of K cells, cell i (raster order) at depth i: frame i is
    sharp in cell i and blurred by ``step_sigma`` px per frame of defocus elsewhere. Returns the
    frames and the true depth (frame index) per pixel."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 0.8)
    levels = np.stack([base] + [cv2.GaussianBlur(base, (0, 0), step_sigma * s) for s in range(1, 8)])
    rows = int(np.ceil(np.sqrt(k * h / w)))
    cols = int(np.ceil(k / rows))
    cell = (np.arange(h)[:, None] * rows // h) * cols + np.arange(w)[None, :] * cols // w
    depth = np.minimum(cell, k - 1)
    frames = []
    for i in range(k):
        level = np.minimum(np.abs(depth - i), len(levels) - 1)
        frames.append(np.take_along_axis(levels, level[None, ..., None], axis=0)[0])
    return frames, depth


def _write(folder, frames, ext=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        imageio.write_image(folder / f"frame_{i}{ext}", frame)
    return folder


@pytest.fixture(scope="module")
def deep40():
    return generate_stack(1, height=H, width=W, k=40, scene="mixed")


# ------------------------------------------------------------------ the classical engine's result


@pytest.mark.parametrize("options, dtype, grey", [
    ({}, np.uint8, False),
    ({"filter_radius": 0, "blend_radius": 0}, np.uint8, False),
    ({"filter_radius": 2, "blend_radius": 7, "flat_threshold": 30, "mode": "fmb1"}, np.uint8, False),
    ({}, np.uint16, False),
    ({}, np.uint8, True),
])
def test_streamed_equals_the_classical_engine_bit_for_bit(options, dtype, grey):
    frames = generate_stack(2, height=96, width=128, k=9, scene="mixed").frames
    if grey:
        frames = [np.ascontiguousarray(f[..., 1]) for f in frames]
    if dtype == np.uint16:
        frames = [f.astype(np.uint16) * 257 + 3 for f in frames]
    engine = ClassicalEngine(**options)
    expected = engine.fuse(frames)
    got = streaming.fuse_stream(engine, frames, align=False).result
    _assert_same_result(got, expected)


@pytest.mark.parametrize("shape, options", [
    ((96, 128), {"decision_scale": 2}),
    ((100, 130), {"decision_scale": 3, "filter_radius": 2, "blend_radius": 3}),  # partial blocks at the edges
])
def test_streamed_equals_the_engine_deciding_at_a_reduced_scale(shape, options):
    # Frames of 1080 px and more are decided on focus maps summed over blocks (scaled_decision).
    frames = generate_stack(3, height=shape[0], width=shape[1], k=9, scene="mixed").frames
    engine = ClassicalEngine(**options)
    expected = engine.fuse(frames)
    got = streaming.fuse_stream(engine, frames, align=False).result
    _assert_same_result(got, expected)


def test_streamed_k31_with_motion_equals_the_whole_stack_path():
    stack = generate_stack(11, height=H, width=W, k=31, scene="mixed", breathing=0.01, motion=3)
    engine = ClassicalEngine()
    whole = fuse_focal_stack(engine, stack.frames)
    streamed = fuse_focal_stack(engine, stack.frames, stream=True)
    assert whole.moved > 0 and streamed.moved == whole.moved
    assert streamed.frames == []  # not kept
    np.testing.assert_array_equal(streamed.result.image, whole.result.image)
    np.testing.assert_array_equal(streamed.result.depth_index, whole.result.depth_index)


# ------------------------------------------------------------------ deeper than the engine's K


def test_k40_fuses_against_synthetic_truth(deep40):
    engine = ClassicalEngine()
    with pytest.raises(InputError, match="1..31"):
        engine.fuse(deep40.frames)  # the engine alone keeps its limit (the live path's)
    fusion = fuse_focal_stack(engine, deep40.frames, align=False)  # streamed: K > 31
    result = fusion.result
    assert result.image.shape == deep40.frames[0].shape and result.image.dtype == np.uint8
    assert 0 <= result.depth_index.min() and result.depth_index.max() <= 39
    # PSNR against the truth as good as the engine's on 31 of the 40 frames (measured +0.3 dB).
    every = np.unique(np.linspace(0, 39, 31).round().astype(int))
    subsampled = engine.fuse([deep40.frames[i] for i in every]).image
    assert _psnr(result.image, deep40.gt) > _psnr(subsampled, deep40.gt) - 0.5
    # The frame focused nearest each pixel's true depth, within one frame (measured 92 %).
    truth = np.argmin(np.abs(deep40.depth[..., None] - np.asarray(deep40.focus_positions)), axis=-1)
    assert np.mean(np.abs(result.depth_index - truth) <= 1) > 0.85


def test_k100_depth_is_the_known_depth():
    frames, depth = cells_stack(100)
    result = fuse_focal_stack(ClassicalEngine(), frames, align=False).result
    assert 0 <= result.depth_index.min() and result.depth_index.max() <= 99
    error = np.abs(result.depth_index - depth)
    assert np.median(error) < 0.5 and np.mean(error <= 1) > 0.9
    # Each pixel from the frame sharp there, blended over 9 px at cell edges: measured 31.8 dB
    # against the sharp texture, 11 dB above the best single frame.
    best_single = max(_psnr(f, _sharp(frames, depth)) for f in frames)
    assert _psnr(result.image, _sharp(frames, depth)) > max(30.0, best_single + 8)


def _sharp(frames, depth):
    return np.take_along_axis(np.stack(frames), depth[None, ..., None], axis=0)[0]


def test_frame_order_is_the_depth_order():
    frames, _ = cells_stack(40)
    forward = fuse_focal_stack(ClassicalEngine(), frames, align=False).result
    backward = fuse_focal_stack(ClassicalEngine(), frames[::-1], align=False).result
    # Reversed frames: depth index i becomes 39 - i wherever a frame clearly won.
    clear = (forward.confidence > 0.2) & (backward.confidence > 0.2)
    assert clear.mean() > 0.3
    np.testing.assert_allclose(backward.depth_index[clear], 39 - forward.depth_index[clear], atol=1.0)


def test_engine_declarations_say_who_streams():
    classical, fn = engine_spec("classical"), engine_spec("fn")
    assert classical.limits.streaming and not fn.limits.streaming
    assert classical.as_dict()["limits"]["streaming"] is True
    with pytest.raises(InputError, match="1..31"):
        classical.check_k(40)  # live: the declared limit stays
    assert classical.check_k(40, streaming=True) == 40
    with pytest.raises(InputError, match="1..31"):
        fn.check_k(40, streaming=True)


# ------------------------------------------------------------------ the lazy reader


def test_open_stack_names_and_frames_match_read_stack(tmp_path):
    frames = [f for f in cells_stack(12, h=32, w=40)[0]]
    _write(tmp_path / "s", frames[:10])
    pages = tmp_path / "s" / "frame_10.tif"
    tifffile.imwrite(pages, np.stack(frames[10:]), photometric="rgb")
    inputs = [tmp_path / "s"]
    stack = imageio.open_stack(inputs)
    eager, names = imageio.read_stack(inputs)
    assert len(stack) == 12 and stack.names == names
    assert stack.names[2] == str(tmp_path / "s" / "frame_2.png")  # natural order
    assert stack.names[-1] == f"{pages}[page 1]"
    for got, expected in zip(stack, eager):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(stack[11], frames[11])
    np.testing.assert_array_equal(stack.iter_frames([11, 3]).__next__(), frames[11])


def test_from_bytes_reads_an_upload_page_by_page():
    frames = cells_stack(5, h=24, w=32)[0]
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.stack(frames), photometric="rgb")
    stack = imageio.FrameStack.from_bytes([("a.png", imageio.encode_image(frames[0], "png")),
                                          ("s.tif", buf.getvalue())])
    assert stack.names == ["a.png"] + [f"s.tif[page {i}]" for i in range(5)]
    np.testing.assert_array_equal(stack[3], frames[2])


def test_the_lazy_reader_never_holds_all_frames(tmp_path, monkeypatch):
    # Every decoded frame is watched: while the stack streams, few are alive at any time.
    folder = _write(tmp_path / "s", cells_stack(60, h=48, w=64)[0])
    alive, most, order = [], [0], []
    decode = imageio._FrameSource.whole_frame

    def watched(source):
        gc.collect()
        most[0] = max(most[0], sum(ref() is not None for ref in alive))
        frame = decode(source)
        alive.append(weakref.ref(frame))
        order.append(source.name)
        return frame

    monkeypatch.setattr(imageio._FrameSource, "whole_frame", watched)
    stack = imageio.open_stack(folder)
    assert order == []  # opening reads headers only
    fuse_focal_stack(ClassicalEngine(), stack)
    # When a frame is decoded, the reference (read first) and at most READ_AHEAD + 1 frames are
    # alive: the one being folded in, the one being registered meanwhile and those decoded ahead;
    # the ones before are gone.
    ahead = streaming.READ_AHEAD
    assert 1 <= most[0] <= 2 + ahead
    names = [str(folder / f"frame_{i}.png") for i in range(60)]

    def in_order_within_ahead(decoded: list[str], expected: list[str]) -> bool:
        # the decoding threads may finish neighbours in either order, never further apart
        return (sorted(decoded, key=names.index) == expected
                and all(abs(expected.index(n) - j) <= ahead for j, n in enumerate(decoded)))

    assert order[0] == names[30] and in_order_within_ahead(order[1:61], names)  # reference, then pass 1
    assert in_order_within_ahead(order[61:], sorted(order[61:], key=names.index))  # pass 2: needed frames
    most[0], order[:] = 0, []
    fuse_focal_stack(ClassicalEngine(), stack, align=False)
    assert most[0] <= 1 + ahead and in_order_within_ahead(order[:60], names)  # no reference


def test_streaming_memory_is_bounded_by_the_frame_size():
    # 100 frames of 120x160 RGB are 5.8 MB; the streamed fusion's peak (Python/NumPy allocations)
    # stays below 100 bytes per pixel (measured 57: the per-pixel state plus a few frames).
    frames, _ = cells_stack(100)
    encoded = [imageio.encode_image(f, "png") for f in frames]
    del frames
    stack = imageio.FrameStack.from_bytes([(f"f{i}.png", data) for i, data in enumerate(encoded)])
    engine = ClassicalEngine()
    fuse_focal_stack(engine, stack, align=False)  # warm-up: imports and caches are not the stream's
    tracemalloc.start()
    try:
        fuse_focal_stack(engine, stack, align=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 * H * W
    assert peak < 0.2 * 100 * H * W * 3  # a fifth of the stack


# ------------------------------------------------------------------ errors


def test_a_frame_of_another_size_mid_stream_names_the_file(tmp_path):
    frames = cells_stack(40)[0]
    frames[25] = cv2.resize(frames[25], (80, 60))
    folder = _write(tmp_path / "s", frames)
    with pytest.raises(InputError, match=r"frame_25.png is 80x60 but .*frame_0.png is 160x120") as info:
        fuse_focal_stack(ClassicalEngine(), imageio.open_stack(folder))
    assert info.value.file.endswith("frame_25.png")


def test_a_reference_of_another_size_is_named_before_registering(tmp_path):
    frames = cells_stack(40)[0]
    frames[20] = cv2.resize(frames[20], (80, 60))
    folder = _write(tmp_path / "s", frames)
    with pytest.raises(InputError, match=r"frame_0.png is 160x120 but .*frame_20.png is 80x60"):
        fuse_focal_stack(ClassicalEngine(), imageio.open_stack(folder))


def test_engines_that_need_all_frames_keep_their_limit():
    with pytest.raises(InputError, match="one frame at a time"):
        streaming.fuse_stream(create_engine("msmfm"), cells_stack(3, h=32, w=32)[0])


# ------------------------------------------------------------------ surgifuse fuse, POST /v1/fuse


def test_cli_fuses_65_frames(tmp_path, capsys):
    frames, depth = cells_stack(65)
    folder = _write(tmp_path / "s", frames)
    out, depth_png = tmp_path / "fused.png", tmp_path / "depth.png"
    assert main(["fuse", str(folder), "-o", str(out), "--depth", str(depth_png)]) == 0
    captured = capsys.readouterr()
    assert "fused K=65" in captured.out and "one frame at a time" in captured.out
    assert "fuse, pass 1 of 2: 65/65 frame" in captured.err and "fuse, pass 2 of 2" in captured.err
    expected = fuse_focal_stack(ClassicalEngine(), frames).result
    np.testing.assert_array_equal(imageio.read_image(out), expected.image)
    # The depth of the stack streamed from disk is the one its frames give in memory, and the focus
    # curve finds the cells: each cell at its own frame, to a tenth of a step.
    from surgifuse.commands.fuse import depth_image
    from surgifuse.depth import refine_depth
    from surgifuse.focus_curve import FocusCurve

    curve = FocusCurve(frames[0].shape)
    fuse_focal_stack(ClassicalEngine(), frames, focus_curve=curve)
    measured, confidence = curve.result()
    assert curve.count == 65 and np.median(np.abs(measured - depth)) < 0.1
    np.testing.assert_array_equal(imageio.read_image(depth_png),
                                  depth_image(refine_depth(measured, confidence, expected.image)[0], 65))
    assert main(["fuse", str(folder), "-o", str(out), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")


def test_cli_mixed_sizes_mid_stream_fail_cleanly(tmp_path, capsys):
    frames = cells_stack(40)[0]
    frames[33] = np.ascontiguousarray(frames[33][:100])
    folder = _write(tmp_path / "s", frames)
    rc = main(["fuse", str(folder), "-o", str(tmp_path / "fused.png"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "frame_33.png is 160x100" in err and "frame_0.png is 160x120" in err
    assert not (tmp_path / "fused.png").exists()


@pytest.fixture(scope="module")
def server():
    from live_support import make_app, running_server

    from surgifuse.live.pipeline import default_engine_factory

    with running_server(make_app(engine_factory=default_engine_factory, upload_max_files=64)) as base:
        yield base


def _pngs(frames):
    return [("files", (f"f{i}.png", imageio.encode_image(f, "png"), "image/png")) for i, f in enumerate(frames)]


def test_upload_of_a_deep_stack_is_streamed(server):
    frames = cells_stack(40, h=48, w=64)[0]
    r = httpx.post(f"{server}/v1/fuse", files=_pngs(frames), data={"engine": "classical"})
    assert r.status_code == 200, r.text
    assert r.headers["x-surgifuse-frames"] == "40"
    expected = fuse_focal_stack(ClassicalEngine(), frames).result.image
    np.testing.assert_array_equal(imageio.decode_image(r.content, "answer"), expected)
    frames[30] = np.ascontiguousarray(frames[30][:40])
    r = httpx.post(f"{server}/v1/fuse", files=_pngs(frames), data={"engine": "classical"})
    assert r.status_code == 422 and r.json()["file"] == "f30.png" and "64x40" in r.json()["detail"]
    r = httpx.post(f"{server}/v1/fuse", files=_pngs(cells_stack(65, h=16, w=16)[0]), data={"engine": "classical"})
    assert r.status_code == 413  # the upload's own limit still holds
