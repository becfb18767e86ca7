"""Live pipeline parts: latest-only slots, sources, capture re-open, framing, client slots, motion guard."""

from __future__ import annotations

import asyncio
import threading
import time

import cv2
import numpy as np
import pytest
from live_support import focus_sweep, textured_scene

from surgifuse.live.capture import CaptureThread
from surgifuse.live.frames import LatestSlot
from surgifuse.live.motion_guard import MotionGuard
from surgifuse.live.publisher import ClientSlot, colourize_depth, pack_frame, unpack_frame
from surgifuse.live.sources import ArraySource, SyntheticSweepSource, VideoCaptureSource, open_source


# ------------------------------------------------------------------------------------------ slots
def test_latest_slot_keeps_only_the_newest_and_counts_drops():
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.put(3) is True
    assert slot.dropped == 2
    assert slot.get(timeout=0) == 3
    assert slot.get(timeout=0.01) is None


def test_latest_slot_get_wakes_on_put_and_on_close():
    slot = LatestSlot()
    got = []
    t = threading.Thread(target=lambda: got.append(slot.get(timeout=5)))
    t.start()
    time.sleep(0.05)
    slot.put("x")
    t.join(5)
    assert got == ["x"]
    t = threading.Thread(target=lambda: got.append(slot.get(timeout=5)))
    t.start()
    slot.close()
    t.join(5)
    assert not t.is_alive() and got[-1] is None


def test_client_slot_is_latest_only():
    async def scenario():
        slot = ClientSlot("fused")
        assert slot.offer(b"a") is False
        assert slot.offer(b"b") is True
        assert await slot.next() == b"b"
        waiter = asyncio.create_task(slot.next())
        await asyncio.sleep(0)
        slot.offer(b"c")
        assert await asyncio.wait_for(waiter, 1) == b"c"
        slot.close()
        assert await slot.next() is None
        return slot.skipped

    assert asyncio.run(scenario()) == 1


# ---------------------------------------------------------------------------------------- framing
def test_pack_unpack_round_trip():
    header = {"seq": 7, "capture_ms": 1.5, "timings": {"fuse": 2.0}}
    message = pack_frame(header, b"\xff\xd8jpeg")
    assert int.from_bytes(message[:4], "big") == len(message) - 4 - len(b"\xff\xd8jpeg")
    assert unpack_frame(message) == (header, b"\xff\xd8jpeg")
    with pytest.raises(ValueError, match="exceeds"):
        unpack_frame(message[:10])
    with pytest.raises(ValueError, match="too short"):
        unpack_frame(b"\x00")


def test_colourize_depth_maps_ends_to_different_colours():
    depth = np.array([[0.0, 4.0]], np.float32)
    bgr = colourize_depth(depth, 5)
    assert bgr.shape == (1, 2, 3) and bgr.dtype == np.uint8
    assert not np.array_equal(bgr[0, 0], bgr[0, 1])
    assert bgr[0, 0, 0] > bgr[0, 0, 2]  # near: blue in BGR
    assert bgr[0, 1, 2] > bgr[0, 1, 0]  # far: red


# ---------------------------------------------------------------------------------------- sources
def test_open_source_parses_every_kind(tmp_path):
    assert isinstance(open_source("demo", width=64, height=48), SyntheticSweepSource)
    cam = open_source("camera:2")
    assert isinstance(cam, VideoCaptureSource) and cam.target == 2 and cam.kind == "camera" and not cam.paced
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    f = open_source(f"file:{video}")
    assert f.kind == "file" and f.paced
    assert open_source("rtsp://10.0.0.5/stream").kind == "url"
    assert open_source("gst:videotestsrc ! appsink").target == "videotestsrc ! appsink"
    assert open_source("videotestsrc ! videoconvert ! appsink").kind == "gstreamer"


@pytest.mark.parametrize("spec, error", [("", ValueError), ("camera:x", ValueError), ("nonsense", ValueError),
                                         ("file:/no/such/file.mp4", FileNotFoundError)])
def test_open_source_rejects_bad_text(spec, error):
    with pytest.raises(error):
        open_source(spec)


def test_array_source_loops_and_validates():
    frames = focus_sweep(32, 40, k=3)
    src = ArraySource(frames, loop=True)
    src.open()
    got = [src.read() for _ in range(4)]
    assert got[3] is frames[0]
    once = ArraySource(frames, loop=False)
    once.open()
    assert [once.read() is not None for _ in range(4)] == [True, True, True, False]
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        ArraySource([np.zeros((4, 4), np.uint8)])
    with pytest.raises(ValueError, match="at least one"):
        ArraySource([])


def test_video_file_source_reads_rgb_and_loops(tmp_path):
    import cv2

    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48))
    for value in (0, 255):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[..., 2] = value  # red channel in BGR
        writer.write(frame)
    writer.release()
    src = open_source(f"file:{path}")
    src.open()
    assert src.fps == pytest.approx(25.0)
    first, second, third = src.read(), src.read(), src.read()
    src.close()
    assert first.shape == (48, 64, 3)
    assert second[..., 0].mean() > 200 and second[..., 2].mean() < 30  # RGB order: red first
    assert third is not None and third[..., 0].mean() < 30  # looped back to the first frame


# ---------------------------------------------------------------------------------- capture thread
class FlakySource:
    """Fails to open twice, then gives 3 frames and ends, again and again."""

    description = "flaky"
    fps = 200.0
    paced = True

    def __init__(self):
        self.opens = 0
        self.left = 0

    def open(self):
        self.opens += 1
        if self.opens <= 2:
            raise OSError("camera unplugged")
        self.left = 3

    def read(self):
        if self.left == 0:
            return None
        self.left -= 1
        return np.zeros((8, 8, 3), np.uint8)

    def close(self):
        pass


def test_capture_thread_reopens_with_backoff_and_reports_state():
    source = FlakySource()
    slot = LatestSlot()
    seen = []
    capture = CaptureThread(source, slot, on_frame=lambda f, replaced: seen.append(f.seq), backoff_s=(0.01, 0.04))
    capture.start()
    deadline = time.monotonic() + 10
    while len(seen) < 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    capture.stop()
    capture.join(5)
    assert not capture.is_alive()
    assert source.opens >= 4  # two failures, then re-opened after each end
    assert seen[:7] == list(range(7))  # sequence numbers never restart
    assert capture.status.reopens >= 3
    assert capture.status.state == "stopped"


def test_capture_thread_status_shows_open_failure():
    class Dead(FlakySource):
        def open(self):
            raise OSError("no such camera")

    capture = CaptureThread(Dead(), LatestSlot(), backoff_s=(0.01, 0.02))
    capture.start()
    time.sleep(0.1)
    state, error = capture.status.state, capture.status.error
    capture.stop()
    capture.join(5)
    assert state == "reconnecting" and "no such camera" in error


def test_capture_paces_a_file_like_source():
    frames = focus_sweep(16, 16, k=2)
    slot = LatestSlot()
    stamps = []
    capture = CaptureThread(ArraySource(frames, fps=50.0), slot, on_frame=lambda f, r: stamps.append(f.capture_ms))
    capture.start()
    time.sleep(0.5)
    capture.stop()
    capture.join(5)
    # 50 fps for 0.5 s is about 25 frames; unpaced it would be thousands
    assert 2 <= len(stamps) <= 40


# ----------------------------------------------------------------------------------- motion guard
def _instrument_frames(k=5, h=120, w=160, step=12):
    """A static textured scene with a dark bar (instrument) moving right by ``step`` px per frame."""
    scene = textured_scene(h, w, seed=3)
    frames, masks = [], []
    for i in range(k):
        f = scene.copy()
        m = np.zeros((h, w), bool)
        m[40:60, 10 + i * step:40 + i * step] = True
        f[m] = (20, 20, 20)
        frames.append(f)
        masks.append(m)
    return frames, masks


def test_motion_guard_replaces_old_instrument_positions_with_the_newest_frame():
    frames, masks = _instrument_frames()
    newest = len(frames) - 1
    # an adversarial fusion result: every pixel taken from the oldest frame (instrument at its old place)
    depth = np.zeros(frames[0].shape[:2], np.float32)
    fused = frames[0].copy()
    guard = MotionGuard(coarse_width=24)
    out = guard.apply(frames, newest, fused, depth)
    ghost = masks[0] & ~masks[newest]
    err_before = np.abs(fused.astype(int) - frames[newest].astype(int))[ghost].mean()
    err_after = np.abs(out.image.astype(int) - frames[newest].astype(int))[ghost].mean()
    assert err_before > 50
    assert err_after < 5
    assert out.fraction > 0
    assert np.all(out.depth_index[ghost] > newest - 0.5)
    # far from the instrument the fused image is untouched
    assert np.array_equal(out.image[100:, :], fused[100:, :])


def test_motion_guard_in_place_equals_the_copying_result():
    frames, _ = _instrument_frames()
    newest = len(frames) - 1
    fused, depth = frames[0].copy(), np.zeros(frames[0].shape[:2], np.float32)
    keep_fused, keep_depth = fused.copy(), depth.copy()
    copied = MotionGuard(coarse_width=24).apply(frames, newest, fused, depth)
    np.testing.assert_array_equal(fused, keep_fused)  # the default leaves its inputs alone
    np.testing.assert_array_equal(depth, keep_depth)
    assert copied.fraction > 0
    in_place = MotionGuard(coarse_width=24).apply(frames, newest, fused, depth, in_place=True)
    assert in_place.image is fused and in_place.depth_index is depth
    np.testing.assert_array_equal(in_place.image, copied.image)
    np.testing.assert_array_equal(in_place.depth_index, copied.depth_index)


def test_motion_guard_leaves_a_static_focus_sweep_alone():
    from surgifuse.synth.video import FocusSweepRenderer

    renderer = FocusSweepRenderer(1, height=240, width=320, k=5, instrument_motion=False)
    frames = [renderer.render(t).image for t in range(3, 8)]  # focus 3,4,3,2,1: defocus changes, nothing moves
    # the worst case for false alarms: every fused pixel drawn from the oldest frame
    out = MotionGuard().apply(frames, 4, frames[0].copy(), np.zeros((240, 320), np.float32))
    assert out.fraction < 0.01


def test_motion_guard_flags_a_moving_instrument_in_a_sweep():
    from surgifuse.synth.video import FocusSweepRenderer

    renderer = FocusSweepRenderer(2, height=240, width=320, k=5, motion_radius_mm=1.0, motion_period_frames=40)
    sweep = [renderer.render(t) for t in range(8, 13)]
    frames = [f.image for f in sweep]
    moved = sweep[0].instrument_mask & ~sweep[4].instrument_mask  # where the oldest frame shows a ghost
    assert moved.sum() > 100
    out = MotionGuard().apply(frames, 4, frames[0].copy(), np.zeros((240, 320), np.float32))
    err_before = np.abs(frames[0].astype(int) - sweep[4].aif.astype(int))[moved].mean()
    err_after = np.abs(out.image.astype(int) - sweep[4].aif.astype(int))[moved].mean()
    assert err_after < err_before / 2


def test_motion_guard_relabels_a_decision_before_the_blend():
    from surgifuse.scaled_decision import StackDecision

    frames, masks = _instrument_frames()
    newest = len(frames) - 1
    # an adversarial decision at half scale: every block drawn from the oldest frame
    labels = np.zeros((60, 80), np.uint8)
    decided = StackDecision(labels, np.zeros((60, 80), np.float32), np.ones((60, 80), np.float32), 2, (120, 160))
    fraction, mask = MotionGuard(coarse_width=24).relabel(frames, newest, decided)
    ghost = (masks[0] & ~masks[newest])[::2, ::2]
    assert fraction > 0 and mask.any()
    assert np.all(decided.labels[ghost] == newest) and np.all(decided.depth_index[ghost] == newest)
    assert np.all(decided.labels[50:] == 0)  # far from the instrument the decision is untouched


def test_relabel_that_changes_nothing_fuses_bit_equal_at_full_and_half_scale():
    from surgifuse.engines import create_engine

    frames = focus_sweep(96, 128, k=4)
    for scale in (1, 2):
        engine = create_engine("classical", decision_scale=scale)
        prepared = [engine.prepare_frame(f) for f in frames]
        seen = []
        plain = engine.fuse_prepared(frames, prepared)
        hooked = engine.fuse_prepared(frames, prepared, relabel=lambda d: seen.append(d.labels.shape))
        assert seen == [(96 // scale, 128 // scale)]
        np.testing.assert_array_equal(hooked.image, plain.image)
        np.testing.assert_array_equal(hooked.depth_index, plain.depth_index)


def test_processor_guards_in_the_decision_like_after_it():
    """The classical engine is guarded in its decision (no second full-size blend); a moving
    instrument's old positions still show the newest frame, a still stack is left as fused."""
    from surgifuse.engines import create_engine
    from surgifuse.live.frames import CapturedFrame
    from surgifuse.live.processor import FrameProcessor

    frames, masks = _instrument_frames()
    guarded = FrameProcessor(create_engine("classical"), k=5, align=False, guard=MotionGuard(coarse_width=24))
    plain = FrameProcessor(create_engine("classical"), k=5, align=False, guard=None)
    for i, f in enumerate(frames):
        out = guarded.process(CapturedFrame(f, i, 0.0))
        ref = plain.process(CapturedFrame(f, i, 0.0))
    assert out.guard_fraction > 0 and out.timings["guard"] > 0
    inner = cv2.erode((masks[0] & ~masks[-1]).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    err = np.abs(out.image.astype(int) - frames[-1].astype(int))[inner].mean()
    assert err < 5
    assert np.array_equal(out.image[100:], ref.image[100:])
    still = FrameProcessor(create_engine("classical"), k=5, align=False, guard=MotionGuard(coarse_width=24))
    for i in range(5):
        out = still.process(CapturedFrame(frames[0], i, 0.0))
    assert out.guard_fraction == 0.0 and np.array_equal(out.image, frames[0])


def test_buffer_refuses_relabel_for_an_engine_without_labels():
    from surgifuse.buffer import FocalStackBuffer
    from surgifuse.engines import create_engine

    buf = FocalStackBuffer(2, engine=create_engine("msmfm"))
    buf.push(focus_sweep(32, 32, k=1)[0])
    with pytest.raises(ValueError, match="relabel"):
        buf.fuse(relabel=lambda d: None)


def test_reproject_depth_moves_the_block_map_like_the_frame():
    from surgifuse.align import SimilarityTransform
    from surgifuse.live.processor import reproject_depth

    small = np.zeros((30, 40), np.float32)
    small[:, 20:] = 3.0  # frame 0 left, frame 3 right: an edge at x = 40 px in the frame
    assert np.array_equal(reproject_depth(small, 2, None, newest=4), small)
    # the newest frame sits 8 px right of the stack (raw -> stack: x - 8): its view shows the stack
    # shifted right by 8 px, 4 blocks
    moved = reproject_depth(small, 2, SimilarityTransform(1.0, 0.0, -8.0, 0.0), newest=4)
    np.testing.assert_array_equal(moved[:, 4:], small[:, :36])
    assert np.all(moved[:, :4] == 4.0)  # left of the stack's view: the newest frame's own index


def test_processed_frame_enlarges_its_block_depth_on_demand():
    from surgifuse.live.frames import ProcessedFrame

    small = np.zeros((31, 41), np.float32)
    small[:, 20:] = 2.0
    image = np.zeros((61, 81, 3), np.uint8)
    frame = ProcessedFrame(seq=0, capture_ms=0.0, raw=image, image=image, depth=small, fused=True,
                           engine="classical", k=3, frame_seqs=[0, 1, 2], depth_factor=2)
    full = frame.depth_map()
    assert full.shape == (61, 81) and full[0, 0] == 0.0 and full[0, 80] == 2.0
    assert frame.depth_map() is full and frame.depth_factor == 1


def test_motion_guard_checks_inputs():
    frames, _ = _instrument_frames(k=3)
    guard = MotionGuard()
    with pytest.raises(ValueError, match="newest"):
        guard.apply(frames, 3, frames[0], np.zeros((120, 160), np.float32))
    with pytest.raises(ValueError, match="depth_index shape"):
        guard.apply(frames, 2, frames[0], np.zeros((10, 10), np.float32))
    with pytest.raises(ValueError, match="threshold"):
        MotionGuard(threshold=-1)


def test_demo_source_renders_the_sweep_and_caches_it():
    src = SyntheticSweepSource(0, height=48, width=64, k=3, cache_frames=4)
    assert src.read() is None  # not opened yet
    src.open()
    frames = [src.read() for _ in range(5)]
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    assert frames[4] is frames[0]  # the fifth frame is the first cached one again
    assert not np.array_equal(frames[0], frames[1])  # the focus moves
    live = SyntheticSweepSource(0, height=48, width=64, k=3)
    live.open()
    assert np.array_equal(live.read(), frames[0])  # the cache holds exactly what the renderer makes
    with pytest.raises(ValueError, match="width"):
        SyntheticSweepSource(0, width=0)


def test_colourize_depth_follows_focus_positions_not_stack_order():
    # stack order 0..2 but focus far, near, middle: index 1 must get the "near" colour
    depth = np.array([[0.0, 1.0, 2.0]], np.float32)
    by_focus = colourize_depth(depth, 3, [1.0, 0.0, 0.5])
    by_order = colourize_depth(depth, 3)
    close = lambda a, b: np.abs(a.astype(int) - b.astype(int)).max() <= 10  # noqa: E731 (index 128 -> 1.004)
    assert close(by_focus[0, 0], by_order[0, 2])  # far = the last colour of the map
    assert close(by_focus[0, 1], by_order[0, 0])  # near = the first
    assert not close(by_focus[0, 1], by_order[0, 1])
    assert np.array_equal(colourize_depth(depth, 3, [None, 0.0, 1.0]), by_order)  # unknown focus: order


def test_demo_source_reports_focus_positions():
    src = SyntheticSweepSource(0, height=32, width=48, k=3)
    src.open()
    focus = []
    for _ in range(5):
        src.read()
        focus.append(src.last_focus)
    assert focus == [0.0, 0.5, 1.0, 0.5, 0.0]  # the renderer's triangle sweep


def test_processor_output_follows_the_newest_frame_when_the_eye_moves():
    # The stack is fused in its anchor frame's coordinates; the display must show the view as it is
    # now. A pure drift (no defocus): every fused frame must equal the newest frame, not the first.
    import cv2

    from surgifuse.engines.classical import ClassicalEngine
    from surgifuse.live.frames import CapturedFrame
    from surgifuse.live.processor import FrameProcessor

    rng = np.random.default_rng(3)
    scene = cv2.GaussianBlur(rng.integers(0, 256, (200, 260, 3), dtype=np.uint8), (0, 0), 1.5)
    frames = [np.ascontiguousarray(scene[20:170, 10 + 4 * i:210 + 4 * i]) for i in range(5)]  # 4 px per frame
    proc = FrameProcessor(ClassicalEngine(), k=5, align=True)
    for seq, frame in enumerate(frames):
        out = proc.process(CapturedFrame(frame, seq, 1000.0 + seq))
    newest, first = frames[-1].astype(int), frames[0].astype(int)
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(out.image.astype(int) - newest)[inner].mean() < 3.0
    assert np.abs(out.image.astype(int) - first)[inner].mean() > 10.0
    # the 16 columns the anchor frame never saw come from the newest frame itself
    np.testing.assert_array_equal(out.image[:, -12:], frames[-1][:, -12:])
    assert out.depth.shape == frames[0].shape[:2] and "reproject" in out.timings
