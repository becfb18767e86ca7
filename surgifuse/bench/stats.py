"""Latency statistics for the benchmark: percentiles and the per-stage summary.

Percentiles use linear interpolation between closest ranks (Hyndman & Fan definition 7, NumPy's
default ``method="linear"``): with the n samples sorted, the q-th percentile sits at rank
``(n - 1) * q / 100`` and is interpolated between its two neighbours. So the p50 of 1..100 is 50.5
and the p100 is the maximum. This is written out here (not ``np.percentile``) so that the
arithmetic is ours, tested against NumPy, and stable across NumPy versions.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from surgifuse.errors import InputError

#: The percentiles every stage reports, in the order of the table.
REPORTED_PERCENTILES = (50, 95, 99)


def percentile(samples: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile of ``samples`` by linear interpolation between closest ranks.

    Parameters
    ----------
    samples : sequence of float
        At least one finite value.
    q : float
        Percentile in [0, 100].

    Returns
    -------
    float

    Examples
    --------
    >>> percentile(range(1, 101), 50)
    50.5
    >>> percentile([3.0, 1.0, 2.0], 100)
    3.0
    """
    values = _as_samples(samples)
    if not isinstance(q, (int, float)) or isinstance(q, bool) or not 0 <= q <= 100:
        raise InputError(f"percentile q must be a number in [0, 100], got {q!r}")
    ordered = np.sort(values)
    rank = (len(ordered) - 1) * (q / 100.0)
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    frac = rank - lo
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * frac)


def summarize(samples_ms: Iterable[float]) -> dict[str, float | int]:
    """Summary of one stage's latencies in milliseconds.

    Returns
    -------
    dict
        ``n``, ``mean``, ``min``, ``p50``, ``p95``, ``p99``, ``max`` (all milliseconds except
        ``n``). ``p50 <= p95 <= p99 <= max`` always holds.
    """
    values = _as_samples(list(samples_ms))
    out: dict[str, float | int] = {"n": int(values.size), "mean": float(values.mean()), "min": float(values.min())}
    for q in REPORTED_PERCENTILES:
        out[f"p{q}"] = percentile(values, q)
    out["max"] = float(values.max())
    return out


def throughput_fps(frame_count: int, wall_seconds: float) -> float:
    """Frames per second over a measured run; ``ValueError`` for a non-positive duration."""
    if frame_count < 0:
        raise InputError(f"frame_count must be >= 0, got {frame_count}")
    if not wall_seconds > 0:
        raise InputError(f"wall_seconds must be > 0, got {wall_seconds}")
    return frame_count / wall_seconds


def _as_samples(samples) -> np.ndarray:
    values = np.asarray(samples, dtype=np.float64).ravel()
    if values.size == 0:
        raise InputError("need at least one sample, got 0")
    if not np.all(np.isfinite(values)):
        raise InputError("samples must be finite numbers (got NaN or inf)")
    return values
