"""``POST /v1/fuse`` logic: check the limits, decode, fuse in a bounded worker pool, encode the answer.

Kept apart from the route so it can be read (and tested) without HTTP. Limits are checked before
decoding where possible (image size is read from the PNG/JPEG/TIFF header), so an oversized image
costs no memory. Workers run at a lower scheduling priority than the live threads: an upload
must never make the operating-room display stutter.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from surgifuse import imageio
from surgifuse.errors import InputError


class UploadError(Exception):
    """A rejected upload: HTTP ``status`` and a message that names the offending file."""

    def __init__(self, status: int, message: str, *, file: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.file = status, message, file

    def body(self) -> dict:
        return {"detail": self.message, "file": self.file}


class UploadBusy(Exception):
    """Every worker and queue place is taken: answer 503 with Retry-After."""


@dataclass
class UploadLimits:
    max_files: int = 64
    max_pixels: int = 40_000_000
    max_bytes: int = 512 * 1024 * 1024


@dataclass
class FusedUpload:
    image: np.ndarray
    depth_index: np.ndarray
    engine: str
    names: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    #: Frames registration moved (warped) onto the middle one.
    moved: int = 0


def image_size(data: bytes) -> list[tuple[int, int]] | None:
    """(width, height) of each frame in PNG/JPEG/TIFF bytes, read from the header; None if unknown."""
    fmt = imageio.sniff_format(data)
    try:
        if fmt == "png" and len(data) >= 24:
            w, h = struct.unpack(">II", data[16:24])
            return [(w, h)]
        if fmt == "jpeg":
            return _jpeg_size(data)
        if fmt == "tiff":
            import tifffile

            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                return [(int(p.imagewidth), int(p.imagelength)) for p in tif.pages]
    except Exception:  # a corrupt header: decoding will say so, naming the file
        return None
    return None


def _jpeg_size(data: bytes) -> list[tuple[int, int]] | None:
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return [(w, h)]
        i += 2 + length
    return None


def check_limits(items: list[tuple[str, bytes]], limits: UploadLimits) -> None:
    """Raise UploadError (413, or 422 for no file) before anything is decoded."""
    if not items:
        raise UploadError(422, "no image uploaded: send 1 to 64 files in the 'files' field")
    if len(items) > limits.max_files:
        raise UploadError(413, f"too many files: {len(items)} uploaded, at most {limits.max_files} allowed",
                          file=items[limits.max_files][0])
    total = 0
    for name, data in items:
        total += len(data)
        if total > limits.max_bytes:
            raise UploadError(413, f"upload too large: {total} bytes by {name}, at most {limits.max_bytes} allowed",
                              file=name)
        sizes = image_size(data) or []
        for w, h in sizes:
            if w * h > limits.max_pixels:
                raise UploadError(413, f"{name}: {w}x{h} = {w * h} pixels, at most {limits.max_pixels} per image",
                                  file=name)
    pages = sum(len(image_size(d) or [None]) for _, d in items)
    if pages > limits.max_files:
        raise UploadError(413, f"too many frames: {pages} in the upload, at most {limits.max_files} allowed")


def decode_upload(items: list[tuple[str, bytes]]) -> tuple[list[np.ndarray], list[str]]:
    """Decode and check the stack; ``UploadError(422)`` naming the unreadable or mismatched file."""
    frames: list[np.ndarray] = []
    names: list[str] = []
    for name, data in items:
        try:
            pages = imageio.decode_frames(data, name)
        except (ValueError, TypeError) as exc:
            raise UploadError(422, str(exc), file=name) from None
        frames.extend(pages)
        names.extend([name] if len(pages) == 1 else [f"{name}[page {i}]" for i in range(len(pages))])
    try:
        imageio.check_stack_consistency(frames, names)
    except InputError as exc:
        raise UploadError(422, str(exc), file=exc.file) from None
    return frames, names


def fuse_upload(items: list[tuple[str, bytes]], *, engine, limits: UploadLimits, align: bool = True,
                depth: bool = False) -> FusedUpload:
    """Check, decode, register and fuse one upload with ``engine`` (an Engine instance), by the
    offline path ``surgifuse fuse`` takes (``surgifuse.fusion.fuse_focal_stack``). A stack deeper
    than the engine's largest K (the classical engine: any K within ``limits``) is decoded one frame
    at a time while it is fused; its unreadable or mismatched frames are 422s all the same. With
    ``depth``, ``depth_index`` is the depth ``surgifuse fuse --depth`` writes (measured from each
    pixel's focus curve over the registered frames, refined); without it, the engine's index."""
    from surgifuse.focus_curve import FocusCurve
    from surgifuse.fusion import deeper_than_engine, fuse_focal_stack

    check_limits(items, limits)
    stack = imageio.FrameStack.from_bytes(items)
    streamed = deeper_than_engine(engine, len(stack))
    if streamed:
        frames, names = stack, stack.names
        first = _decoded(lambda: stack[0])
    else:
        frames, names = decode_upload(items)
        first = frames[0]
    if len(frames) < 2:
        raise UploadError(422, f"a focal stack needs at least 2 frames, got {len(frames)} ({names[0]}): "
                               "there is nothing to fuse", file=names[0])
    if engine.spec is not None:
        try:
            engine.spec.check_stack(len(frames), first.shape, first.dtype, file=names[0], streaming=True)
        except InputError as exc:
            raise UploadError(422, f"engine {engine.name!r} cannot fuse these images: {exc}", file=exc.file) from None
    curve = FocusCurve(first.shape) if depth else None
    del first
    fusion = _decoded(lambda: fuse_focal_stack(engine, frames, align=align, focus_curve=curve, keep_frames=False))
    timings = {**fusion.timings, **fusion.result.timings}
    depth_index = fusion.result.depth_index
    if curve is not None:
        from surgifuse.depth import refine_depth

        depth_index = refine_depth(*curve.result(), fusion.result.image)[0]
    return FusedUpload(fusion.result.image, depth_index, engine.name, names, timings, moved=fusion.moved)


def _decoded(work):
    """``work()``, its bad-input errors (a streamed frame that cannot be read or does not match) as 422s."""
    try:
        return work()
    except InputError as exc:
        raise UploadError(422, str(exc), file=exc.file) from None


def encode_depth_tiff(depth: np.ndarray) -> bytes:
    """The depth index map as a float32 single-page TIFF (values 0..K-1, sub-frame precision)."""
    import tifffile

    out = io.BytesIO()
    tifffile.imwrite(out, np.ascontiguousarray(depth, dtype=np.float32), photometric="minisblack")
    return out.getvalue()


def response_json(fused: FusedUpload, output: str) -> dict:
    """The ``depth=true`` answer: JSON with the image and the depth map base64-encoded."""
    return {
        "engine": fused.engine,
        "frames": len(fused.names),
        "names": fused.names,
        "width": int(fused.image.shape[1]),
        "height": int(fused.image.shape[0]),
        "timings": fused.timings,
        "moved": fused.moved,
        "image": {"format": output, "media_type": f"image/{output}",
                  "data": base64.b64encode(imageio.encode_image(fused.image, output)).decode()},
        "depth": {"format": "tiff", "dtype": "float32", "range": [0, len(fused.names) - 1],
                  "data": base64.b64encode(encode_depth_tiff(fused.depth_index)).decode()},
    }


class UploadWorkers:
    """A bounded pool: ``workers`` threads plus ``queue`` waiting places; beyond that, UploadBusy."""

    def __init__(self, workers: int = 1, queue: int = 2) -> None:
        if workers < 1 or queue < 0:
            raise InputError(f"need workers >= 1 and queue >= 0, got {workers} and {queue}")
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="surgifuse-upload",
                                            initializer=_lower_priority)
        self._lock = threading.Lock()
        self._taken = 0

    @property
    def in_use(self) -> int:
        return self._taken

    async def run(self, fn, *args, **kwargs):
        with self._lock:
            if self._taken >= self.capacity:
                raise UploadBusy()
            self._taken += 1
        try:
            future = self._executor.submit(fn, *args, **kwargs)
        except BaseException:
            self._release()
            raise
        # released when the work ends, not when the request does: a client that hangs up must
        # not free a place while its fusion still occupies the worker
        future.add_done_callback(lambda _: self._release())
        return await asyncio.wrap_future(future)

    def _release(self) -> None:
        with self._lock:
            self._taken -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _lower_priority() -> None:
    # Linux schedules threads individually: nice only this worker thread, not the live threads.
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass
