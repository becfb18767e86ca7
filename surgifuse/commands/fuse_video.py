"""``surgifuse fuse-video``: the live processing applied to every frame of a recorded video, in order.

The same rolling focal stack, registration (keyframes), engine and motion guard as the live
service (``surgifuse.live.processor.FrameProcessor``, built from the same settings), but with no
time budget and no dropped frame: frame n of the output is the fused view after frame n of the
input (the first K-1 from a partial stack). Teams process recorded surgeries with it, and it makes
the live path's quality measurable frame by frame.

The output is written to a temporary name beside it and renamed into place at the end, so an
interrupted or failed run leaves no half-written OUTPUT.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from surgifuse.commands import add_engine_arguments, parse_engine_options
from surgifuse.errors import InputError

#: Containers OpenCV writes here, and the codec for each.
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="a recorded video (any format OpenCV reads: MP4, AVI, ...)")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                        help="the fused video (.mp4, .m4v, .mov: MPEG-4; .avi, .mkv: MJPEG; the input's frame rate), "
                             "or a folder ending in / for frame_00000.png, ... (one per input frame)")
    parser.add_argument("--depth", metavar="DEPTH",
                        help="also write the depth: a video (turbo colour preview, frame 0 of the stack blue) or a "
                             "folder ending in / of 16-bit PNGs, 0..K-1 mapped to 0..65535 (default: not written)")
    add_engine_arguments(parser)
    parser.add_argument("--k", type=int, default=5, help="frames in the rolling focal stack (default 5)")
    parser.add_argument("--no-align", dest="align", action="store_false",
                        help="do not register the frames (default: keyframe registration as live)")
    parser.add_argument("--no-motion-guard", dest="motion_guard", action="store_false",
                        help="turn the motion guard off (default on)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing OUTPUT or DEPTH (default: refuse)")
    parser.add_argument("--jpeg-quality", type=int, default=95, metavar="Q",
                        help="quality of MJPEG outputs 1..100 (default 95)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress report (default on)")
    parser.add_argument("--quiet", action="store_true", help="no summary line (default: print one)")


def run(args: argparse.Namespace) -> int:
    fused = fuse_video_file(
        args.input, args.output, depth=args.depth, engine=args.engine, engine_option=args.engine_option, k=args.k,
        align=args.align, motion_guard=args.motion_guard, overwrite=args.overwrite, jpeg_quality=args.jpeg_quality,
        progress=args.progress,
    )
    if not args.quiet:
        print(fused.summary())
    return 0


@dataclass
class VideoFused:
    """What ``fuse_video_file`` did: the files it wrote and what its summary line says."""

    files: list[str]
    frames: int
    width: int
    height: int
    k: int
    engine: str
    align: bool
    seconds: float

    def summary(self) -> str:
        """``fused 60 frames 320x240 (K=5, engine=classical, align on) in 0.8 s (70.7 frames/s) -> OUT``"""
        return (f"fused {self.frames} frames {self.width}x{self.height} (K={self.k}, engine={self.engine}, align "
                f"{'on' if self.align else 'off'}) in {self.seconds:.1f} s ({self.frames / self.seconds:.1f} "
                f"frames/s) -> {', '.join(self.files)}")


def video_settings(engine: str = "classical", engine_option: Sequence[str] = (), *, k: int = 5, align: bool = True,
                   motion_guard: bool = True):
    """The ``LiveSettings`` of ``surgifuse fuse-video``'s options, checked against the engine's
    declaration (``InputError`` naming ``--engine``, ``--engine-option`` or ``--k``)."""
    from surgifuse.live.settings import LiveSettings, check_settings

    _, options = parse_engine_options(engine, engine_option)
    try:
        return check_settings(LiveSettings(engine=engine, engine_options=options, k=k, align=align,
                                           motion_guard=motion_guard))
    except ValueError as exc:  # pydantic's bounds on k
        raise InputError(f"--k: {exc}", field="k") from None


def fuse_video_file(
    video: str | os.PathLike,
    output: str | os.PathLike,
    *,
    depth: str | os.PathLike | None = None,
    engine: str = "classical",
    engine_option: Sequence[str] = (),
    k: int = 5,
    align: bool = True,
    motion_guard: bool = True,
    overwrite: bool = False,
    jpeg_quality: int = 95,
    progress: bool = True,
) -> VideoFused:
    """``surgifuse fuse-video`` without its command line: the live processing on every frame of a video.

    Parameters are the command's options (``engine_option``: its ``NAME=VALUE`` items; ``output``
    and ``depth``: a video file, or a folder when the path ends in ``/``); ``surgifuse batch`` calls
    this for every video, so both give the same files. Each output is written under a temporary
    name and renamed into place at the end.

    Raises
    ------
    InputError, FileNotFoundError
        Bad options, an unreadable video, an existing output without ``overwrite``.
    """
    import cv2
    import numpy as np

    from surgifuse.engines import engine_spec
    from surgifuse.live.frames import CapturedFrame
    from surgifuse.live.pipeline import build_processor
    from surgifuse.progress import progress_bar

    from .fuse import depth_image

    t_start = time.perf_counter()
    video, output = str(video), str(output)
    depth = None if depth is None else str(depth)
    settings = video_settings(engine, engine_option, k=k, align=align, motion_guard=motion_guard)
    if not 1 <= jpeg_quality <= 100:
        raise InputError(f"--jpeg-quality must be in 1..100, got {jpeg_quality}", field="jpeg_quality")
    outputs = [_Output.for_path(output, "OUTPUT", overwrite=overwrite)]
    if depth:
        outputs.append(_Output.for_path(depth, "--depth", overwrite=overwrite))
    if len({o.final for o in outputs}) != len(outputs):
        raise InputError(f"{output}: used for both the fused output and --depth", file=output)

    if not Path(video).is_file():
        raise FileNotFoundError(f"{video}: no such file")
    capture = cv2.VideoCapture(video)
    if not capture.isOpened():
        raise InputError(f"{video}: not a video OpenCV can read", file=video)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    fps = fps if 1.0 <= fps <= 1000.0 else 30.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    processor = build_processor(settings)
    bar = progress_bar(total=total, desc="fuse-video", unit="frame", enabled=progress)
    count = 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if count == 0:
                engine_spec(engine).check_frame(image.shape, image.dtype, file=video)
            result = processor.process(CapturedFrame(image, count, 0.0))
            outputs[0].write(count, result.image, fps=fps, quality=jpeg_quality)
            if depth:
                depth_frame = depth_image(result.depth_map(), settings.k, preview=not outputs[1].folder)
                outputs[1].write(count, depth_frame, fps=fps, quality=jpeg_quality)
            count += 1
            bar.update(1)
        if count == 0:
            raise InputError(f"{video}: no frame could be read", file=video)
        for out in outputs:
            out.commit()
    except BaseException:
        for out in outputs:
            out.discard()
        raise
    finally:
        bar.close()
        capture.release()
    h, w = np.asarray(result.image).shape[:2]
    return VideoFused(files=[o.final for o in outputs], frames=count, width=w, height=h, k=settings.k,
                      engine=settings.engine, align=settings.align, seconds=time.perf_counter() - t_start)


class _Output:
    """A video file or a folder of PNGs, written under a temporary name and renamed at the end."""

    def __init__(self, final: str, folder: bool, staging: Path) -> None:
        self.final, self.folder, self.staging = final, folder, staging
        self._writer = None

    @classmethod
    def for_path(cls, path: str, role: str, *, overwrite: bool) -> "_Output":
        folder = path.endswith(("/", os.sep))
        target = Path(path)
        if target.exists() and not overwrite and (not folder or any(target.iterdir())):
            raise InputError(f"{path}: exists; pass --overwrite to replace it, or choose another {role}", file=path)
        if not target.parent.is_dir():
            raise FileNotFoundError(f"{path}: folder {target.parent} does not exist")
        if not folder and target.suffix.lower() not in VIDEO_CODECS:
            raise InputError(f"{path}: {role} must end in {', '.join(VIDEO_CODECS)} (a video) or / (a folder of "
                             "PNGs)", file=path)
        staging = target.with_name(f".{target.name}.partial{'' if folder else target.suffix}")
        if staging.exists():
            shutil.rmtree(staging) if staging.is_dir() else staging.unlink()
        if folder:
            staging.mkdir()
        return cls(path, folder, staging)

    def write(self, index: int, image, *, fps: float, quality: int) -> None:
        import cv2

        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
        if self.folder:
            if not cv2.imwrite(str(self.staging / f"frame_{index:05d}.png"), bgr):
                raise OSError(f"cannot write {self.staging / f'frame_{index:05d}.png'}")
            return
        if self._writer is None:
            h, w = image.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.staging.suffix.lower()])
            self._writer = cv2.VideoWriter(str(self.staging), fourcc, fps, (w, h), image.ndim == 3)
            self._writer.set(cv2.VIDEOWRITER_PROP_QUALITY, quality)
            if not self._writer.isOpened():
                raise OSError(f"OpenCV cannot write a {self.staging.suffix} video to {self.final}")
        self._writer.write(bgr)

    def commit(self) -> None:
        if self._writer is not None:
            self._writer.release()
        target = Path(self.final)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(self.staging, target)

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.staging.exists():
            shutil.rmtree(self.staging) if self.staging.is_dir() else self.staging.unlink()
