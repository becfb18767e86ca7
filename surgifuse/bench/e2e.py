"""End-to-end latency against a running ``surgifuse serve``: capture timestamp to receipt, per frame.

A websocket client reads ``/ws/stream`` (framing in docs/api.md: 4-byte big-endian header length,
JSON header, JPEG) for a while and, per frame, takes ``capture_ms`` (server wall clock when the
source released the frame) and ``publish_ms`` from the header and its own receipt time. A remote
server's clock may differ: the offset is estimated from ``ping``/``pong`` round trips before the
run (the one with the shortest round trip wins, NTP's rule), so the figures hold across machines
to within half that round trip.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
import urllib.parse
from typing import Callable

from surgifuse.errors import InputError

from .stats import summarize

PINGS = 8


def stream_url(url: str, view: str) -> str:
    """``url`` with ``view=VIEW`` added to its query (unless it names one); ``InputError`` unless
    it is a ws:// or wss:// URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise InputError(f"--e2e needs a ws:// or wss:// URL, got {url!r}", field="--e2e", allowed="ws://... or wss://...")
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.setdefault("view", view)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _wall_ms() -> float:
    return time.time() * 1000.0


async def _clock_offset(ws, pings: int) -> tuple[float, float]:
    """(server minus client clock in ms, round trip of the best ping in ms). Frames that arrive
    meanwhile are dropped (they are not part of the measured window)."""
    best = (0.0, float("inf"))
    for i in range(pings):
        sent = _wall_ms()
        await ws.send(json.dumps({"type": "ping", "t": sent}))
        while True:
            message = await asyncio.wait_for(ws.recv(), timeout=5.0)
            if isinstance(message, str):
                body = json.loads(message)
                if body.get("type") == "pong" and body.get("t") == sent:
                    break
        received = _wall_ms()
        rtt = received - sent
        if rtt < best[1]:
            best = (float(body["server_ms"]) - (sent + received) / 2.0, rtt)
    return best


async def _measure(url: str, *, duration: float, token: str | None, progress) -> dict:
    import websockets

    from surgifuse.live.publisher import unpack_frame

    headers = {"Authorization": f"Bearer {token}"} if token else None
    samples: dict[str, list[float]] = {"capture_to_publish": [], "publish_to_receipt": [], "total": []}
    server_timings: dict[str, list[float]] = {}
    seqs, unfused, engines, sizes, fused_total, reasons = [], 0, set(), set(), [], {}
    async with websockets.connect(url, additional_headers=headers, max_size=None, open_timeout=10) as ws:
        offset, rtt = await _clock_offset(ws, PINGS)
        start = time.perf_counter()
        last_tick = 0
        while True:
            left = duration - (time.perf_counter() - start)
            if left <= 0:
                break
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=left)
            except asyncio.TimeoutError:
                break
            receipt = _wall_ms() + offset  # on the server's clock
            elapsed = int(time.perf_counter() - start)
            if progress is not None and elapsed > last_tick:
                progress(elapsed - last_tick)
                last_tick = elapsed
            if isinstance(message, str):
                continue
            header, _jpeg = unpack_frame(message)
            capture, publish = float(header["capture_ms"]), float(header["publish_ms"])
            samples["capture_to_publish"].append(publish - capture)
            samples["publish_to_receipt"].append(receipt - publish)
            samples["total"].append(receipt - capture)
            for key, value in (header.get("timings") or {}).items():
                server_timings.setdefault(key, []).append(float(value))
            seqs.append(int(header["seq"]))
            if header.get("fused", True):
                fused_total.append(receipt - capture)
            else:
                unfused += 1
                reason = str(header.get("reason"))
                reasons[reason] = reasons.get(reason, 0) + 1
            engines.add(str(header.get("engine")))
            sizes.add(f"{header.get('width')}x{header.get('height')}")
    wall = time.perf_counter() - start
    return {"samples": samples, "server_timings": server_timings, "seqs": seqs, "unfused": unfused,
            "fused_total": fused_total, "reasons": reasons,
            "engines": sorted(engines), "sizes": sorted(sizes), "offset_ms": offset, "rtt_ms": rtt, "wall_s": wall}


def run_e2e(url: str, *, duration: float = 10.0, token: str | None = None, view: str = "fused",
            progress: Callable[[int], None] | None = None, command: str | None = None) -> dict:
    """Receive frames from ``url`` for ``duration`` seconds; a report of ``report.SCHEMA``.

    Stages: ``capture_to_publish`` (server: source to encoded packet), ``publish_to_receipt``
    (hand-off, websocket, network, client) and ``total`` (capture to receipt). ``frames_skipped``
    counts capture sequence numbers that never reached this client (dropped as stale somewhere).
    ``ValueError`` when no frame arrived.
    """
    from .suite import new_report

    if not duration > 0:
        raise InputError(f"duration must be > 0 seconds, got {duration}")
    full_url = stream_url(url, view)
    cpu0 = os.times()
    try:
        got = asyncio.run(_measure(full_url, duration=duration, token=token, progress=progress))
    except OSError as exc:
        raise InputError(f"cannot connect to {url}: {exc}") from None
    except Exception as exc:  # websockets' handshake errors (403 for a wrong token) carry the reason
        if type(exc).__module__.startswith("websockets"):
            raise InputError(f"websocket {url}: {exc}") from None
        raise
    cpu1 = os.times()
    n = len(got["samples"]["total"])
    if n == 0:
        raise InputError(f"no frame arrived from {url} within {duration:g} s")
    seqs = got["seqs"]
    skipped = (max(seqs) - min(seqs) + 1 - len(set(seqs))) if seqs else 0
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    report = new_report("e2e", {"url": url, "view": view, "duration_s": duration, "token": bool(token)}, command=command)
    report["runs"].append({
        "engine": ",".join(got["engines"]) or "server",
        "device": "server",
        "stages": {name: summarize(values) for name, values in got["samples"].items()},
        "samples_ms": got["samples"],
        "throughput_fps": n / got["wall_s"],
        "cpu_percent": 100.0 * cpu_s / got["wall_s"],  # of this client process
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "frames_received": n,
        "frames_skipped": skipped,
        "frames_unfused": got["unfused"],
        "unfused_reasons": got["reasons"],
        # The fail-safe publishes the raw newest frame when fusion runs late: those arrive sooner,
        # so the fused frames' own capture-to-receipt is reported apart.
        "total_fused_only": summarize(got["fused_total"]) if got["fused_total"] else None,
        "frame_sizes": got["sizes"],
        "server_timings": {k: summarize(v) for k, v in got["server_timings"].items()},
        "clock_offset_ms": got["offset_ms"],
        "clock_rtt_ms": got["rtt_ms"],
    })
    return report
