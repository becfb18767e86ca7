"""What travels between the live threads: captured frames, processed frames, latest-only slots."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import cv2
import numpy as np

T = TypeVar("T")


def wall_ms() -> float:
    """Server wall-clock time in milliseconds since the epoch (the clock capture timestamps use)."""
    return time.time() * 1000.0


@dataclass
class CapturedFrame:
    """One frame as it left the source.

    Attributes
    ----------
    image : ndarray, HxWx3 uint8 RGB
    seq : int
        Capture sequence number, 0, 1, 2... over the life of the pipeline (gaps never occur here;
        gaps downstream are frames dropped because a newer one arrived).
    capture_ms : float
        Wall-clock ms since epoch when the frame was released by the source.
    read_ms : float
        Time spent reading/decoding/rendering it.
    focus : float or None
        Focus position if the source knows it (0 nearest the microscope .. 1 farthest).
    """

    image: np.ndarray
    seq: int
    capture_ms: float
    read_ms: float = 0.0
    focus: float | None = None


@dataclass
class ProcessedFrame:
    """What the processing thread hands to the publisher.

    ``image`` is what the display shows as "fused": the fused frame, or the newest raw frame when
    ``fused`` is false (engine error, over budget, busy). ``depth`` is the depth index map
    (float32, 0..k-1), one value per ``depth_factor`` x ``depth_factor`` block of pixels (1: HxW
    like the image; the classical engine decides 1080p on 4x4 blocks), or None when unfused;
    ``depth_map()`` gives it at the image's size (enlarged once, when a consumer asks for it: the
    depth view is encoded only while a client shows it).
    """

    seq: int
    capture_ms: float
    raw: np.ndarray
    image: np.ndarray
    depth: np.ndarray | None
    fused: bool
    engine: str
    k: int
    frame_seqs: list[int]
    timings: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    guard_fraction: float = 0.0
    frame_focus: list[float | None] = field(default_factory=list)
    depth_factor: int = 1

    def depth_map(self) -> np.ndarray | None:
        """``depth`` at the image's size (H x W), or None when unfused."""
        if self.depth is None or self.depth_factor == 1:
            return self.depth
        from surgifuse.scaled_decision import enlarge_blocks

        self.depth = enlarge_blocks(self.depth, self.depth_factor, self.image.shape[:2], cv2.INTER_LINEAR)
        self.depth_factor = 1
        return self.depth


class LatestSlot(Generic[T]):
    """A one-item, thread-safe hand-over where the newest item always wins.

    ``put`` never blocks: it replaces an item nobody has taken yet (counted in ``dropped``).
    ``get`` waits up to ``timeout`` seconds and returns None on time-out or after ``close``.
    This is the bounded queue between live threads: a slow consumer skips frames, it never makes
    the producer wait or memory grow.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store ``item``; return True when it replaced an item that was never taken."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self._cond.notify()
            return replaced

    def get(self, timeout: float | None = None) -> T | None:
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
