"""``surgifuse fuse``: read a focal stack, register it onto its middle frame, fuse it, write the results
(``surgifuse.fusion.fuse_focal_stack``, the one offline path the upload and ``eval`` share).

Outputs are encoded in memory first and renamed into place only when all of them are on disk, so a
failing run leaves no OUT (nor a half-written one) behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from surgifuse.commands import (
    add_engine_arguments,
    check_image_outputs,
    parse_engine_options,
)
from surgifuse.errors import InputError, InputTypeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="image files (taken in the order given), a folder of images (natural order: frame_2 before "
             "frame_10) or a multi-page TIFF; PNG/JPEG/TIFF, 8- or 16-bit, or camera RAW (DNG, NEF, CR2, CR3, ARW, "
             "ORF, RW2, RAF: 16-bit RGB, needs the raw extra), sniffed from the content",
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="fused image; format from the extension (.png, .tif: 8/16-bit as the input; .jpg: 8-bit)")
    add_engine_arguments(parser)
    parser.add_argument("--depth", metavar="DEPTH",
                        help="also write the depth map, measured from each pixel's focus curve over the registered "
                             "frames (not the engine's choice of frame: --source-map is that): .png/.tif 16-bit grey "
                             "with frame 0..K-1 mapped to 0..65535; .jpg an 8-bit colour preview (turbo map, frame 0 "
                             "blue)")
    parser.add_argument("--confidence", metavar="CONF",
                        help="also write the confidence map: .png/.tif 16-bit grey, 0..1 mapped to 0..65535; "
                             ".jpg 8-bit grey")
    parser.add_argument("--source-map", metavar="MAP",
                        help="also write which input frame each output pixel came from: .png/.tif grey, value i = "
                             "frame i in input order (8-bit for up to 256 frames, else 16-bit); the engine's depth "
                             "index rounded to the nearest frame")
    parser.add_argument("--report", metavar="REPORT",
                        help="also write a JSON report: the instrument (present, tip_xy in px, the tip's height above "
                             "the retina in focus steps and, with --focus-step-mm, in mm) and depth_scale, which "
                             "turns --depth's 16-bit values into focus steps; frame 0 must be the nearest focus")
    parser.add_argument("--focus-step-mm", type=float, default=None, metavar="MM",
                        help="distance between neighbouring focus positions in mm: the report gives heights in mm too")
    parser.add_argument("--no-align", dest="align", action="store_false",
                        help="fuse the frames as given (default: align every frame to the middle one)")
    parser.add_argument("--reference", default="middle", metavar="REF",
                        help="frame the others are aligned to: middle (default), first, last or an index")
    parser.add_argument("--align-max-side", type=int, default=None, metavar="PX",
                        help="registration works on frames reduced to at most PX per side (default 320)")
    parser.add_argument("--interpolation", default="lanczos", choices=["lanczos", "cubic", "linear"],
                        help="resampling of aligned frames (default lanczos; cubic is 5x faster and costs about "
                             "0.3 dB of fused PSNR, linear about 2 dB: see docs/alignment.md)")
    parser.add_argument("--pattern", default=None, metavar="GLOB",
                        help="inside folders, read only image files matching GLOB (default: all of them; in a "
                             "folder written by 'surgifuse synth', its frame_* files)")
    parser.add_argument("--jpeg-quality", type=int, default=95, metavar="Q", help="JPEG quality 1..100 (default 95)")
    parser.add_argument("--quiet", action="store_true", help="no summary line and no progress")


def run(args: argparse.Namespace) -> int:
    fused = fuse_stack_to_files(
        args.inputs, args.output, engine=args.engine, engine_option=args.engine_option, depth=args.depth,
        confidence=args.confidence, source_map=args.source_map, align=args.align, reference=args.reference,
        align_max_side=args.align_max_side, interpolation=args.interpolation, pattern=args.pattern,
        jpeg_quality=args.jpeg_quality, progress=not args.quiet, report=args.report,
        focus_step_mm=args.focus_step_mm,
    )
    if not args.quiet:
        print(fused.summary())
    return 0


@dataclass
class StackFused:
    """What ``fuse_stack_to_files`` did: the files it wrote and what its summary line says."""

    files: list[str]
    k: int
    width: int
    height: int
    dtype: str
    engine: str
    registrations: list | None  # None: alignment off
    timings: dict[str, float]  # milliseconds: read, register, fuse, write
    streamed: bool = False  # deeper than the engine's largest K: fused one frame at a time

    def summary(self) -> str:
        """``fused K=7 2048x1536 uint8 engine=classical: read 175 ms, register ... -> OUT, DEPTH``"""
        if self.registrations is not None:
            moved = [r for r in self.registrations if r.significant]
            motion = (f"{len(moved)} of {self.k - 1} frames moved, the most by "
                      f"{max(r.displacement for r in moved):.1f} px" if moved else "no frame moved")
            align_text = f"register {self.timings['register']:.0f} ms ({motion})"
        else:
            align_text = "align off"
        return (f"fused K={self.k} {self.width}x{self.height} {self.dtype} engine={self.engine}: read "
                f"{self.timings['read']:.0f} ms, {align_text}, fuse {self.timings['fuse']:.0f} ms"
                f"{' (one frame at a time)' if self.streamed else ''}, write "
                f"{self.timings['write']:.0f} ms -> {', '.join(self.files)}")


def fuse_stack_to_files(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    engine: str = "classical",
    engine_option: Sequence[str] = (),
    depth: str | os.PathLike | None = None,
    confidence: str | os.PathLike | None = None,
    source_map: str | os.PathLike | None = None,
    align: bool = True,
    reference: str | int = "middle",
    align_max_side: int | None = None,
    interpolation: str = "lanczos",
    pattern: str | None = None,
    jpeg_quality: int = 95,
    progress: bool = False,
    report: str | os.PathLike | None = None,
    focus_step_mm: float | None = None,
) -> StackFused:
    """``surgifuse fuse`` without its command line: read a focal stack, fuse it, write the outputs.

    Parameters are the command's options (``engine_option``: its ``NAME=VALUE`` items); ``surgifuse
    batch`` calls this for every stack folder, so both give the same files. Outputs are written
    all-or-nothing (temporary files renamed into place once all are on disk). A stack deeper than
    the engine's largest K is read and fused one frame at a time (``surgifuse.streaming``), with
    ``progress`` on stderr.

    Raises
    ------
    InputError, FileNotFoundError
        Bad options, inputs or outputs (checked before any work where they can be), or a write failure.
    """
    import numpy as np

    from .. import align as alignment
    from .. import engines, imageio
    from ..focus_curve import FocusCurve
    from ..fusion import deeper_than_engine, fuse_focal_stack

    t_start = time.perf_counter()
    inputs = [str(p) for p in inputs]
    output = str(output)
    depth = None if depth is None else str(depth)
    confidence = None if confidence is None else str(confidence)
    source_map = None if source_map is None else str(source_map)
    formats = check_image_outputs({"output": output, "depth": depth, "confidence": confidence,
                                   "source map": source_map})
    if formats.get("source map") == "jpeg":
        raise InputError(f"{source_map}: the source map holds frame indices, which JPEG would change; write .png "
                         "or .tif", file=source_map)
    report = None if report is None else str(report)
    if focus_step_mm is not None:
        if report is None:
            raise InputError("--focus-step-mm needs --report (it converts the report's heights to mm)",
                             field="focus_step_mm")
        if not (isinstance(focus_step_mm, (int, float)) and 0 < focus_step_mm < float("inf")):
            raise InputError(f"--focus-step-mm must be a number > 0, got {focus_step_mm}", field="focus_step_mm")
    reference = reference if isinstance(reference, int) else _parse_reference(reference)
    if not 1 <= jpeg_quality <= 100:
        raise InputError(f"--jpeg-quality must be in 1..100, got {jpeg_quality}")
    max_side = alignment.DEFAULT_MAX_SIDE if align_max_side is None else align_max_side
    if max_side < alignment.MIN_SIDE:
        raise InputError(f"--align-max-side must be at least {alignment.MIN_SIDE}, got {max_side}")

    spec, options = parse_engine_options(engine, engine_option)
    with _hint_pattern(inputs, pattern):
        stack = imageio.open_stack(inputs, pattern=pattern)
        first = stack[0]
    k, names, shape, dtype = len(stack), stack.names, first.shape, first.dtype
    if k < 2:
        raise InputError(f"{names[0]}: a focal stack needs at least 2 frames, got 1: there is nothing to fuse "
                         "(give the other frames, or a folder or multi-page TIFF holding them)", file=names[0])
    spec.check_stack(k, shape, dtype, file=names[0], streaming=True)
    if isinstance(reference, int) and not -k <= reference < k:
        raise InputError(f"--reference {reference} is outside a stack of {k} frames", field="reference")
    if dtype == np.uint16 and formats["output"] == "jpeg":
        raise InputError(f"{output}: the input is 16-bit and JPEG holds 8 bits; write .png or .tif", file=output)
    fusion_engine = engines.create_engine(engine, **options)
    streamed = deeper_than_engine(fusion_engine, k)
    with _hint_pattern(inputs, pattern):
        frames = stack if streamed else stack.decode_all(first=first)  # a streamed stack is decoded while fused
    del first
    t_read = time.perf_counter()

    # Depth (--depth, --report) from each pixel's focus curve over the registered frames, not from
    # the engine's choice of frame: a staircase where the curve places depth between frames
    # (docs/depth.md). Fed while the frames are fused, so that a streamed stack is read once more only.
    curve = FocusCurve(shape) if depth or report else None
    with _hint_pattern(inputs, pattern):
        fusion = fuse_focal_stack(fusion_engine, frames, align=align, reference=reference, max_side=max_side,
                                  interpolation=interpolation, progress=progress, focus_curve=curve,
                                  keep_frames=False, full_maps=bool(source_map or confidence))
    result = fusion.result
    fused = np.asarray(result.image)
    if fused.shape != shape or fused.dtype != dtype:
        raise InputTypeError(f"engine {engine!r} returned a {fused.shape} {fused.dtype} image for {shape} {dtype} frames")
    measured = None if curve is None else curve.result()
    t_fuse = time.perf_counter()

    files = {output: imageio.encode_image(fused, formats["output"], jpeg_quality=jpeg_quality)}
    if depth:
        from ..depth import refine_depth

        refined, _ = refine_depth(measured[0], measured[1], fused)
        files[depth] = imageio.encode_image(
            depth_image(refined, k, preview=formats["depth"] == "jpeg"), formats["depth"],
            jpeg_quality=jpeg_quality,
        )
    if confidence:
        files[confidence] = imageio.encode_image(
            confidence_image(result.confidence, eight_bit=formats["confidence"] == "jpeg"), formats["confidence"],
            jpeg_quality=jpeg_quality,
        )
    if source_map:
        files[source_map] = imageio.encode_image(source_map_image(result.depth_index, k), formats["source map"])
    if report:
        files[report] = (json.dumps(depth_report(fused, *measured, k, focus_step_mm=focus_step_mm), indent=2)
                         + "\n").encode()
    try:
        imageio.write_files_atomic(files)
    except OSError as exc:
        raise InputError(f"cannot write the outputs ({', '.join(map(str, files))}): {exc.strerror or exc}") from exc
    t_write = time.perf_counter()

    h, w = shape[:2]
    return StackFused(
        files=list(files), k=k, width=w, height=h, dtype=str(dtype), engine=engine,
        registrations=fusion.registrations if align else None,
        timings={"read": 1000 * (t_read - t_start) + fusion.timings.get("read", 0.0),
                 "register": fusion.timings["register"], "fuse": fusion.timings["fuse"],
                 "write": 1000 * (t_write - t_fuse)},
        streamed=streamed,
    )


def depth_image(depth_index, k: int, *, preview: bool = False):
    """Depth index (float, 0..K-1) as an image: uint16 grey with 0..K-1 -> 0..65535, or for
    ``preview`` an 8-bit RGB turbo colour map. K = 1 gives all zeros."""
    import cv2
    import numpy as np

    depth = np.asarray(depth_index, dtype=np.float32)
    if depth.ndim != 2:
        raise InputTypeError(f"depth_index must be HxW, got shape {depth.shape}")
    unit = np.clip(depth / (k - 1), 0.0, 1.0) if k > 1 else np.zeros_like(depth)
    if preview:
        grey8 = np.round(unit * 255).astype(np.uint8)
        return cv2.cvtColor(cv2.applyColorMap(grey8, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    return np.round(unit * 65535).astype(np.uint16)


def depth_image_scale(k: int) -> float:
    """Focus steps per unit of the 16-bit ``--depth`` image (``depth_image``: 0..K-1 -> 0..65535)."""
    return (k - 1) / 65535 if k > 1 else 0.0


def depth_report(image, depth, confidence, k: int, *, focus_step_mm: float | None = None) -> dict:
    """The ``--report`` JSON: ``{"instrument": {present, tip_xy, height_steps, height_mm},
    "depth_scale"}`` from the fused image and the measured depth (frames, K of them in near-to-far
    focus order) with its confidence (``surgifuse.focus_curve``)."""
    import numpy as np

    from ..instrument import measure_instrument

    image = image if image.ndim == 3 else np.dstack([image] * 3)
    reading = measure_instrument(depth, image, confidence=confidence, focus_step_mm=focus_step_mm, k=k)
    return {"instrument": reading.as_dict(), "depth_scale": depth_image_scale(k)}


def source_map_image(depth_index, k: int):
    """Per pixel, the input frame it came from: the depth index (0..K-1) rounded to the nearest frame
    (half-way down), uint8 for K <= 256, else uint16.

    The classical engine's depth index is the frame it chose plus a parabolic sub-frame offset in
    [-0.5, +0.5], +0.5 only where the next frame ties (the choice is the first maximum), so the
    map is exactly that frame (its pixels without focus information, the average of all frames,
    name the middle frame). The fn and msmfm engines give the blend-weighted mean of the frame
    indices: where they blend, the map names the frame nearest that mean.
    """
    import numpy as np

    depth = np.nan_to_num(np.asarray(depth_index, dtype=np.float32))
    if depth.ndim != 2:
        raise InputTypeError(f"depth_index must be HxW, got shape {depth.shape}")
    index = np.clip(np.ceil(depth - 0.5), 0, max(k - 1, 0))
    return index.astype(np.uint8 if k <= 256 else np.uint16)


def confidence_image(confidence, *, eight_bit: bool = False):
    """Confidence in [0, 1] as uint16 (0..65535) or uint8 (0..255) grey."""
    import numpy as np

    conf = np.clip(np.nan_to_num(np.asarray(confidence, dtype=np.float32)), 0.0, 1.0)
    if conf.ndim != 2:
        raise InputTypeError(f"confidence must be HxW, got shape {conf.shape}")
    top = 255 if eight_bit else 65535
    return np.round(conf * top).astype(np.uint8 if eight_bit else np.uint16)


@contextlib.contextmanager
def _hint_pattern(inputs: Sequence[str], pattern: str | None):
    """A frame that does not fit the stack, read from a folder without --pattern: suggest it."""
    try:
        yield
    except InputError as exc:
        if pattern is None and any(Path(p).is_dir() for p in inputs) and exc.file is not None:
            raise InputError(f"{exc} (is every image in the folder a frame? choose them with --pattern GLOB)",
                             file=exc.file) from exc
        raise


def _parse_reference(text: str) -> str | int:
    if text in ("middle", "first", "last"):
        return text
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--reference must be middle, first, last or a frame index, got {text!r}") from None
