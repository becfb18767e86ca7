"""The live pipeline: capture thread -> processing thread (fail-safe) -> publisher.

Three threads and two latest-only slots: capture never waits for processing, processing never waits
for publishing, and the newest frame always wins. The processing thread hands each frame to a
single fusion worker and waits at most the budget (default one frame interval). If the engine raises,
runs past the budget, or is still busy with an earlier frame, the newest raw frame is published
marked ``fused: false`` (counted in the metrics) and the late result, when it comes, is thrown away:
a stale fused frame is never shown. After a late result the engine rests as long as it ran (frames
meanwhile are published raw, reason "busy") so that an engine too slow for the frame rate does not
starve encoding and sending of CPU. Then it is probed: the next frame is published raw at once
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
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, replace
from typing import Callable

from surgifuse.engines.base import Engine

from .capture import CaptureThread
from .frames import CapturedFrame, LatestSlot, ProcessedFrame, wall_ms
from .metrics import LiveMetrics
from .motion_guard import MotionGuard
from .processor import FrameProcessor
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


def _lower_fusion_priority() -> None:
    """Fusion worker initializer: raise this thread's nice to FUSION_NICE (Linux; elsewhere a no-op)."""
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), FUSION_NICE))
    except OSError as exc:  # a sandbox may forbid it: fusion then competes on equal terms
        log.warning("could not lower the fusion thread's priority: %s", exc)


@dataclass(frozen=True)
class PipelineConfig:
    """What can change while the pipeline runs (``PUT /v1/settings``).

    ``threshold``: the focus-measure threshold T given to the engine (None: the engine's default,
    T=7 in the paper). ``budget_ms``: None means one frame interval of the source.
    """

    engine: str = "classical"
    k: int = 5
    threshold: int | None = None
    align: bool = True
    motion_guard: bool = True
    motion_threshold: float = 16.0
    budget_ms: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


EngineFactory = Callable[..., Engine]


def default_engine_factory(name: str, *, threshold: int | None = None) -> Engine:
    """``surgifuse.engines.create_engine``; the threshold is passed only when one is set."""
    from surgifuse.engines import create_engine

    return create_engine(name, **({} if threshold is None else {"threshold": threshold}))


def build_processor(config: PipelineConfig, engine_factory: EngineFactory = default_engine_factory) -> FrameProcessor:
    """A FrameProcessor for ``config``; raises ValueError (bad engine name or option) before anything runs."""
    engine = engine_factory(config.engine, threshold=config.threshold)
    guard = MotionGuard(threshold=config.motion_threshold) if config.motion_guard else None
    return FrameProcessor(engine, k=config.k, align=config.align, guard=guard)


class LivePipeline:
    """Runs source -> fusion -> ``publish`` in background threads.

    Parameters
    ----------
    source : FrameSource
    publish : callable
        Called from the processing thread with each ProcessedFrame; must not block (the publisher
        puts it in a latest-only slot).
    config : PipelineConfig
    engine_factory : callable
        ``engine_factory(name, threshold=...) -> Engine``; tests inject their own.
    metrics : LiveMetrics, optional
    """

    def __init__(self, source: FrameSource, *, publish: Callable[[ProcessedFrame], None],
                 config: PipelineConfig = PipelineConfig(), engine_factory: EngineFactory = default_engine_factory,
                 metrics: LiveMetrics | None = None) -> None:
        self.source, self.publish = source, publish
        self.engine_factory = engine_factory
        self.metrics = metrics or LiveMetrics()
        self._config = config
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
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._process_loop, name="surgifuse-processing", daemon=True)
        self.last_published_ms: float | None = None
        self.published = 0

    # -- control ---------------------------------------------------------------------------------
    @property
    def config(self) -> PipelineConfig:
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

    def reconfigure(self, **changes) -> PipelineConfig:
        """Apply new settings; the engine is built here, so a bad one raises before anything changes.

        Engine, K, threshold, align and guard changes start a new stack (the buffer refills in K
        frames); budget-only changes keep it.
        """
        with self._config_lock:
            new = replace(self._config, **changes)
            if new == self._config:
                return new
            rebuild = {k for k, v in changes.items() if getattr(self._config, k) != v} - {"budget_ms"}
            if rebuild:
                self._pending_processor = build_processor(new, self.engine_factory)
            self._config = new
            return new

    def budget_s(self) -> float:
        budget_ms = self._config.budget_ms
        return (budget_ms if budget_ms is not None else 1000.0 / self.source.fps) / 1000.0

    def status(self) -> dict:
        return {**self.capture.status.as_dict(), "published": self.published,
                "last_published_ms": self.last_published_ms}

    # -- threads ---------------------------------------------------------------------------------
    def _on_captured(self, frame: CapturedFrame, replaced: bool) -> None:
        m = self.metrics
        m.frames_captured.inc()
        m.capture_rate.tick()
        m.observe_ms("read", frame.read_ms)
        if replaced:
            m.frames_dropped.labels("processing").inc()

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
        submitted = time.monotonic()
        future = self._worker.submit(self._processor.process, frame)
        self._inflight = future
        if self._probing:
            self._publish_raw(frame, "probe", wait_ms)
            future.add_done_callback(lambda done: self._probe_finished(done, submitted))
            return
        try:
            result = future.result(timeout=self.budget_s())
        except FutureTimeout:
            self._publish_raw(frame, "late", wait_ms)
            self._probing = True
            future.add_done_callback(lambda _: self._cool_down(submitted))
            return
        except Exception as exc:
            log.warning("engine failed on frame %d: %s", frame.seq, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            self._publish_raw(frame, "error", wait_ms)
            return
        result.timings = {"read": frame.read_ms, "wait": wait_ms, **result.timings}
        for stage in ("prepare", "fuse", "guard", "reproject"):
            self.metrics.observe_ms(stage, result.timings[stage])
        self._emit(result)

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
