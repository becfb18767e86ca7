"""The live pipeline: capture thread -> processing thread (fail-safe) -> publisher.

Three threads and two latest-only slots: capture never waits for processing, processing never waits
for publishing, and the newest frame always wins. The processing thread hands each frame to a
single fusion worker and waits at most the budget (default one frame interval). If the engine raises,
runs past the budget, or is still busy with an earlier frame, the newest raw frame is published
marked ``fused: false`` (counted in the metrics) and the late result, when it comes, is thrown away:
a stale fused frame is never shown. A late step of an engine that was in time for 95 % of its last
30 steps costs that frame only. Otherwise, after a late result the engine rests as long as it ran
(frames meanwhile are published raw, reason "busy") so that an engine too slow for the frame rate
does not starve encoding and sending of CPU. Then it is probed: the next frame is published raw at once
(reason "probe") while the engine fuses it in the background; only when such a probe finishes
well within the budget (PROBE_MARGIN) are frames held for their fused result again. Waiting out
the budget on every attempt held one frame in five back by a whole frame interval (a visible
stutter, p99 latency 60 ms at 1080p on two cores).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable

from surgifuse.engines.base import Engine

from .capability import LiveCapability, measure_live_step
from .capture import CaptureThread
from .frames import CapturedFrame, LatestSlot, ProcessedFrame, wall_ms
from .metrics import LiveMetrics
from .motion_guard import MotionGuard
from .processor import FrameProcessor
from .settings import LiveSettings, SettingsChange, apply_update, check_settings
from .sources import FrameSource

log = logging.getLogger("surgifuse.live.pipeline")

#: Scheduling priority (nice) of the fusion thread and of the native pool threads doing its work.
#: Fusion yields to capture, encoding and sending: at 1080p on two cores the decision's two threads
#: otherwise starved the encoder, and clients got 24.7 instead of 30 fps (docs/live-pipeline.md).
FUSION_NICE = 10

#: A probe must finish within this share of the budget to bring fused frames back: an engine that
#: only just fits would otherwise flip the display between fused and raw every few frames (at 720p
#: on two cores 26 % of the frames were fused, in short runs).
PROBE_MARGIN = 0.9

#: While an engine keeps failing, one log line per this many seconds says how often.
FAILURE_REPORT_S = 60.0

#: How many recent steps say whether a late one was an exception: when ``RECENT_SHARE_IN_TIME`` (19
#: in 20) of the last ``RECENT_STEPS`` (at least ``RECENT_MIN`` of them) were within the budget, one late frame goes
#: out raw and the next is fused as usual, without the rest and the probes that an engine too slow
#: for the budget gets. At 1080p on two cores the step (23 ms p50 against a 33 ms budget) crosses
#: the budget now and then; each crossing cost a rest and a probe, and 23-26 % of the frames went
#: out raw. With the median as the test instead, a machine in a slower spell (several late frames
#: a second) held frame after frame for the whole budget: 26.9 fps, p99 54 ms; with nine in ten, 81 %
#: fused in a slow spell (docs/benchmarks-live.md).
RECENT_STEPS = 30
RECENT_MIN = 10
RECENT_SHARE_IN_TIME = 0.95


def _lower_fusion_priority() -> None:
    """Fusion worker initializer: raise this thread's nice to FUSION_NICE (Linux; elsewhere a no-op)."""
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), FUSION_NICE))
    except OSError as exc:  # a sandbox may forbid it: fusion then competes on equal terms
        log.warning("could not lower the fusion thread's priority: %s", exc)


EngineFactory = Callable[..., Engine]


def default_engine_factory(name: str, **options) -> Engine:
    """``surgifuse.engines.create_engine``: the engine called ``name`` with its ``options``."""
    from surgifuse.engines import create_engine

    return create_engine(name, **options)


def build_processor(settings: LiveSettings, engine_factory: EngineFactory = default_engine_factory) -> FrameProcessor:
    """A FrameProcessor for ``settings``; raises ``InputError`` (bad engine, option or K) before anything runs."""
    engine = engine_factory(settings.engine, **settings.engine_options)
    if engine.spec is not None:
        engine.spec.check_k(settings.k)
    guard = MotionGuard(threshold=settings.motion_threshold) if settings.motion_guard else None
    return FrameProcessor(engine, k=settings.k, align=settings.align, guard=guard)


#: Settings whose change needs a new processor (a new stack); the others apply to the next frame.
_REBUILD_FIELDS = ("engine", "engine_options", "k", "align", "motion_guard", "motion_threshold")
#: Settings whose change asks for a new measurement of the live step.
_MEASURE_FIELDS = _REBUILD_FIELDS + ("budget_ms",)


class LivePipeline:
    """Runs source -> fusion -> ``publish`` in background threads.

    Parameters
    ----------
    source : FrameSource
    publish : callable
        Called from the processing thread with each ProcessedFrame; must not block (the publisher
        puts it in a latest-only slot).
    config : LiveSettings
        Checked against the engine's declaration (``InputError`` naming the field).
    engine_factory : callable
        ``engine_factory(name, **engine_options) -> Engine``; tests inject their own.
    metrics : LiveMetrics, optional
    """

    def __init__(self, source: FrameSource, *, publish: Callable[[ProcessedFrame], None],
                 config: LiveSettings | None = None, engine_factory: EngineFactory = default_engine_factory,
                 metrics: LiveMetrics | None = None) -> None:
        self.source, self.publish = source, publish
        self.engine_factory = engine_factory
        self.metrics = metrics or LiveMetrics()
        self._config = config = check_settings(config if config is not None else LiveSettings())
        self._processor = build_processor(config, engine_factory)
        self._pending_processor: FrameProcessor | None = None
        self._config_lock = threading.Lock()
        self._slot: LatestSlot[CapturedFrame] = LatestSlot()
        self.capture = CaptureThread(source, self._slot, on_frame=self._on_captured)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="surgifuse-fusion",
                                          initializer=_lower_fusion_priority)
        self._inflight: Future | None = None
        self._cooldown_until = 0.0
        self._probing = False  # the last attempt was late: publish raw at once until a probe fits
        self._recent: deque[float] = deque(maxlen=RECENT_STEPS)  # seconds of the last finished steps
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._process_loop, name="surgifuse-processing", daemon=True)
        self.last_published_ms: float | None = None
        self.published = 0
        #: Shape of the newest captured frame (None before the first).
        self.frame_shape: tuple[int, ...] | None = None
        #: Lines for the operator (the page shows them), e.g. an engine too slow for the budget.
        self.warnings: list[str] = []
        self.capability: LiveCapability | None = None
        self._measured: tuple | None = None
        self._measure_lock = threading.Lock()
        self._engine_failures = 0
        self._failure_report_at = 0.0

    # -- control ---------------------------------------------------------------------------------
    @property
    def config(self) -> LiveSettings:
        return self._config

    def start(self) -> None:
        self.capture.start()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        self.capture.stop()
        self._slot.close()
        self.capture.join(timeout)
        self._thread.join(timeout)
        self._worker.shutdown(wait=False, cancel_futures=True)

    def apply(self, update: dict) -> SettingsChange:
        """Apply a settings update (``LiveSettingsUpdate`` fields that were set); the new engine is
        built here, so a bad value raises ``InputError`` before anything changes.

        Engine, engine options, K, alignment and guard changes start a new stack (the buffer refills
        in K frames); the budget and JPEG quality apply to the next frame. When the frame size is
        known, the new live step is measured and ``warnings`` say whether it fits the budget.
        """
        with self._config_lock:
            change = apply_update(self._config, update)
            new, old = change.settings, self._config
            if any(getattr(new, f) != getattr(old, f) for f in _REBUILD_FIELDS):
                self._pending_processor = build_processor(new, self.engine_factory)
            self._config = new
        if any(getattr(new, f) != getattr(old, f) for f in _MEASURE_FIELDS) and self.frame_shape is not None:
            self.check_capability(self.frame_shape)
        return change

    def check_capability(self, shape: tuple[int, ...]) -> LiveCapability | None:
        """Measure the live step of the current settings at frame ``shape`` on this machine and set
        ``warnings``; skipped when these settings were measured at this shape already."""
        config = self._config
        key = (config.model_dump_json(exclude={"jpeg_quality"}), tuple(shape), self.source.fps)
        with self._measure_lock:
            if key == self._measured:
                return self.capability
            try:
                # A processor of its own: the live one is in use, and engines are not thread-safe.
                processor = build_processor(config, self.engine_factory)
                capability = measure_live_step(processor, shape, budget_ms=self.budget_s() * 1000.0,
                                               engine=config.engine, k=config.k)
            except Exception as exc:  # the live stream goes on; the fail-safe reports a failing engine
                log.info("could not measure the live step of engine %r: %s", config.engine, exc)
                return None
            self._measured, self.capability = key, capability
            self.warnings = [w for w in (capability.warning(),) if w]
            for line in self.warnings:
                log.warning("%s", line)
        return capability

    def budget_s(self) -> float:
        budget_ms = self._config.budget_ms
        return (budget_ms if budget_ms is not None else 1000.0 / self.source.fps) / 1000.0

    def status(self) -> dict:
        return {**self.capture.status.as_dict(), "published": self.published,
                "last_published_ms": self.last_published_ms, "warnings": list(self.warnings)}

    # -- threads ---------------------------------------------------------------------------------
    def _on_captured(self, frame: CapturedFrame, replaced: bool) -> None:
        m = self.metrics
        m.frames_captured.inc()
        m.capture_rate.tick()
        m.observe_ms("read", frame.read_ms)
        if replaced:
            m.frames_dropped.labels("processing").inc()
        if frame.image.shape != self.frame_shape:
            # A new frame size (the first frame, or a re-opened source): does the engine keep up?
            self.frame_shape = frame.image.shape
            threading.Thread(target=self.check_capability, args=(frame.image.shape,),
                             name="surgifuse-capability", daemon=True).start()

    def _process_loop(self) -> None:
        while not self._stop_event.is_set():
            frame = self._slot.get(timeout=0.25)
            self.metrics.source_up.set(1.0 if self.capture.status.state == "running" else 0.0)
            self.metrics.source_reopens.set(self.capture.status.reopens)
            if frame is None:
                continue
            try:
                self._process_one(frame)
            except Exception:  # the processing thread must survive anything
                log.exception("processing frame %d failed", frame.seq)

    def _process_one(self, frame: CapturedFrame) -> None:
        wait_ms = max(0.0, wall_ms() - frame.capture_ms)
        if (self._inflight is not None and not self._inflight.done()) or time.monotonic() < self._cooldown_until:
            self._publish_raw(frame, "busy", wait_ms)
            return
        with self._config_lock:
            if self._pending_processor is not None:
                self._processor, self._pending_processor = self._pending_processor, None
                # Another engine or K costs another time: the old record says nothing about it.
                self._recent.clear()
                self._probing = False
        submitted = time.monotonic()
        future = self._worker.submit(self._processor.process, frame)
        future.add_done_callback(lambda _: self._recent.append(time.monotonic() - submitted))
        self._inflight = future
        if self._probing:
            self._publish_raw(frame, "probe", wait_ms)
            future.add_done_callback(lambda done: self._probe_finished(done, submitted))
            return
        try:
            result = future.result(timeout=self.budget_s())
        except FutureTimeout:
            self._publish_raw(frame, "late", wait_ms)
            if not self._usually_in_time():
                self._probing = True
                future.add_done_callback(lambda _: self._cool_down(submitted))
            return
        except Exception as exc:
            self._engine_failed(frame, exc)
            self._publish_raw(frame, "error", wait_ms)
            return
        if self._engine_failures:
            log.warning("engine %r fuses again after %d failed frames", self._config.engine, self._engine_failures)
            self._engine_failures = 0
        result.timings = {"read": frame.read_ms, "wait": wait_ms, **result.timings}
        for stage in ("prepare", "fuse", "guard", "reproject"):
            self.metrics.observe_ms(stage, result.timings[stage])
        self._emit(result)

    def _engine_failed(self, frame: CapturedFrame, exc: BaseException) -> None:
        # One warning with the reason, then a count every FAILURE_REPORT_S: an engine that fails on
        # every frame must not write 30 lines a second into the hospital's log (the metric
        # surgifuse_frames_unfused_total{reason="error"} counts every one).
        self._engine_failures += 1
        now = time.monotonic()
        if self._engine_failures == 1:
            log.warning("engine %r failed on frame %d: %s (frames go out raw; further failures are counted)",
                        self._config.engine, frame.seq, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            self._failure_report_at = now + FAILURE_REPORT_S
        elif now >= self._failure_report_at:
            log.warning("engine %r still failing: %d frames so far, the last with: %s", self._config.engine,
                        self._engine_failures, exc)
            self._failure_report_at = now + FAILURE_REPORT_S

    def _usually_in_time(self) -> bool:
        """Whether ``RECENT_SHARE_IN_TIME`` of the recent steps fit the budget: a late step is then an
        exception, not an engine too slow for the frame rate (nor a machine in a slow spell)."""
        recent = sorted(self._recent)
        if len(recent) < RECENT_MIN:
            return False
        return recent[int(RECENT_SHARE_IN_TIME * (len(recent) - 1))] <= self.budget_s()

    def _cool_down(self, submitted: float) -> None:
        # A late result is thrown away, so the CPU it took was wasted, and on a shared machine it is
        # taken from capture, encoding and sending. Rest as long as the late job ran before trying
        # again: an engine that cannot make its budget then wastes at most half the CPU it could.
        now = time.monotonic()
        self._cooldown_until = now + (now - submitted)

    def _probe_finished(self, future: Future, submitted: float) -> None:
        # Runs on the fusion worker. Its result is stale (the raw frame went out): only its time counts.
        if future.exception() is None and time.monotonic() - submitted <= PROBE_MARGIN * self.budget_s():
            self._probing = False
        else:
            self._cool_down(submitted)

    def _publish_raw(self, frame: CapturedFrame, reason: str, wait_ms: float) -> None:
        self.metrics.frames_unfused.labels(reason).inc()
        self._emit(ProcessedFrame(seq=frame.seq, capture_ms=frame.capture_ms, raw=frame.image, image=frame.image,
                                  depth=None, fused=False, engine=self._config.engine, k=1, frame_seqs=[frame.seq],
                                  timings={"read": frame.read_ms, "wait": wait_ms}, reason=reason))

    def _emit(self, processed: ProcessedFrame) -> None:
        self.metrics.observe_ms("wait", processed.timings.get("wait", 0.0))
        self.metrics.observe_ms("process_total", max(0.0, wall_ms() - processed.capture_ms))
        self.metrics.frames_published.labels("true" if processed.fused else "false").inc()
        self.metrics.publish_rate.tick()
        self.published += 1
        self.last_published_ms = wall_ms()
        self.publish(processed)
