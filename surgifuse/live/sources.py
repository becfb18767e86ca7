"""Capture sources: the synthetic focus sweep, OpenCV cameras, video files, stream URLs, GStreamer.

Every source yields RGB uint8 frames (OpenCV's BGR is converted here, at the I/O boundary) and says
whether the capture thread must pace it (files and synthetic frames come as fast as asked; cameras
and network streams pace themselves). ``open_source`` turns the ``--source`` text into a source.
"""

from __future__ import annotations

import os
from typing import Protocol, Sequence

import numpy as np

from surgifuse.errors import InputError

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


class FrameSource(Protocol):
    """What the capture thread needs from a source.

    ``fps``: the nominal frame rate; ``paced``: True when the capture thread must wait between
    frames (a file would otherwise play as fast as it decodes). ``read`` returns None at the end of
    the stream or on a failed read; ``open`` raises on failure. The capture thread re-opens.
    A source that knows where the focus was may set ``last_focus`` (0 = nearest the microscope,
    1 = farthest) after each read: the depth view then shows focus position, not stack order.
    """

    description: str
    fps: float
    paced: bool

    def open(self) -> None: ...

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


#: The most memory the demo source's automatic frame cache may take (640x480: 110 MB for 120 frames;
#: 1080p would need 746 MB and renders live instead).
AUTO_CACHE_BYTES = 256 * 1024 * 1024


#: The demo eye's wander (radius, share of the width), its period (frames: the loop's 120, so the
#: pre-rendered loop stays seamless) and the breathing across a sweep.
DEMO_WANDER = 0.005
DEMO_WANDER_PERIOD = 120
DEMO_BREATHING = 0.005


class SyntheticSweepSource:
    """The default demo: a retina under a focus sweep with a moving instrument (``surgifuse.synth``).

    Parameters
    ----------
    seed : int
    height, width : int
        Frame size.
    k : int
        Focus positions per sweep (the renderer cycles through them).
    fps : float
        Frame rate it is played at.
    cache_frames : int or None
        When > 0, render this many frames once at ``open`` and loop over them: the renderer costs
        more CPU per frame than fusion at 1080p, and a load test must measure the service, not the
        generator. 0 renders live. None (the default): one seamless loop (the least common multiple
        of the focus-sweep and instrument-motion periods, 120 frames) when it fits in
        ``AUTO_CACHE_BYTES``, else live: rendering live at 640x480 took a third of a core (11 ms a
        frame) from fusion, and most demo frames went out unfused.
    instrument_motion, noise : bool
        Passed to the renderer.
    eye_motion : bool
        The eye wanders slowly (a circle of 0.5 % of the width per 120 frames) and the optics
        breathe (0.5 % across the sweep), as a real eye and microscope do, so that the demo
        exercises registration (``DEMO_EYE_MOTION``); the loop stays seamless.
    """

    paced = True

    def __init__(self, seed: int = 0, *, height: int = 720, width: int = 1280, k: int = 5, fps: float = 30.0,
                 cache_frames: int | None = None, instrument_motion: bool = True, noise: bool = True,
                 eye_motion: bool = True) -> None:
        for name, value in (("height", height), ("width", width), ("k", k)):
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive int, got {value!r}")
        if not fps > 0:
            raise InputError(f"fps must be > 0, got {fps!r}")
        if cache_frames is not None and (not isinstance(cache_frames, int) or cache_frames < 0):
            raise InputError(f"cache_frames must be None or an int >= 0, got {cache_frames!r}")
        self.seed, self.height, self.width, self.k = seed, height, width, k
        self.fps = float(fps)
        self.cache_frames = cache_frames
        self.instrument_motion, self.noise, self.eye_motion = instrument_motion, noise, bool(eye_motion)
        self.description = f"demo (synthetic focus sweep {width}x{height}, K={k}, {fps:g} fps)"
        self._renderer = None
        self._cache: list[tuple[np.ndarray, float]] = []
        self._index = 0
        self.last_focus: float | None = None

    def open(self) -> None:
        if self._renderer is None:
            from surgifuse.synth.video import EyeMotion, FocusSweepRenderer

            eye = EyeMotion(wander_px=DEMO_WANDER * self.width, wander_period_frames=DEMO_WANDER_PERIOD,
                            breathing=DEMO_BREATHING) if self.eye_motion else None
            self._renderer = FocusSweepRenderer(self.seed, height=self.height, width=self.width, k=self.k,
                                                instrument_motion=self.instrument_motion, noise=self.noise, eye=eye)
        count = self.cache_frames if self.cache_frames is not None else self._auto_cache_frames()
        if count and not self._cache:
            self._cache = [self._render(i) for i in range(count)]

    def _auto_cache_frames(self) -> int:
        period = self._renderer.loop_frames
        return period if period * self.height * self.width * 3 <= AUTO_CACHE_BYTES else 0

    def _render(self, index: int) -> tuple[np.ndarray, float]:
        frame = self._renderer.render(index)
        return np.ascontiguousarray(frame.image), frame.focus_index / max(1, self.k - 1)

    def read(self) -> np.ndarray | None:
        if self._renderer is None:
            return None
        i, self._index = self._index, self._index + 1
        image, self.last_focus = self._cache[i % len(self._cache)] if self._cache else self._render(i)
        return image

    def close(self) -> None:
        pass  # the renderer and cache are kept: re-opening must not re-render


class ArraySource:
    """Frames from memory, played in a loop at ``fps`` (tests, load tests, recorded stacks)."""

    paced = True

    def __init__(self, frames: Sequence[np.ndarray], *, fps: float = 30.0, loop: bool = True,
                 description: str = "frames in memory") -> None:
        frames = [np.ascontiguousarray(f) for f in frames]
        if not frames:
            raise InputError("ArraySource needs at least one frame, got 0")
        for i, f in enumerate(frames):
            if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
                raise InputError(f"frame {i} must be HxWx3 uint8 RGB, got shape {f.shape} dtype {f.dtype}")
        if not fps > 0:
            raise InputError(f"fps must be > 0, got {fps!r}")
        self.frames, self.fps, self.loop, self.description = frames, float(fps), loop, description
        self._index = 0

    def open(self) -> None:
        self._index = 0

    def read(self) -> np.ndarray | None:
        if self._index >= len(self.frames):
            if not self.loop:
                return None
            self._index = 0
        frame = self.frames[self._index]
        self._index += 1
        return frame

    def close(self) -> None:
        pass


class VideoCaptureSource:
    """An OpenCV ``VideoCapture``: camera index, video file, stream URL or GStreamer pipeline.

    Parameters
    ----------
    target : int or str
        Camera index, file path, URL, or GStreamer pipeline text.
    kind : {"camera", "file", "url", "gstreamer"}
    loop : bool
        Files only: start again at the end instead of reporting the end.
    fps : float, optional
        Overrides the frame rate the container reports (files are paced at it).
    """

    def __init__(self, target: int | str, *, kind: str, loop: bool = True, fps: float | None = None) -> None:
        if kind not in ("camera", "file", "url", "gstreamer"):
            raise InputError(f"kind must be camera, file, url or gstreamer, got {kind!r}")
        self.target, self.kind, self.loop = target, kind, loop
        self._fps_override = fps
        self.fps = float(fps or 30.0)
        self.paced = kind == "file"
        self.description = f"{kind}:{target}"
        self._cap = None

    def open(self) -> None:
        import cv2

        self.close()
        if self.kind == "gstreamer":
            cap = cv2.VideoCapture(self.target, cv2.CAP_GSTREAMER)
        else:
            cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            raise OSError(f"cannot open {self.description}")
        reported = cap.get(cv2.CAP_PROP_FPS)
        if self._fps_override is None and reported and 1.0 <= reported <= 1000.0:
            self.fps = float(reported)
        self._cap = cap

    def read(self) -> np.ndarray | None:
        import cv2

        if self._cap is None:
            return None
        ok, frame = self._cap.read()
        if not ok and self.kind == "file" and self.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        if frame.ndim == 2:
            return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def open_source(spec: str, *, width: int = 1280, height: int = 720, k: int = 5, fps: float = 30.0,
                loop: bool = True, cache_frames: int | None = None, seed: int = 0,
                eye_motion: bool = True) -> FrameSource:
    """Build the source named by ``spec`` (the ``--source`` option).

    ``demo`` | ``camera:INDEX`` | ``file:PATH`` | a URL (rtsp, http, https, rtmp, udp, tcp, srt) |
    ``gst:PIPELINE`` (or any text containing `` ! ``, a GStreamer pipeline). ``width``, ``height``,
    ``k``, ``fps``, ``cache_frames``, ``seed`` and ``eye_motion`` apply to the demo; ``loop`` to files. Raises
    ``ValueError`` for text it does not understand and ``FileNotFoundError`` for a missing file.
    Nothing is opened here: the capture thread opens (and re-opens) the source.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"source must be demo, camera:INDEX, file:PATH, a URL or gst:PIPELINE, got {spec!r}")
    spec = spec.strip()
    if spec == "demo":
        return SyntheticSweepSource(seed, height=height, width=width, k=k, fps=fps, cache_frames=cache_frames,
                                    eye_motion=eye_motion)
    if spec.startswith("camera:"):
        index = spec[len("camera:"):]
        if not index.isdigit():
            raise InputError(f"camera source needs a device index, e.g. camera:0, got {spec!r}")
        return VideoCaptureSource(int(index), kind="camera")
    if spec.startswith("file:"):
        path = spec[len("file:"):]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"source video file not found: {path}")
        return VideoCaptureSource(path, kind="file", loop=loop)
    if spec.lower().startswith(URL_SCHEMES):
        return VideoCaptureSource(spec, kind="url")
    if spec.startswith("gst:"):
        return VideoCaptureSource(spec[len("gst:"):], kind="gstreamer")
    if " ! " in spec:
        return VideoCaptureSource(spec, kind="gstreamer")
    raise InputError(f"unknown source {spec!r}: use demo, camera:INDEX, file:PATH, a URL or gst:PIPELINE")
