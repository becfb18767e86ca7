"""The capture thread: reads the source, paces it, stamps each frame, and re-opens it with back-off.

A source that fails or ends is re-opened after a delay that doubles up to a ceiling; clients see the
state through ``SourceStatus``; the process never dies of a bad camera or a dropped stream.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from .frames import CapturedFrame, LatestSlot, wall_ms
from .sources import FrameSource

log = logging.getLogger("surgifuse.live.capture")


@dataclass
class SourceStatus:
    """What clients are told about the source: ``state`` is starting, running, reconnecting or stopped."""

    description: str
    state: str = "starting"
    error: str | None = None
    reopens: int = 0
    frames: int = 0
    since_ms: float = field(default_factory=wall_ms)

    def set(self, state: str, error: str | None = None) -> None:
        if state != self.state:
            self.since_ms = wall_ms()
        self.state, self.error = state, error

    def as_dict(self) -> dict:
        return {"source": self.description, "state": self.state, "error": self.error,
                "reopens": self.reopens, "frames": self.frames, "since_ms": self.since_ms}


class CaptureThread(threading.Thread):
    """Reads ``source`` into ``out`` (a latest-only slot) until ``stop``.

    Parameters
    ----------
    source : FrameSource
    out : LatestSlot of CapturedFrame
    on_frame : callable, optional
        Called with each CapturedFrame and whether it replaced a frame nobody took (metrics).
    backoff_s : (float, float)
        First and largest delay before re-opening a failed or ended source.
    """

    def __init__(self, source: FrameSource, out: LatestSlot, *, on_frame=None,
                 backoff_s: tuple[float, float] = (0.25, 8.0)) -> None:
        super().__init__(name="surgifuse-capture", daemon=True)
        self.source, self.out, self.on_frame = source, out, on_frame
        self.backoff_s = backoff_s
        self.status = SourceStatus(source.description)
        self._stop_event = threading.Event()
        self._seq = 0

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        delay = self.backoff_s[0]
        first = True
        while not self._stop_event.is_set():
            if not first:
                self.status.reopens += 1
                if self._stop_event.wait(delay):
                    break
                delay = min(delay * 2, self.backoff_s[1])
            first = False
            try:
                self.source.open()
            except Exception as exc:  # a camera that is unplugged, a URL that is down
                self.status.set("reconnecting", f"open failed: {exc}")
                log.warning("source %s: open failed (%s); retrying in %.2f s", self.source.description, exc, delay)
                continue
            self.status.set("running")
            frames_before = self.status.frames
            try:
                ended = self._read_until_end()
            except Exception as exc:
                self.status.set("reconnecting", f"read failed: {exc}")
                log.warning("source %s: read failed (%s); re-opening", self.source.description, exc)
            else:
                if ended:
                    self.status.set("reconnecting", "source ended")
                    log.info("source %s ended; re-opening", self.source.description)
            finally:
                try:
                    self.source.close()
                except Exception:  # closing a broken source must not kill the thread
                    log.exception("closing source failed")
            if self.status.state == "running":
                self.status.set("reconnecting")
            if self.status.frames > frames_before:
                delay = self.backoff_s[0]  # it worked for a while: start the back-off again from the bottom
        self.status.set("stopped")
        self.out.close()

    def _read_until_end(self) -> bool:
        """Read frames until the source ends (True) or stop is asked (False)."""
        interval = 1.0 / self.source.fps if self.source.paced else 0.0
        due = time.monotonic()
        while not self._stop_event.is_set():
            t0 = time.perf_counter()
            image = self.source.read()
            read_ms = (time.perf_counter() - t0) * 1000.0
            if image is None:
                return True
            if interval:
                due += interval
                wait = due - time.monotonic()
                if wait > 0:
                    if self._stop_event.wait(wait):
                        return False
                elif wait < -interval:
                    due = time.monotonic()  # fell behind by more than a frame: do not burst to catch up
            frame = CapturedFrame(image=image, seq=self._seq, capture_ms=wall_ms(), read_ms=read_ms,
                                  focus=getattr(self.source, "last_focus", None))
            self._seq += 1
            self.status.frames += 1
            replaced = self.out.put(frame)
            if self.on_frame is not None:
                self.on_frame(frame, replaced)
        return False
