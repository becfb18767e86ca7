"""Prometheus metrics of the live service: per-stage latency, frame rate, dropped and unfused frames, clients.

Each service instance owns its registry (not the process-global one), so that tests can run several
apps in one process and ``/metrics`` shows exactly one pipeline.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# 1 ms .. 1 s: a frame interval is 33 ms; the display budget is about 100 ms.
_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.033, 0.05, 0.075, 0.1, 0.15,
                    0.25, 0.5, 1.0)


class RateMeter:
    """Events per second over the last ``window_s`` seconds (thread-safe)."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._times.append(now)
            self._trim(now)

    def rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            return len(self._times) / self.window_s

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()


class LiveMetrics:
    """The metric families; the pipeline, publisher and routes call these."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.stage_latency = Histogram("surgifuse_stage_latency_seconds",
                                       "Per-stage latency of the live pipeline (read, wait, prepare, fuse, guard, "
                                       "encode, send, capture_to_publish)", ["stage"], buckets=_LATENCY_BUCKETS,
                                       registry=r)
        self.frames_captured = Counter("surgifuse_frames_captured", "Frames read from the source", registry=r)
        self.frames_published = Counter("surgifuse_frames_published", "Frames handed to the publisher",
                                        ["fused"], registry=r)
        self.frames_dropped = Counter("surgifuse_frames_dropped",
                                      "Frames replaced by a newer one before use (where: processing = never "
                                      "processed, encoder = never encoded, client = skipped for a slow client)",
                                      ["where"], registry=r)
        self.frames_unfused = Counter("surgifuse_frames_unfused",
                                      "Frames published raw (fused: false) by the fail-safe", ["reason"], registry=r)
        self.clients = Gauge("surgifuse_clients", "Connected websocket clients", registry=r)
        self.source_up = Gauge("surgifuse_source_up", "1 while the source delivers frames", registry=r)
        self.source_reopens = Gauge("surgifuse_source_reopens", "Times the source was re-opened", registry=r)
        self.uploads = Counter("surgifuse_uploads", "POST /v1/fuse requests by outcome", ["status"], registry=r)
        self.capture_rate = RateMeter()
        self.publish_rate = RateMeter()
        Gauge("surgifuse_capture_frame_rate", "Frames per second read from the source (last 2 s)",
              registry=r).set_function(self.capture_rate.rate)
        Gauge("surgifuse_frame_rate", "Frames per second published (last 2 s)",
              registry=r).set_function(self.publish_rate.rate)

    def observe_ms(self, stage: str, ms: float) -> None:
        self.stage_latency.labels(stage).observe(ms / 1000.0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
