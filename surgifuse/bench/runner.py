"""Per-stage timing of the streaming pipeline, one frame at a time, through the service's own code.

Per frame: capture (render a synthetic sweep frame) or decode (a JPEG of one) -> the live
``FrameProcessor``: align (similarity to the newest buffered frame, chained, then warp) and FMB
(``engine.prepare_frame``, once per frame, cached), both inside ``FocalStackBuffer.push``; fusion
(``engine.fuse_prepared`` over the K buffered frames); the motion guard -> encode
(``FramePublisher.encode``: JPEG and the stream packet) -> publish (the packet offered to N
latest-only client slots). Streaming: the buffer holds K frames and one new frame enters each
step, so a step costs one frame's preparation plus one K-frame fusion (DESIGN.md section 2).
"""

from __future__ import annotations

import collections
import os
import resource
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from surgifuse.engines.base import Engine
from surgifuse.errors import InputError

from .stats import summarize, throughput_fps

SOURCES = ("decode", "render")
#: Stage names in pipeline order; the first is the source ("decode" or "capture").
PIPELINE_STAGES = ("align", "fmb", "fusion", "guard", "encode", "publish")


@dataclass
class BenchConfig:
    """What one bench run measures (see ``surgifuse bench --help``)."""

    engine: str = "classical"
    width: int = 1920
    height: int = 1080
    k: int = 5
    frames: int = 100
    warmup: int = 10
    device: str = "cpu"
    source: str = "decode"
    align: bool = True
    motion_guard: bool = True
    jpeg_quality: int = 80
    clients: int = 4
    seed: int = 0
    threads: int = 0

    def __post_init__(self):
        for name in ("width", "height", "k", "frames", "clients"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise InputError(f"warmup must be an int >= 0, got {self.warmup!r}")
        if self.source not in SOURCES:
            raise InputError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.device not in ("cpu", "cuda"):
            raise InputError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality!r}")
        if self.threads < 0:
            raise InputError(f"threads must be >= 0, got {self.threads!r}")

    @property
    def source_stage(self) -> str:
        return "decode" if self.source == "decode" else "capture"

    @property
    def stages(self) -> tuple[str, ...]:
        off = {"align": not self.align, "guard": not self.motion_guard}
        return tuple(s for s in (self.source_stage,) + PIPELINE_STAGES if not off.get(s, False))

    def as_dict(self) -> dict:
        return asdict(self)


# -- sources ------------------------------------------------------------------------------------------
class RenderedSweep:
    """Frames rendered live by the synthetic focus-sweep renderer (the demo source's cost), with the
    demo's eye motion (a slow wander, breathing) so that registration is measured as it runs, and
    each frame's focus position (``last_focus``), which the demo source reports too."""

    def __init__(self, *, width: int, height: int, k: int, seed: int, eye_motion: bool = True) -> None:
        from surgifuse.live.sources import DEMO_BREATHING, DEMO_WANDER, DEMO_WANDER_PERIOD
        from surgifuse.synth.video import EyeMotion, FocusSweepRenderer

        eye = EyeMotion(wander_px=DEMO_WANDER * width, wander_period_frames=DEMO_WANDER_PERIOD,
                        breathing=DEMO_BREATHING) if eye_motion else None
        self._renderer = FocusSweepRenderer(seed, height=height, width=width, k=k, eye=eye)
        self.k = k
        self._index = 0
        self.last_focus: float | None = None

    @property
    def loop_frames(self) -> int:
        """Frames after which the sweep, the instrument and the eye repeat."""
        return self._renderer.loop_frames

    def frames(self, count: int) -> list[tuple[np.ndarray, float]]:
        """``count`` consecutive (frame, focus) pairs (the decode source's material)."""
        out = []
        for _ in range(count):
            image = self.next()
            out.append((image, self.last_focus))
        return out

    def next(self) -> np.ndarray:
        t, self._index = self._index, self._index + 1
        frame = self._renderer.render(t)
        self.last_focus = frame.focus_index / max(1, self.k - 1)
        return np.ascontiguousarray(frame.image)


class DecodedSweep:
    """JPEGs of rendered sweep frames, decoded per frame (the cost of an MJPEG/RTSP camera feed).

    ``frames`` ((RGB uint8, focus) pairs: one seamless loop of the sweep) are encoded once here at
    ``quality``; ``next`` cycles through them and sets ``last_focus``.
    """

    def __init__(self, frames, *, quality: int = 90) -> None:
        import cv2

        frames = list(frames)
        if not frames:
            raise InputError("DecodedSweep needs at least one frame")
        self._jpegs = []
        for frame, focus in frames:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError("JPEG encoding of a sweep frame failed")
            self._jpegs.append((buf, focus))
        self._index = 0
        self.last_focus: float | None = None

    def next(self) -> np.ndarray:
        import cv2

        buf, self.last_focus = self._jpegs[self._index % len(self._jpegs)]
        self._index += 1
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def open_source(config: BenchConfig, renderer: RenderedSweep | None = None):
    """The first stage's source: ``renderer`` itself ("render"), or JPEGs of one seamless loop of
    it ("decode"). A renderer costs seconds to build at 1080p, so callers share one."""
    renderer = renderer or RenderedSweep(width=config.width, height=config.height, k=config.k, seed=config.seed)
    if config.source == "render":
        return renderer
    return DecodedSweep(renderer.frames(renderer.loop_frames))


# -- publish ------------------------------------------------------------------------------------------
class ServicePublishStage:
    """The service's publisher for one frame: ``FramePublisher.encode`` (JPEG once, JSON header,
    packet) then the packet offered to every client's latest-only slot, as its event loop does.
    Thread wake-ups and socket writes are not in it: the end-to-end mode measures those."""

    def __init__(self, clients: int, *, jpeg_quality: int) -> None:
        from surgifuse.live.publisher import ClientSlot, FramePublisher

        self._publisher = FramePublisher(jpeg_quality=jpeg_quality)
        self._slots = [ClientSlot("fused") for _ in range(clients)]
        self.description = f"surgifuse.live.publisher: FramePublisher.encode, ClientSlot.offer to {clients} clients"

    def encode(self, processed) -> bytes:
        return self._publisher.encode(processed, ["fused"])["fused"]

    def publish(self, packet: bytes) -> None:
        for slot in self._slots:
            slot.offer(packet)


# -- the run ------------------------------------------------------------------------------------------
class _TimedPrepare(Engine):
    """Wraps an engine so that the time of each ``prepare_frame`` is known: the live buffer's
    ``push`` runs alignment then preparation, and the two are reported as separate stages."""

    def __init__(self, engine) -> None:
        self.engine, self.name, self.last_ns, self.last_timings = engine, engine.name, 0, {}

    def prepare_frame(self, frame):
        t0 = time.perf_counter_ns()
        out = self.engine.prepare_frame(frame)
        self.last_ns = time.perf_counter_ns() - t0
        return out

    @property
    def relabels(self) -> bool:
        return getattr(self.engine, "relabels", False)

    def __getattr__(self, name):
        # prepare_moved_frame where the engine has one: the buffer then takes the engine's own path,
        # and only its focus measure counts as "fmb" (the map's warp is alignment's).
        if name != "prepare_moved_frame" or not hasattr(self.engine, name):
            raise AttributeError(name)

        def prepare_moved_frame(frame, transform):
            before = getattr(self.engine, "focus_measure_ms", 0.0)
            out = self.engine.prepare_moved_frame(frame, transform)
            self.last_ns = int((getattr(self.engine, "focus_measure_ms", 0.0) - before) * 1e6)
            return out

        return prepare_moved_frame

    def fuse_prepared(self, frames, prepared, **options):
        result = self.engine.fuse_prepared(frames, prepared, **options)
        self.last_timings = result.timings
        return result


def set_threads(threads: int) -> None:
    """Cap the worker threads of the C++ core and OpenCV (0 leaves their defaults)."""
    if not threads:
        return
    import cv2

    cv2.setNumThreads(threads)
    try:
        from surgifuse import _core

        if hasattr(_core, "set_num_threads"):
            _core.set_num_threads(threads)
    except ImportError:
        pass


def create_bench_engine(name: str, *, device: str, threads: int):
    """The engine ``name`` on ``device`` with ``threads`` worker threads (0: its default).

    ``device="cuda"`` first checks for a device (``bench.cuda.CudaUnavailableError`` without
    one), then uses each engine's own CUDA path: the classical decision in the C++ CUDA core, the
    learned engines through ONNX Runtime's CUDA provider with IO binding.
    """
    from surgifuse.engines import create_engine

    if device == "cuda":
        from surgifuse.bench.cuda import require_cuda

        require_cuda()
    if name in ("classical", "fn", "autoencoder"):
        opts = {"device": device}
        if threads:
            opts["threads"] = threads
        return create_engine(name, **opts)
    if device != "cpu":
        raise InputError(f"engine {name!r} has no {device} path")
    return create_engine(name)


def run_streaming(config: BenchConfig, *, engine=None, source=None,
                  progress: Callable[[int], None] | None = None) -> dict:
    """Time every stage of ``config.frames`` streaming steps after ``config.warmup`` untimed ones.

    Returns one run record of the report: ``engine``, ``device``, ``stages`` (summary per stage and
    ``total``), ``samples_ms`` (raw milliseconds per stage), ``throughput_fps``, ``cpu_percent``
    (process CPU time over wall time, 100 = one core busy), ``peak_rss_mb`` (the process's
    high-water mark so far), ``engine_timings`` (what ``FusionResult.timings`` reported) and
    ``publisher`` (what the encode and publish stages run), ``buffer_restarts`` (times alignment found the
    view had drifted too far and the buffer started over from one frame).
    """
    import psutil

    from surgifuse.live.frames import CapturedFrame, wall_ms
    from surgifuse.live.pipeline import build_processor
    from surgifuse.live.settings import LiveSettings

    engine = engine if engine is not None else create_bench_engine(config.engine, device=config.device, threads=config.threads)
    source = source if source is not None else open_source(config)
    publisher = ServicePublishStage(config.clients, jpeg_quality=config.jpeg_quality)
    timed = _TimedPrepare(engine)
    # The service's own processing step (rolling buffer with alignment, engine, motion guard),
    # built as the live pipeline builds it, around the engine under test.
    processor = build_processor(LiveSettings(engine=engine.name, k=config.k, align=config.align,
                                             motion_guard=config.motion_guard),
                                engine_factory=lambda name, **options: timed)
    restarts = 0
    stages = config.stages
    samples: dict[str, list[float]] = {s: [] for s in stages + ("total",)}
    engine_timings: dict[str, list[float]] = collections.defaultdict(list)
    proc = psutil.Process(os.getpid())
    clock = time.perf_counter_ns

    def step(index: int, record: bool) -> None:
        nonlocal restarts
        t_source = clock()
        frame = source.next()
        t_process = clock()
        held = len(processor.buffer)
        processed = processor.process(CapturedFrame(image=frame, seq=index, capture_ms=wall_ms(),
                                                    focus=getattr(source, "last_focus", None)))
        t_encode = clock()
        packet = publisher.encode(processed)
        t_publish = clock()
        publisher.publish(packet)
        t_end = clock()
        if not record:
            return
        if config.k > 1 and held > 0 and len(processor.buffer) == 1:
            restarts += 1  # alignment found the view had drifted: the buffer started over
        # The processor's own split (ms): push (align + prepare), fuse, guard; the rest of the
        # processing step (frame bookkeeping) goes to fusion so that the stages add up.
        t = processed.timings
        prepare_ms = timed.last_ns / 1e6
        ms = {config.source_stage: (t_process - t_source) / 1e6}
        # Alignment: warping the new frame in (part of push) and the result back into the newest
        # frame's coordinates (the processor's "reproject").
        reproject_ms = t.get("reproject", 0.0)
        if config.align:
            ms["align"], ms["fmb"] = t["prepare"] - prepare_ms + reproject_ms, prepare_ms
        else:
            ms["fmb"] = t["prepare"]
        process_ms = (t_encode - t_process) / 1e6
        if config.motion_guard:
            ms["guard"] = t["guard"]
        ms["fusion"] = process_ms - t["prepare"] - reproject_ms - (t["guard"] if config.motion_guard else 0.0)
        ms.update(encode=(t_publish - t_encode) / 1e6, publish=(t_end - t_publish) / 1e6,
                  total=(t_end - t_source) / 1e6)
        for name, value in ms.items():
            samples[name].append(value)
        for key, value in timed.last_timings.items():
            engine_timings[key].append(float(value))

    # Warm-up: fills the buffer to K and lets lazy initialisation (thread pools, ORT arenas) happen.
    for i in range(max(config.warmup, config.k)):
        step(i, record=False)
    cpu0, wall0 = proc.cpu_times(), time.perf_counter()
    for i in range(config.frames):
        step(i, record=True)
        if progress is not None:
            progress(1)
    wall = time.perf_counter() - wall0
    cpu1 = proc.cpu_times()
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {
        "engine": engine.name,
        "device": config.device,
        "stages": {name: summarize(values) for name, values in samples.items()},
        "samples_ms": samples,
        "throughput_fps": throughput_fps(config.frames, wall),
        "wall_s": wall,
        "cpu_percent": 100.0 * cpu_s / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "engine_timings": {k: summarize(v) for k, v in engine_timings.items()},
        "publisher": publisher.description,
        "buffer_restarts": restarts,
    }
