"""Reading and writing focal-stack images: PNG, JPEG and TIFF (8- or 16-bit, grey or colour), and
reading camera RAW (DNG, NEF, CR2, CR3, ARW, ORF, RW2, RAF) through LibRaw (rawpy, the ``raw`` extra).

The format is sniffed from the content, never trusted from the extension (public microscope data
ships JPEG bytes named ``.png``); only TIFF-based RAW files that carry no mark of their own (NEF,
ARW) are told from a plain TIFF by their extension. Arrays are RGB (or HxW grey), uint8 or uint16;
OpenCV's BGR order exists only inside this module. A RAW frame is developed with one fixed recipe
(``RAW_DEVELOP``) into 16-bit sRGB. Writes are atomic: a temporary file in the target folder,
then ``os.replace``, so a failed run never leaves a half-written image behind.
"""

from __future__ import annotations

import io
import mmap
import os
import re
import struct
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from surgifuse.errors import InputError, InputTypeError

# Camera RAW files LibRaw reads; NEF and ARW (plain TIFF structure) are known by these extensions only.
RAW_EXTENSIONS = (".dng", ".nef", ".cr2", ".cr3", ".arw", ".orf", ".rw2", ".raf")
# Extensions a folder listing picks up; the content is still sniffed when read.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff") + RAW_EXTENSIONS

#: How every camera RAW frame is developed (LibRaw's ``dcraw_process`` through rawpy): one fixed,
#: data-independent recipe, so that all frames of a stack get the same tone curve and the focus
#: measure compares like with like. The white balance the camera recorded (LibRaw falls back to
#: its daylight balance from the colour matrix where the file has none); no auto-brightening and
#: no auto-adjusted white point (LibRaw's default moves the white point to the brightest pixel of
#: each frame when it exceeds 75 % of it: a different scale per frame); AHD demosaicing (LibRaw's
#: default, named so a new default cannot change results); no noise reduction, no median filter;
#: highlights clipped; the camera's colour matrix to sRGB primaries with the sRGB tone curve
#: (power 1/2.4, toe slope 12.92; the engines and their thresholds were built on gamma-encoded
#: images); 16 bits per sample; the sensor's orientation (rotation flag ignored, as EXIF
#: orientation is for PNG/JPEG: frames stay registered to each other).
RAW_DEVELOP = {
    "demosaic_algorithm": "AHD",
    "use_camera_wb": True,
    "use_auto_wb": False,
    "no_auto_bright": True,
    "adjust_maximum_thr": 0.0,
    "bright": 1.0,
    "highlight_mode": "Clip",
    "fbdd_noise_reduction": "Off",
    "median_filter_passes": 0,
    "half_size": False,
    "four_color_rgb": False,
    "output_color": "sRGB",
    "gamma": (2.4, 12.92),
    "output_bps": 16,
    "user_flip": 0,
}

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
# RAW formats with a signature of their own: Olympus ORF, Panasonic RW2 (TIFF variants with their own
# magic), Fujifilm RAF; Canon CR3 is an ISO media file of brand "crx "; CR2 is a TIFF marked "CR" at 8.
_RAW_MAGICS = (b"IIRO", b"IIRS", b"MMOR", b"IIU\x00", b"FUJIFILMCCD-RAW")
_DNG_VERSION_TAG = 50706
_SUPPORTED_DTYPES = (np.uint8, np.uint16)
_WRITE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".tif": "tiff", ".tiff": "tiff"}


def sniff_format(data: bytes, name: str | os.PathLike | None = None) -> str | None:
    """Return ``"png"``, ``"jpeg"``, ``"tiff"`` or ``"raw"`` (camera RAW) from an image's content, else ``None``.

    A TIFF is ``"raw"`` when it is a DNG (its first IFD holds DNGVersion, tag 50706) or a CR2, or,
    given ``name``, when its extension is one of ``RAW_EXTENSIONS`` (NEF and ARW have no other mark).
    """
    head = bytes(data[:16])
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head.startswith(_RAW_MAGICS) or head[4:12] == b"ftypcrx ":
        return "raw"
    if any(head.startswith(m) for m in _TIFF_MAGICS):
        if head[8:10] == b"CR" or _tiff_has_tag(data, _DNG_VERSION_TAG):
            return "raw"
        if name is not None and Path(str(name)).suffix.lower() in RAW_EXTENSIONS:
            return "raw"
        return "tiff"
    return None


def natural_sort_key(name: str) -> list:
    """Sort key that orders digit runs by value: ``frame_2`` before ``frame_10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(name))]


# ----------------------------------------------------------------------------------------- reading


def decode_frames(data: bytes, name: str = "<bytes>") -> list[np.ndarray]:
    """Decode one image file's bytes into its frames (several for a multi-page TIFF).

    Parameters
    ----------
    data : bytes
        The whole file content.
    name : str
        What to call the file in error messages (its path or upload name).

    Returns
    -------
    frames : list of ndarray
        RGB HxWx3 or grey HxW, uint8 or uint16. One per TIFF page; one for PNG/JPEG; one for a
        camera RAW file (uint16 RGB, developed by ``RAW_DEVELOP``).

    Raises
    ------
    ValueError
        Empty or unrecognised content, a corrupt file, a sample type other than 8/16-bit unsigned
        integers, or a RAW file without rawpy installed; the message names ``name``.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputTypeError(f"{name}: image data must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise InputError(f"{name}: empty file, not an image")
    fmt = sniff_format(data, name)
    if fmt is None:
        raise InputError(f"{name}: not a PNG, JPEG, TIFF or camera RAW image (unrecognised content)")
    if fmt == "raw":
        raw = [_develop_raw(bytes(data), name)]
    elif fmt == "tiff":
        raw = _decode_tiff_pages(bytes(data), name)
    else:
        buf = np.frombuffer(data, dtype=np.uint8)
        # UNCHANGED keeps 16-bit PNG and ignores EXIF orientation: every frame of a stack comes
        # out as the sensor recorded it, so they stay registered to each other.
        decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if decoded is None:
            raise InputError(f"{name}: corrupt or truncated {fmt.upper()} file")
        raw = [_bgr_to_rgb(decoded)]
    return [_normalise_frame(f, name if len(raw) == 1 else f"{name}[page {i}]") for i, f in enumerate(raw)]


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode one single-frame image from bytes (PNG/JPEG/TIFF, sniffed).

    Raises ``ValueError`` naming ``name`` for unreadable content or a multi-page TIFF (use
    ``decode_frames`` or ``decode_stack_from_bytes`` for those).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((4, 5, 3), np.uint8); img[..., 0] = 200
    >>> decode_image(encode_image(img, "png"), "red.png")[0, 0].tolist()
    [200, 0, 0]
    """
    frames = decode_frames(data, name)
    if len(frames) != 1:
        raise InputError(f"{name}: holds {len(frames)} pages; read it as a stack (read_stack), not one image")
    return frames[0]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file as RGB (or HxW grey), uint8 or uint16; the format is sniffed.

    A camera RAW file (DNG, NEF, CR2, ...; needs rawpy, the ``raw`` extra) comes out as uint16 RGB,
    developed by ``RAW_DEVELOP``. Raises ``FileNotFoundError`` if the file is missing and
    ``ValueError`` (naming the file) if it is not a readable single-frame image.
    """
    return decode_image(_read_bytes(path), str(path))


def list_image_files(folder: str | os.PathLike, *, pattern: str = "*") -> list[Path]:
    """Image files (by extension) in ``folder`` matching the glob ``pattern``, naturally sorted.

    Hidden files are skipped. ``ValueError`` if none is found.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = [
        p
        for p in folder.glob(pattern)
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    if not files:
        exts = ", ".join(IMAGE_EXTENSIONS)
        raise InputError(f"{folder}: no image files matching {pattern!r} (looked for {exts})")
    return sorted(files, key=lambda p: natural_sort_key(p.name))


def read_stack(
    inputs: str | os.PathLike | Sequence[str | os.PathLike], *, pattern: str | None = None
) -> tuple[list[np.ndarray], list[str]]:
    """Read a focal stack from image files, a folder of them, or a multi-page TIFF.

    Parameters
    ----------
    inputs : path or sequence of paths
        Files are taken in the order given; a folder contributes its image files in natural
        order (``frame_2`` before ``frame_10``); a multi-page TIFF contributes one frame per page.
    pattern : str, optional
        Glob applied inside folders. Default: every image file, except in a stack folder written
        by ``surgifuse synth`` (it holds ``meta.json`` and ``frame_*`` images), where only the
        ``frame_*`` files are frames (``gt.png`` and ``instrument_mask.png`` are truth).

    Returns
    -------
    frames : list of ndarray
        K frames of one shape and dtype (RGB HxWx3 or grey HxW; uint8 or uint16).
    names : list of str
        One name per frame (the file path; ``path[page i]`` for TIFF pages).

    Raises
    ------
    FileNotFoundError
        A path that does not exist.
    InputError
        No inputs or no frames, an unreadable file, or frames that disagree in size, channels or
        bit depth; the message names the files involved, ``file`` the one at fault.
    """
    return decode_stack_from_bytes([(str(p), _read_bytes(p)) for p in _input_files(inputs, pattern)])


def _input_files(inputs: str | os.PathLike | Sequence[str | os.PathLike], pattern: str | None) -> list[Path]:
    """The files of a stack's inputs, in stack order (``read_stack`` and ``open_stack``)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise InputError("no input images given: pass image files, a folder or a multi-page TIFF")
    files: list[Path] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            files.extend(list_image_files(path, pattern=pattern or _default_pattern(path)))
        else:
            files.append(path)
    return files


def decode_stack_from_bytes(items: Iterable[tuple[str, bytes]]) -> tuple[list[np.ndarray], list[str]]:
    """Decode and validate a focal stack from ``(name, bytes)`` pairs (e.g. an HTTP upload).

    Same sniffing, frame expansion (multi-page TIFF) and checks as ``read_stack``.
    """
    frames: list[np.ndarray] = []
    names: list[str] = []
    for name, data in items:
        try:
            pages = decode_frames(data, name)
        except InputError as exc:
            exc.file = exc.file or name
            raise
        frames.extend(pages)
        names.extend([name] if len(pages) == 1 else [f"{name}[page {i}]" for i in range(len(pages))])
    check_stack_consistency(frames, names)
    return frames, names


def check_stack_consistency(frames: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """Raise ``InputError`` naming both frames (and ``file``: the one that differs) if any frame's
    size, channels or bit depth differs from the first one's; also if there is no frame at all."""
    if len(frames) == 0:
        raise InputError("a focal stack needs at least one frame, got 0")
    for frame, name in zip(frames[1:], names[1:]):
        check_frame_matches(frame, name, frames[0], names[0])


def check_frame_matches(frame: np.ndarray, name: str, first: np.ndarray, first_name: str) -> None:
    """Raise ``InputError`` naming both frames (``file``: ``name``) if ``frame``'s size, channels or
    bit depth differs from ``first``'s."""
    if frame.shape[:2] != first.shape[:2]:
        raise InputError(
            f"{name} is {_size(frame)} but {first_name} is {_size(first)}: all frames must have one size",
            file=name)
    if _channels(frame) != _channels(first):
        raise InputError(
            f"{name} has {_describe_channels(frame)} but {first_name} has {_describe_channels(first)}: "
            "all frames must be grey or all colour", file=name)
    if frame.dtype != first.dtype:
        raise InputError(
            f"{name} is {_bits(frame)}-bit but {first_name} is {_bits(first)}-bit: all frames must have one bit depth",
            file=name)


# ----------------------------------------------------------------------------------------- one frame at a time


#: Threads ``FrameStack.decode_all`` decodes image files on.
DECODE_THREADS = 4


class FrameStack:
    """A focal stack that decodes one frame at a time (``surgifuse.streaming``: any K in bounded memory).

    K and the frame names are known when it is opened, from the file list and the page counts of
    multi-page TIFFs; a frame is decoded only when asked for. ``open_stack`` opens files and
    folders (only the file headers are read), ``from_bytes`` an upload, ``from_arrays`` frames
    already in memory.

    ``len(stack)``, ``stack.names`` (as ``read_stack`` names them), ``stack[i]`` (frame i alone),
    ``iter(stack)`` and ``stack.iter_frames(indices)``: frames in order, each checked against the
    first one yielded (``InputError`` naming both files and what differs), each released by the
    reader once yielded.

    Examples
    --------
    >>> import numpy as np
    >>> stack = FrameStack.from_arrays([np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8)])
    >>> len(stack), stack.names, int(stack[1].max())
    (2, ['frame 0', 'frame 1'], 1)
    """

    def __init__(self, frames: Sequence[tuple[_FrameSource, int | None]], names: Sequence[str]) -> None:
        self._frames = list(frames)
        self.names = list(names)

    @classmethod
    def from_arrays(cls, frames: Iterable[np.ndarray], names: Sequence[str] | None = None) -> FrameStack:
        """Frames already decoded (``names`` default to ``frame 0``, ``frame 1``...)."""
        frames = list(frames)
        names = [f"frame {i}" for i in range(len(frames))] if names is None else list(names)
        if len(names) != len(frames):
            raise InputError(f"got {len(frames)} frames but {len(names)} names")
        return cls([(_FrameSource(name, frame), None) for name, frame in zip(names, frames)], names)

    @classmethod
    def from_bytes(cls, items: Iterable[tuple[str, bytes]]) -> FrameStack:
        """``(name, bytes)`` pairs, e.g. an HTTP upload: the bytes stay compressed until a frame is read."""
        return cls._from_sources(_FrameSource(name, data) for name, data in items)

    @classmethod
    def _from_sources(cls, sources: Iterable[_FrameSource]) -> FrameStack:
        frames, names = [], []
        for source in sources:
            pages = source.frame_pages()
            if pages is None:
                frames.append((source, None))
                names.append(source.name)
            else:
                frames.extend((source, page) for page in pages)
                names.extend(f"{source.name}[page {i}]" for i in range(len(pages)))
        return cls(frames, names)

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> np.ndarray:
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame {index} of a stack of {len(self)}")
        return next(self.iter_frames([index % len(self)]))

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.iter_frames()

    def decode_all(self, *, first: np.ndarray | None = None) -> list[np.ndarray]:
        """Every frame, in order, with the checks of ``iter_frames``; image files are decoded on up
        to ``DECODE_THREADS`` threads (the decoders release the GIL: seven 3-megapixel JPEGs 85 ->
        45 ms on two cores), the pages of a multi-page TIFF in sequence. ``first``: frame 0, already
        decoded by the caller."""
        if first is None:
            return list(self.iter_frames(ahead=DECODE_THREADS))
        rest = self.iter_frames(range(1, len(self)), ahead=DECODE_THREADS, match=(first, self.names[0]))
        return [first, *rest]

    def iter_frames(self, indices: Iterable[int] | None = None, *, ahead: int = 0,
                    match: tuple[np.ndarray, str] | None = None) -> Iterator[np.ndarray]:
        """Frames ``indices`` (default: all) in the order given, decoded one at a time.

        ``ahead``: image files are decoded up to this many frames ahead of the one handed out, on
        as many threads (the decoders release the GIL), so that decoding overlaps the caller's work;
        ``ahead`` more frames are held. The pages of a multi-page TIFF are read in sequence.
        ``match``: the frame and name every frame is checked against (default: the first handed out).
        """
        indices = range(len(self)) if indices is None else indices
        first: tuple[np.ndarray, str] | None = None
        if match is not None:  # a zero-byte stand-in: its shape and dtype are all the checks need
            first = (np.broadcast_to(np.zeros((), match[0].dtype), match[0].shape), match[1])
        tiff = None  # the multi-page TIFF being read: (source, open TiffFile)
        decoded = _DecodedAhead(self._frames, indices, ahead)
        try:
            for i in indices:
                source, page = self._frames[i]
                name = self.names[i]
                if page is None:
                    frame = decoded.next_frame(i)
                else:
                    if tiff is None or tiff[0] is not source:
                        if tiff is not None:
                            tiff[1].close()
                        tiff = (source, source.open_tiff())
                    frame = source.tiff_frame(tiff[1], page, name)
                if first is None:
                    # A zero-byte stand-in: its shape and dtype are all the checks need.
                    first = (np.broadcast_to(np.zeros((), frame.dtype), frame.shape), name)
                else:
                    check_frame_matches(frame, name, *first)
                yield frame
                del frame
        finally:
            decoded.close()
            if tiff is not None:
                tiff[1].close()


class _DecodedAhead:
    """The whole-frame sources among ``indices`` decoded up to ``ahead`` frames in advance, in order."""

    def __init__(self, sources: list, indices: Iterable[int], ahead: int) -> None:
        self._sources = sources
        self._pool = None
        if ahead > 0:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max(1, min(ahead, os.cpu_count() or 1)))
            self._todo = iter([i for i in indices if sources[i][1] is None])
            self._pending: list = []
            for _ in range(ahead):
                self._submit_next()

    def _submit_next(self) -> None:
        i = next(self._todo, None)
        if i is not None:
            self._pending.append((i, self._pool.submit(self._sources[i][0].whole_frame)))

    def next_frame(self, index: int) -> np.ndarray:
        if self._pool is None:
            return self._sources[index][0].whole_frame()
        i, future = self._pending.pop(0)
        assert i == index, "frames are handed out in the order they were asked for"
        self._submit_next()
        return future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pending = []


def open_stack(inputs: str | os.PathLike | Sequence[str | os.PathLike], *, pattern: str | None = None) -> FrameStack:
    """A focal stack from image files, a folder or a multi-page TIFF, read one frame at a time.

    The same inputs, order, names and checks as ``read_stack``, but only the file headers are read
    here (for the format and the page count of TIFFs); each frame is decoded when it is asked for.
    Raises ``FileNotFoundError`` for a missing path and ``InputError`` for an empty folder or an
    unreadable TIFF header; a frame that cannot be decoded or does not match the first raises
    ``InputError`` naming its file when it is read.
    """
    return FrameStack._from_sources(_FrameSource(str(path), path) for path in _input_files(inputs, pattern))


class _FrameSource:
    """One input of a ``FrameStack``: a file, an upload's bytes or an array."""

    def __init__(self, name: str, data: Path | bytes | np.ndarray) -> None:
        self.name, self.data = name, data

    def frame_pages(self) -> list[int] | None:
        """A multi-page TIFF's frame pages (not thumbnails); None: the source is one frame."""
        if isinstance(self.data, np.ndarray) or self._format() != "tiff":
            return None
        try:
            with self.open_tiff() as tif:
                pages = [j for j, page in enumerate(tif.pages) if not getattr(page, "is_reduced", False)]
        except Exception:  # a corrupt header: decoding the whole file says what is wrong, naming it
            return None
        return pages if len(pages) > 1 else None

    def whole_frame(self) -> np.ndarray:
        if isinstance(self.data, np.ndarray):
            return self.data
        data = _read_bytes(self.data) if isinstance(self.data, Path) else self.data
        try:
            frames = decode_frames(data, self.name)
        except InputError as exc:
            exc.file = exc.file or self.name
            raise
        if len(frames) != 1:
            raise InputError(f"{self.name}: holds {len(frames)} frames, expected 1", file=self.name)
        return frames[0]

    def open_tiff(self):
        import tifffile

        return tifffile.TiffFile(str(self.data) if isinstance(self.data, Path) else io.BytesIO(self.data))

    def tiff_frame(self, tif, page: int, name: str) -> np.ndarray:
        try:
            frame = _tiff_page_array(tif.pages[page], name)
        except InputError as exc:
            exc.file = exc.file or self.name
            raise
        except Exception as exc:  # tifffile raises many types for corrupt files
            raise InputError(f"{name}: corrupt or unsupported TIFF ({exc})", file=self.name) from exc
        try:
            return _normalise_frame(frame, name)
        except InputError as exc:
            exc.file = exc.file or self.name
            raise

    def _format(self) -> str | None:
        if not isinstance(self.data, Path):
            return sniff_format(self.data, self.name)
        path = self.data
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not an image file", file=str(path))
        try:
            with open(path, "rb") as fh:
                if os.fstat(fh.fileno()).st_size == 0:
                    return None
                # Mapped, not read: the sniffer looks at the header and the first TIFF directory.
                with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
                    return sniff_format(view, self.name)
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})", file=str(path)) from exc

# ----------------------------------------------------------------------------------------- writing


def encode_image(image: np.ndarray, fmt: str, *, jpeg_quality: int = 95) -> bytes:
    """Encode an RGB (or grey) uint8/uint16 image as ``"png"``, ``"jpeg"`` or ``"tiff"`` bytes.

    16-bit is kept for PNG and TIFF; JPEG is 8-bit only (``ValueError`` for uint16).
    """
    fmt = fmt.lower().lstrip(".")
    fmt = {"jpg": "jpeg", "jpe": "jpeg", "tif": "tiff"}.get(fmt, fmt)
    if fmt not in ("png", "jpeg", "tiff"):
        raise InputError(f"unknown image format {fmt!r}; use png, jpeg or tiff")
    image = _check_writable_image(image)
    if fmt == "tiff":
        import tifffile

        out = io.BytesIO()
        photometric = "rgb" if image.ndim == 3 else "minisblack"
        tifffile.imwrite(out, image, photometric=photometric, compression="zlib")
        return out.getvalue()
    if fmt == "jpeg":
        if image.dtype != np.uint8:
            raise InputError(f"JPEG holds 8-bit images only, got {image.dtype}; write PNG or TIFF for 16-bit")
        if not 1 <= int(jpeg_quality) <= 100:
            raise InputError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    else:
        params = []
    ok, buf = cv2.imencode("." + ("jpg" if fmt == "jpeg" else fmt), _rgb_to_bgr(image), params)
    if not ok:
        raise InputError(f"OpenCV could not encode a {image.shape} {image.dtype} image as {fmt}")
    return buf.tobytes()


def format_for_path(path: str | os.PathLike) -> str:
    """The format ``write_image`` uses for ``path`` (from its extension); ``ValueError`` if unknown."""
    suffix = Path(path).suffix.lower()
    try:
        return _WRITE_FORMATS[suffix]
    except KeyError:
        raise InputError(
            f"{path}: cannot tell the output format from the extension {suffix!r}; use .png, .jpg or .tif"
        ) from None


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``.

    On any failure the temporary file is removed and ``path`` is left as it was.
    """
    write_files_atomic({path: data})


def write_files_atomic(files: dict[str | os.PathLike, bytes]) -> None:
    """Write several files all-or-nothing, as far as the file system allows.

    Every file is first written in full to a temporary file beside its target; only when all of
    them are on disk are they renamed into place (``os.replace``, atomic per file). A failure while
    staging (full disk, no permission) leaves every target untouched and no temporary file behind.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            path = Path(path)
            folder = path.parent
            if not folder.is_dir():
                raise FileNotFoundError(f"{path}: output folder {folder} does not exist")
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            # mkstemp creates 0600; an output image should be readable like any other file.
            os.chmod(tmp, 0o644)
        while staged:
            tmp, path = staged[0]
            os.replace(tmp, path)
            staged.pop(0)
    finally:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def write_image(path: str | os.PathLike, image: np.ndarray, *, jpeg_quality: int = 95) -> None:
    """Write an RGB (or grey) uint8/uint16 image atomically; the format follows the extension.

    ``.png`` and ``.tif``/``.tiff`` keep 16-bit; ``.jpg``/``.jpeg`` need uint8. Nothing is left at
    ``path`` (nor a temporary file) if encoding or writing fails.
    """
    data = encode_image(image, format_for_path(path), jpeg_quality=jpeg_quality)
    write_bytes_atomic(path, data)


# ----------------------------------------------------------------------------------------- helpers


def _default_pattern(folder: Path) -> str:
    # A synthetic stack folder (surgifuse.synth.write_stack) keeps its truth beside the frames.
    if (folder / "meta.json").is_file() and any(folder.glob("frame_*")):
        return "frame_*"
    return "*"


def _read_bytes(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _tiff_has_tag(data: bytes, tag: int) -> bool:
    """Whether the first IFD of a classic (not Big) TIFF holds ``tag``; False for anything unreadable."""
    if len(data) < 8 or bytes(data[:4]) not in (b"II*\x00", b"MM\x00*"):
        return False
    order = "<" if bytes(data[:2]) == b"II" else ">"
    (offset,) = struct.unpack_from(order + "I", data, 4)
    if offset + 2 > len(data):
        return False
    (count,) = struct.unpack_from(order + "H", data, offset)
    entries = offset + 2
    count = min(count, (len(data) - entries) // 12)
    return any(struct.unpack_from(order + "H", data, entries + 12 * i)[0] == tag for i in range(count))


def _develop_raw(data: bytes, name: str) -> np.ndarray:
    """A camera RAW file's sensor data demosaiced to HxWx3 uint16 sRGB by ``RAW_DEVELOP``."""
    try:
        import rawpy
    except ImportError:
        raise InputError(
            f"{name}: a camera RAW file; reading it needs rawpy, the 'raw' extra (in the SurgiFuse checkout: "
            "pip install -c constraints.txt -e '.[raw]')", file=name) from None
    settings = dict(RAW_DEVELOP)
    settings["demosaic_algorithm"] = rawpy.DemosaicAlgorithm[settings["demosaic_algorithm"]]
    settings["highlight_mode"] = rawpy.HighlightMode[settings["highlight_mode"]]
    settings["fbdd_noise_reduction"] = rawpy.FBDDNoiseReductionMode[settings["fbdd_noise_reduction"]]
    settings["output_color"] = rawpy.ColorSpace[settings["output_color"]]
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            rgb = raw.postprocess(**settings)
    except rawpy.LibRawError as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise InputError(f"{name}: corrupt, truncated or unsupported camera RAW file (LibRaw: {reason})",
                         file=name) from exc
    return rgb


def _decode_tiff_pages(data: bytes, name: str) -> list[np.ndarray]:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            pages = []
            for page in tif.pages:
                if getattr(page, "is_reduced", False):  # a thumbnail or pyramid level, not a frame
                    continue
                pages.append(_tiff_page_array(page, name))
    except ValueError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise InputError(f"{name}: corrupt or unsupported TIFF ({exc})") from exc
    if not pages:
        raise InputError(f"{name}: TIFF holds no pages")
    return pages


def _tiff_page_array(page, name: str) -> np.ndarray:
    if int(page.photometric) == 3:  # PALETTE: indices, not intensities
        raise InputError(f"{name}: palette (indexed-colour) TIFF is not supported; save it as RGB")
    arr = page.asarray()
    if int(page.planarconfig) == 2 and arr.ndim == 3:  # SEPARATE: (S, H, W)
        arr = np.moveaxis(arr, 0, -1)
    return arr


def _normalise_frame(frame: np.ndarray, name: str) -> np.ndarray:
    """HxW, HxWx1, HxWx2 (grey+alpha), HxWx3 or HxWx4 (RGBA) -> HxW or HxWx3, 8/16-bit only."""
    if frame.dtype not in _SUPPORTED_DTYPES:
        raise InputError(f"{name}: {frame.dtype} samples are not supported; SurgiFuse reads 8- or 16-bit images")
    if frame.ndim == 3 and frame.shape[2] in (2, 4):
        warnings.warn(f"{name}: alpha channel dropped", stacklevel=3)
        frame = frame[..., :-1]
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
        raise InputError(f"{name}: unsupported image layout {frame.shape}; expected grey or RGB")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InputError(f"{name}: empty image {frame.shape}")
    return np.ascontiguousarray(frame)


def _bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def _rgb_to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return image


def _check_writable_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InputTypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype not in _SUPPORTED_DTYPES:
        raise InputTypeError(f"image dtype must be uint8 or uint16, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise InputError(f"image must be HxW grey or HxWx3 RGB, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"image is empty: shape {image.shape}")
    return np.ascontiguousarray(image)


def _size(frame: np.ndarray) -> str:
    return f"{frame.shape[1]}x{frame.shape[0]}"


def _channels(frame: np.ndarray) -> int:
    return 1 if frame.ndim == 2 else frame.shape[2]


def _describe_channels(frame: np.ndarray) -> str:
    return "1 channel (grey)" if frame.ndim == 2 else f"{frame.shape[2]} channels (RGB)"


def _bits(frame: np.ndarray) -> int:
    return frame.dtype.itemsize * 8


__all__ = [
    "IMAGE_EXTENSIONS",
    "sniff_format",
    "natural_sort_key",
    "decode_frames",
    "decode_image",
    "read_image",
    "list_image_files",
    "read_stack",
    "decode_stack_from_bytes",
    "check_stack_consistency",
    "check_frame_matches",
    "FrameStack",
    "open_stack",
    "encode_image",
    "format_for_path",
    "write_bytes_atomic",
    "write_files_atomic",
    "write_image",
]
