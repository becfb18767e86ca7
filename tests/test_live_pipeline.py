"""The live pipeline end to end without HTTP: fusion, the fail-safe, reconfiguration, the publisher."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import numpy as np
import pytest
from live_support import MaxFocusEngine, focus_sweep, maxfocus_factory

from surgifuse.errors import InputError
from surgifuse.live.frames import CapturedFrame
from surgifuse.live.metrics import LiveMetrics
from surgifuse.live.pipeline import LivePipeline
from surgifuse.live.processor import FrameProcessor
from surgifuse.live.publisher import FramePublisher, unpack_frame
from surgifuse.live.settings import LiveSettings
from surgifuse.live.sources import ArraySource


class Collector:
    def __init__(self):
        self.items = []
        self.event = threading.Event()

    def __call__(self, processed):
        self.items.append(processed)
        self.event.set()

    def wait_for(self, n, timeout=15.0):
        deadline = time.monotonic() + timeout
        while len(self.items) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.items) >= n, f"only {len(self.items)} of {n} frames published"
        return self.items


def _pipeline(collector, *, engine_factory=maxfocus_factory, fps=60.0, budget_ms=2000.0, **config):
    source = ArraySource(focus_sweep(48, 64, k=5), fps=fps)
    cfg = LiveSettings(engine="classical", k=5, align=False, budget_ms=budget_ms, **config)
    return LivePipeline(source, publish=collector, config=cfg, engine_factory=engine_factory, metrics=LiveMetrics())


def _published(pipeline, collector, n: int) -> list:
    """Run ``pipeline`` until ``collector`` holds ``n`` published frames; those frames."""
    pipeline.start()
    try:
        return collector.wait_for(n)
    finally:
        pipeline.stop()


def test_processor_fuses_the_last_k_frames_and_reports_them():
    frames = focus_sweep(48, 64, k=5)
    proc = FrameProcessor(MaxFocusEngine(), k=3, align=False)
    out = None
    for seq in range(5):
        out = proc.process(CapturedFrame(frames[seq], seq, 1000.0 + seq))
    assert out.fused and out.k == 3
    assert sorted(out.frame_seqs) == [2, 3, 4]
    assert out.image.shape == frames[0].shape and out.depth_map().shape == (48, 64)
    assert set(out.timings) >= {"prepare", "fuse", "guard"}
    # band 3 (x 38..51) is sharp only in frame 3: the fused image must hold it
    assert np.array_equal(out.image[:, 43:47], frames[3][:, 43:47])


def test_processor_rejects_bad_options():
    with pytest.raises(TypeError, match="Engine"):
        FrameProcessor(object(), k=3)
    with pytest.raises(ValueError, match="k must be"):
        FrameProcessor(MaxFocusEngine(), k=0)


def test_pipeline_publishes_fused_frames_in_order():
    collector = Collector()
    pipeline = _pipeline(collector)
    items = _published(pipeline, collector, 12)
    seqs = [p.seq for p in items]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(p.fused for p in items)
    last = items[-1]
    assert last.k == 5 and max(last.frame_seqs) == last.seq
    assert all(p.timings["wait"] >= 0 for p in items)
    assert pipeline.status()["state"] in ("running", "stopped")


def test_engine_error_publishes_the_raw_frame_keeps_going_and_logs_once(caplog):
    collector = Collector()
    metrics = LiveMetrics()
    source = ArraySource(focus_sweep(48, 64, k=5), fps=120.0)
    factory = lambda name, **options: MaxFocusEngine(fail=True)  # noqa: E731
    pipeline = LivePipeline(source, publish=collector, config=LiveSettings(align=False, budget_ms=2000.0),
                            engine_factory=factory, metrics=metrics)
    with caplog.at_level(logging.WARNING, logger="surgifuse.live.pipeline"):
        items = _published(pipeline, collector, 40)
    assert all(not p.fused and p.reason == "error" for p in items)
    assert all(p.image is p.raw and p.depth is None for p in items)
    assert metrics.frames_unfused.labels("error")._value.get() >= 40
    # One warning with the reason, not one per frame (a hospital's log would fill at 30 lines/s).
    failures = [r for r in caplog.records if "fail" in r.getMessage()]
    assert len(failures) == 1 and "engine failure (test)" in failures[0].getMessage()


def test_engine_over_budget_publishes_raw_and_drops_the_late_result():
    collector = Collector()
    metrics = LiveMetrics()
    source = ArraySource(focus_sweep(48, 64, k=5), fps=100.0)
    factory = lambda name, **options: MaxFocusEngine(delay_s=0.15)  # noqa: E731
    pipeline = LivePipeline(source, publish=collector, config=LiveSettings(align=False, budget_ms=20.0),
                            engine_factory=factory, metrics=metrics)
    # late, then about 30 frames busy (the late job plus as long a rest), then a probe
    items = _published(pipeline, collector, 60)
    reasons = {p.reason for p in items}
    assert reasons <= {"late", "busy", "probe"} and "late" in reasons and "busy" in reasons
    assert not any(p.fused for p in items)  # a result that came after its budget is never shown
    assert metrics.frames_unfused.labels("late")._value.get() >= 1
    # After the first late frame the engine is only probed: no later frame waits out the budget.
    assert [p.reason for p in items].count("late") == 1
    assert "probe" in reasons


def test_a_probe_that_fits_the_budget_brings_fused_frames_back():
    collector = Collector()
    engine = MaxFocusEngine(delay_s=0.15)
    source = ArraySource(focus_sweep(48, 64, k=5), fps=100.0)
    pipeline = LivePipeline(source, publish=collector, config=LiveSettings(align=False, budget_ms=40.0),
                            engine_factory=lambda name, **options: engine, metrics=LiveMetrics())
    pipeline.start()
    try:
        collector.wait_for(10)
        assert not any(p.fused for p in collector.items)
        engine.delay_s = 0.0  # the machine's load fell: the next probe fits
        deadline = time.monotonic() + 10
        while not any(p.fused for p in collector.items[10:]) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        pipeline.stop()
    later = collector.items[10:]
    assert any(p.reason == "probe" for p in later) and any(p.fused for p in later)
    first_fused = next(i for i, p in enumerate(later) if p.fused)
    assert all(p.fused for p in later[first_fused:first_fused + 5])  # and they stay fused


def test_one_late_step_of_an_engine_that_usually_fits_costs_one_raw_frame():
    class OnceSlow(MaxFocusEngine):
        """In time, except its 25th fusion, which takes three budgets. Each instance counts its own:
        the pipeline's capability check fuses with another instance meanwhile."""

        calls = 0

        def fuse_prepared(self, frames, prepared):
            self.calls += 1
            self.delay_s = 0.12 if self.calls == 25 else 0.0
            return super().fuse_prepared(frames, prepared)

    collector = Collector()
    pipeline = _pipeline(collector, engine_factory=lambda name, **options: OnceSlow(), fps=25.0, budget_ms=40.0)
    items = _published(pipeline, collector, 45)
    reasons = [p.reason for p in items]
    late = reasons.index("late")
    # no rest and no probe after it: the late job still runs for a frame or two (busy), then fused again
    assert "probe" not in reasons and all(r in (None, "busy") for r in reasons[late + 1:])
    assert reasons[late + 1:].count("busy") <= 3 and all(p.fused for p in items[late + 4:])


def test_a_new_engine_is_not_judged_by_the_old_one_s_record():
    # 40 steps of an engine always in time, then one that never is: its first late step must send it
    # to rest and probes at once, not be forgiven as the exception of an engine that usually fits.
    def factory(name, **options):
        return MaxFocusEngine(delay_s=0.12 if name == "msmfm" else 0.0)

    collector = Collector()
    pipeline = _pipeline(collector, engine_factory=factory, fps=25.0, budget_ms=40.0)
    pipeline.start()
    try:
        collector.wait_for(40)
        swapped = len(collector.items)  # before: the swap may happen while apply() measures the new step
        pipeline.apply({"engine": "msmfm"})
        collector.wait_for(swapped + 30)
    finally:
        pipeline.stop()
    after = [p.reason for p in collector.items[swapped:]]
    assert after.count("late") == 1 and "probe" in after


def test_apply_swaps_engine_and_k_and_rejects_bad_engine():
    collector = Collector()
    pipeline = _pipeline(collector)
    pipeline.start()
    try:
        collector.wait_for(6)
        pipeline.apply({"k": 2, "engine": "msmfm"})
        assert pipeline.config.k == 2 and pipeline.config.engine == "msmfm"
        with pytest.raises(InputError, match="unknown engine") as bad:
            pipeline.apply({"engine": "nope"})
        assert bad.value.field == "engine"
        assert pipeline.config.engine == "msmfm"  # unchanged after a failed change
        n = len(collector.items)
        collector.wait_for(n + 8)
    finally:
        pipeline.stop()
    assert collector.items[-1].k == 2


def test_publisher_encodes_each_view_once_and_serves_latest_only():
    frames = focus_sweep(48, 64, k=5)
    proc = FrameProcessor(MaxFocusEngine(), k=5, align=False)
    processed = [proc.process(CapturedFrame(f, i, 1000.0 + i)) for i, f in enumerate(frames)]
    publisher = FramePublisher(jpeg_quality=70)

    async def scenario():
        publisher.start(asyncio.get_running_loop())
        fused_client = publisher.subscribe("fused")
        depth_client = publisher.subscribe("depth")
        publisher.submit(processed[-1])
        a = await asyncio.wait_for(fused_client.next(), 5)
        b = await asyncio.wait_for(depth_client.next(), 5)
        late = publisher.subscribe("fused")  # joins after the frame: gets it at once, never a blank
        c = await asyncio.wait_for(late.next(), 5)
        publisher.stop()
        return a, b, c

    a, b, c = asyncio.run(scenario())
    ha, ja = unpack_frame(a)
    hb, jb = unpack_frame(b)
    assert c is a  # the same bytes object: encoded once, shared
    assert ha["view"] == "fused" and hb["view"] == "depth"
    assert ha["seq"] == 4 and ha["fused"] is True and ha["k"] == 5 and ha["frames"] == [0, 1, 2, 3, 4]
    assert ha["width"] == 64 and ha["height"] == 48 and "encode" in ha["timings"]
    assert ja[:2] == b"\xff\xd8" and jb[:2] == b"\xff\xd8"
    import cv2

    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(ja, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    image = processed[-1].image.astype(int)
    error = np.abs(decoded.astype(int) - image).mean()
    swapped = np.abs(decoded.astype(int) - image[..., ::-1]).mean()
    assert error < 20 and error < swapped / 2  # JPEG of a tiny random texture; colour order kept RGB


def test_publisher_rejects_bad_quality_and_view():
    publisher = FramePublisher()
    with pytest.raises(ValueError, match="jpeg_quality"):
        publisher.jpeg_quality = 0
    with pytest.raises(ValueError, match="view"):
        publisher._check_view("infrared")


def test_a_too_slow_engine_is_measured_and_warned_about():
    collector = Collector()
    source = ArraySource(focus_sweep(48, 64, k=5), fps=60.0)
    factory = lambda name, **options: MaxFocusEngine(delay_s=0.06 if name == "msmfm" else 0.0)  # noqa: E731
    pipeline = LivePipeline(source, publish=collector, config=LiveSettings(align=False, budget_ms=30.0),
                            engine_factory=factory, metrics=LiveMetrics())
    assert pipeline.check_capability((48, 64, 3)).fits and pipeline.warnings == []
    change = pipeline.apply({"engine": "msmfm"})
    assert change.settings.engine == "msmfm"
    pipeline.frame_shape = (48, 64, 3)  # as the capture thread records it
    pipeline.apply({"budget_ms": 31.0})  # a change of budget measures again
    cap = pipeline.capability
    assert cap is not None and not cap.fits and cap.step_ms >= 60
    assert len(pipeline.warnings) == 1 and "'msmfm'" in pipeline.warnings[0] and "64x48" in pipeline.warnings[0]
    assert pipeline.status()["warnings"] == pipeline.warnings
    pipeline.apply({"engine": "classical"})
    assert pipeline.warnings == []
