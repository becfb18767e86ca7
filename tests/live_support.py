"""Test helpers for the live pipeline and the service: a trivial engine, test frames, a real server.

The max-focus engine lives here, in test code only: the live tests must not depend on the state of
the classical engine, and a per-pixel arg-max of a Laplacian energy is easy to check by hand.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Sequence

import cv2
import numpy as np

from surgifuse.engines.base import Engine, FusionResult


class MaxFocusEngine(Engine):
    """Per pixel, the frame with the largest smoothed |Laplacian| of grey (test engine)."""

    name = "maxfocus"

    def __init__(self, delay_s: float = 0.0, fail: bool = False):
        self.delay_s, self.fail = delay_s, fail

    def prepare_frame(self, frame):
        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        return cv2.GaussianBlur(np.abs(cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F)), (0, 0), 2.0)

    def fuse_prepared(self, frames: Sequence[np.ndarray], prepared):
        if self.fail:
            raise RuntimeError("engine failure (test)")
        if self.delay_s:
            time.sleep(self.delay_s)
        index = np.argmax(np.stack(prepared), axis=0)
        stack = np.stack(frames)
        image = np.take_along_axis(stack, index[None, ..., None] if stack.ndim == 4 else index[None], axis=0)[0]
        return FusionResult(image=image, depth_index=index.astype(np.float32),
                            confidence=np.ones(index.shape, np.float32), timings={"test": 0.0})


def maxfocus_factory(name, **options):
    """Engine factory for ``create_app``: every registered name gives the test engine, after the
    real engine's declaration checked the options (unknown names and bad options still fail)."""
    from surgifuse.engines import engine_spec

    engine_spec(name).resolve(options)
    return MaxFocusEngine()


class DeadCamera:
    """A camera that never opens: the service runs, and no frame ever comes."""

    description = "camera:9"
    fps = 30.0
    paced = False

    def open(self):
        raise OSError("no camera at index 9")

    def read(self):
        return None

    def close(self):
        pass


def textured_scene(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    scene = cv2.resize(base, (width, height), interpolation=cv2.INTER_NEAREST)
    return cv2.GaussianBlur(scene, (0, 0), 0.8)


def focus_sweep(height: int = 240, width: int = 320, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    """K frames of one scene, frame i sharp in vertical band i and blurred elsewhere."""
    scene = textured_scene(height, width, seed)
    blurred = cv2.GaussianBlur(scene, (0, 0), 4.0)
    frames = []
    for i in range(k):
        f = blurred.copy()
        x0, x1 = i * width // k, (i + 1) * width // k
        f[:, x0:x1] = scene[:, x0:x1]
        frames.append(f)
    return frames


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(app, *, host: str = "127.0.0.1", port: int | None = None):
    """Serve ``app`` with a real uvicorn on a (free) loopback port in a thread; yields the base URL."""
    import uvicorn

    port = port or free_port()
    from surgifuse.service.app import UVICORN_OPTIONS

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                                           **UVICORN_OPTIONS))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def make_app(*, token: str | None = None, fps: float = 30.0, frames=None, engine_factory=maxfocus_factory, **settings):
    """A service app on a 320x240 in-memory focus sweep with the test engine (no real engine needed)."""
    from surgifuse.live.sources import ArraySource
    from surgifuse.service.app import create_app
    from surgifuse.service.settings import ServiceSettings

    # the test sweep (random blocks, sharp vs sigma-4 blur) is harsher than any microscope: the motion
    # guard would see motion everywhere in it, so it is off here and tested on its own
    options = {"align": False, "motion_guard": False, "budget_ms": 2000.0, "k": 5, **settings}
    if token is not None:
        options["token"] = token
    source = ArraySource(frames if frames is not None else focus_sweep(240, 320, k=5), fps=fps)
    return create_app(ServiceSettings(_env_file=None, **options), source=source, engine_factory=engine_factory)


def ws_url(base: str, path: str = "/ws/stream", **query) -> str:
    from urllib.parse import urlencode

    url = base.replace("http://", "ws://") + path
    return url + ("?" + urlencode(query) if query else "")


def receive_frames(ws, n: int, *, timeout: float = 15.0):
    """The next ``n`` frame messages (header, jpeg) from a websocket, skipping control messages."""
    from surgifuse.live.publisher import unpack_frame

    frames, controls = [], []
    deadline = time.monotonic() + timeout
    while len(frames) < n:
        message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(message, str):
            import json

            controls.append(json.loads(message))
        else:
            frames.append(unpack_frame(message))
    return frames, controls
