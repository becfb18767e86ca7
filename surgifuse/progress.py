"""Progress reporting for long commands (synth, train, bench, the sweep video), in one place.

On a terminal: a tqdm bar, redrawn in place. Anywhere else (a log file, CI, a pipe): plain lines,
at most one every ``LOG_INTERVAL_S`` seconds plus one when done, because a bar's carriage-return
redraws turn a log into one unreadable line of thousands of updates.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

__all__ = ["LOG_INTERVAL_S", "progress_bar", "track"]

T = TypeVar("T")

#: Seconds between two progress lines when the stream is not a terminal.
LOG_INTERVAL_S = 10.0

_now = time.monotonic  # a module attribute, so that tests can drive the clock


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _NoProgress:
    """What a disabled progress bar is: every call does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values) -> None:
        pass

    def close(self) -> None:
        pass


class _LineProgress:
    """Progress as plain lines: ``desc: n/total unit (p%), elapsed s[, postfix]``."""

    def __init__(self, *, total: int | None, desc: str, unit: str, initial: int, stream: TextIO,
                 interval_s: float) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.stream, self.interval_s = stream, interval_s
        self.started = self.last_line = _now()
        self.postfix = ""
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if _now() - self.last_line >= self.interval_s:
            self._line()

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line(last=True)

    def _line(self, last: bool = False) -> None:
        self.last_line = now = _now()
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        parts = [f"{self.desc}: {count} {self.unit}{percent}", f"{now - self.started:.0f} s"]
        if self.postfix:
            parts.append(self.postfix)
        if last and self.total and self.n >= self.total:
            parts.append("done")
        print(", ".join(parts), file=self.stream, flush=True)


def progress_bar(*, total: int | None, desc: str, unit: str, initial: int = 0, enabled: bool = True,
                 leave: bool = True, stream: TextIO | None = None, interval_s: float = LOG_INTERVAL_S):
    """A progress reporter with ``update(n)``, ``set_postfix(**values)`` and ``close()``.

    Parameters
    ----------
    total : int or None, keyword-only
        Expected count (None: unknown).
    desc, unit : str, keyword-only
        What is counted, e.g. ``desc="synth", unit="stack"``.
    initial : int, keyword-only
        Count already done (a resumed run).
    enabled : bool, keyword-only
        False: a reporter that writes nothing.
    leave : bool, keyword-only
        Terminal only: keep the finished bar on screen.
    stream : text stream, keyword-only
        Where to write; default ``sys.stderr`` (looked up at the call).
    interval_s : float, keyword-only
        Not a terminal: seconds between two lines (default ``LOG_INTERVAL_S``).

    Returns
    -------
    A tqdm bar when ``stream`` is a terminal; otherwise a line writer that never writes a carriage
    return (at most one line per ``interval_s``, and one when closed).
    """
    if not enabled:
        return _NoProgress()
    stream = sys.stderr if stream is None else stream
    if _is_terminal(stream):
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream, leave=leave, dynamic_ncols=True)
    return _LineProgress(total=total, desc=desc, unit=unit, initial=initial, stream=stream, interval_s=interval_s)


def track(iterable: Iterable[T], *, desc: str, unit: str, total: int | None = None, enabled: bool = True,
          stream: TextIO | None = None, interval_s: float = LOG_INTERVAL_S) -> Iterator[T]:
    """Yield the items of ``iterable``, counting them on a ``progress_bar``; ``total`` defaults to
    ``len(iterable)`` where it has one."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    bar = progress_bar(total=total, desc=desc, unit=unit, enabled=enabled, stream=stream, interval_s=interval_s)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()
