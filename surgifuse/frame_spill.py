"""Frames kept on disk between the two passes of a streamed fusion, instead of decoded twice.

The second pass of ``surgifuse.streaming.fuse_stream`` reads again every frame the blend needs (on
a 120-frame stack, nearly all). Decoding a 1600x1200 PNG costs 36 ms here; reading its 5.8 MB of
pixels back from a temporary file costs about 1 ms while the file is in the page cache, and the
process's own memory stays bounded (the file's pages belong to the operating system's cache, which
it writes out or drops under pressure). The spill is used only where it is safe: the whole stack's
raw size within ``SPILL_LIMIT_BYTES`` and half the free space of the folder, and not on a RAM
file system (tmpfs: the file would live in memory). A write that fails (disk full) turns the spill
off for the frames after it; they are decoded again as before. The file is unlinked as soon as it
is made, so nothing is left behind, whatever happens.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["SPILL_LIMIT_BYTES", "FrameSpill"]

#: The largest stack (raw bytes, K x frame) that is spilled: a 500-frame 12-megapixel RGB stack.
SPILL_LIMIT_BYTES = 18 * 2**30
#: File systems whose files live in memory: a spill there would cost what it is meant to save.
MEMORY_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs", "hugetlbfs"})


class FrameSpill:
    """K frames of one shape and dtype written once (``write``) and read back (``read``).

    Make one with ``FrameSpill.open``, which returns None where spilling is not safe (see the module
    notes); ``close`` it after the second pass (a context manager does).
    """

    def __init__(self, fd: int, k: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._fd, self.k, self.shape, self.dtype = fd, k, tuple(shape), np.dtype(dtype)
        self.frame_bytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self._written: set[int] = set()
        self.failed = False

    @classmethod
    def open(cls, k: int, shape: tuple[int, ...], dtype, *, folder: str | os.PathLike | None = None,
             limit: int = SPILL_LIMIT_BYTES) -> FrameSpill | None:
        """A spill for ``k`` frames in ``folder`` (default: the system's temporary folder), or None
        where the stack is larger than ``limit`` or half the folder's free space, or the folder is
        on a RAM file system or cannot take a file."""
        folder = Path(folder or tempfile.gettempdir())
        total = k * int(np.prod(shape)) * np.dtype(dtype).itemsize
        if total > limit or _file_system(folder) in MEMORY_FILE_SYSTEMS:
            return None
        try:
            if total > shutil.disk_usage(folder).free // 2:
                return None
            fd, path = tempfile.mkstemp(dir=folder, prefix="surgifuse-spill-")
            os.unlink(path)  # the file lives until the descriptor is closed, and no longer
        except OSError:
            return None
        return cls(fd, k, shape, dtype)

    def write(self, index: int, frame: np.ndarray) -> None:
        """Keep frame ``index``; a failed write (disk full) turns the spill off from here on."""
        if self.failed or self._fd < 0:
            return
        data = memoryview(np.ascontiguousarray(frame, dtype=self.dtype)).cast("B")
        if data.nbytes != self.frame_bytes:
            raise ValueError(f"frame {index} has {data.nbytes} bytes, the spill holds frames of {self.frame_bytes}")
        try:
            done = 0
            while done < data.nbytes:  # pwrite may write less than asked
                done += os.pwrite(self._fd, data[done:], index * self.frame_bytes + done)
        except OSError:
            self.failed = True
            return
        self._written.add(index)

    def has(self, index: int) -> bool:
        """Whether frame ``index`` was written (and can be read back)."""
        return index in self._written

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as written; ``KeyError`` if it was not."""
        if index not in self._written:
            raise KeyError(f"frame {index} was not spilled")
        frame = np.empty(self.shape, self.dtype)
        view = memoryview(frame).cast("B")
        done = 0
        while done < self.frame_bytes:
            got = os.preadv(self._fd, [view[done:]], index * self.frame_bytes + done)
            if got <= 0:
                raise OSError(f"spill file ended inside frame {index}")
            done += got
        return frame

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._written.clear()

    def __enter__(self) -> FrameSpill:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _file_system(folder: Path) -> str | None:
    """The type of the file system ``folder`` is on (Linux: from /proc/mounts), or None if unknown."""
    try:
        target = folder.resolve()
        best, kind = "", None
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = target == Path(point) or Path(point) in target.parents
                if inside and len(point) > len(best):
                    best, kind = point, fields[2]
        return kind
    except OSError:
        return None
