"""Bounded load test (slow, opt-in with --run-slow): N clients on loopback, one deliberately slow.

The full 60 s 1080p run is ``python -m surgifuse.live.loadtest`` (numbers in
docs/benchmarks-live.md). This short version checks the properties that do not depend on the
machine's speed: every normal client gets an ordered stream, the slow client skips frames instead
of slowing the others, and the server's memory does not grow with a client that stops reading.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_slow_client_skips_frames_and_memory_stays_bounded():
    from surgifuse.live.loadtest import run_load_test

    result = run_load_test(clients=4, slow=1, duration_s=12.0, warmup_s=3.0, width=640, height=480, fps=30.0,
                           engine="classical", k=5, cache_frames=16)
    normal = [c for c in result["clients"] if not c["slow"]]
    slow = [c for c in result["clients"] if c["slow"]]
    assert all(c["frames"] > 0 for c in normal)
    assert slow[0]["frames"] < min(c["frames"] for c in normal) / 3  # it reads one frame per 0.5 s
    assert result["server_metrics"].get("dropped_client", 0) > 0  # its slot absorbed the rest
    assert result["rss"]["growth_mb"] < 50
