"""Bounded load test of the live stream on loopback: N websocket clients, one deliberately slow.

Starts ``surgifuse serve`` as a subprocess (demo source, pre-rendered so that the generator does not
compete with the service), connects the clients from this process (asyncio), and reports per client
the frame rate, capture-to-receive latency p50/p99 (server and clients share the wall clock), frames
skipped, and the server's memory growth (RSS after warm-up vs at the end).

    python -m surgifuse.live.loadtest --clients 8 --slow 1 --duration 60 --width 1920 --height 1080

Targets (docs/benchmarks-live.md): every normal client >= 29 fps, p99 <= 50 ms, RSS growth < 50 MB,
and the slow client changes none of that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ClientRecord:
    name: str
    slow: bool
    latencies_ms: list[float] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    bytes: int = 0
    fused: int = 0

    def summary(self, duration_s: float) -> dict:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.asarray([np.nan])
        gaps = int(np.sum(np.diff(self.seqs) - 1)) if len(self.seqs) > 1 else 0
        return {"client": self.name, "slow": self.slow, "frames": len(self.seqs),
                "fps": len(self.seqs) / duration_s, "latency_p50_ms": float(np.percentile(lat, 50)),
                "latency_p99_ms": float(np.percentile(lat, 99)), "latency_max_ms": float(np.max(lat)),
                "skipped": gaps, "fused_share": self.fused / max(1, len(self.seqs)),
                "mbit_s": self.bytes * 8 / duration_s / 1e6}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, *, width: int, height: int, fps: float, engine: str, k: int, cache_frames: int,
                 extra: list[str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "surgifuse.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--source", "demo", "--width", str(width), "--height", str(height), "--fps", str(fps),
           "--engine", engine, "--k", str(k), "--demo-cache-frames", str(cache_frames), "--log-level", "warning",
           *(extra or [])]
    env = {**os.environ}
    env.pop("SURGIFUSE_TOKEN", None)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_ready(base: str, proc: subprocess.Popen, timeout_s: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stdout.read()[-2000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"server not ready after {timeout_s} s")


async def run_client(url: str, record: ClientRecord, stop_at: float, warm_until: float, slow_delay_s: float) -> None:
    import websockets

    from .publisher import unpack_frame

    # The slow client reads one frame per slow_delay_s with a one-message receive queue: TCP
    # back-pressure reaches the server, whose latest-only slot must absorb it.
    async with websockets.connect(url, max_size=None, max_queue=1 if record.slow else 16) as ws:
        loop = asyncio.get_running_loop()
        while loop.time() < stop_at:
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=max(0.05, stop_at - loop.time()))
            except asyncio.TimeoutError:
                break
            now_ms = time.time() * 1000.0
            if isinstance(message, str):
                continue
            header, jpeg = unpack_frame(message)
            if loop.time() >= warm_until:
                record.latencies_ms.append(now_ms - header["capture_ms"])
                record.seqs.append(header["seq"])
                record.bytes += len(message)
                record.fused += bool(header["fused"])
            if record.slow:
                await asyncio.sleep(slow_delay_s)


def scrape(base: str) -> dict:
    import httpx

    text = httpx.get(f"{base}/metrics", timeout=5).text
    out = {}
    for pattern, key in ((r'^surgifuse_frames_unfused_total\{reason="(\w+)"\} ([\d.e+]+)', "unfused_{}"),
                         (r'^surgifuse_frames_dropped_total\{where="(\w+)"\} ([\d.e+]+)', "dropped_{}"),
                         (r'^surgifuse_frames_published_total\{fused="(\w+)"\} ([\d.e+]+)', "published_fused_{}"),
                         (r'^surgifuse_frames_captured_total ([\d.e+]+)', "captured")):
        for m in re.finditer(pattern, text, re.M):
            if len(m.groups()) == 2:
                out[key.format(m.group(1))] = float(m.group(2))
            else:
                out[key] = float(m.group(1))
    for stage in ("prepare", "fuse", "guard", "encode", "capture_to_publish"):
        s = re.search(rf'^surgifuse_stage_latency_seconds_sum\{{stage="{stage}"\}} ([\d.e+-]+)', text, re.M)
        c = re.search(rf'^surgifuse_stage_latency_seconds_count\{{stage="{stage}"\}} ([\d.e+-]+)', text, re.M)
        if s and c and float(c.group(1)):
            out[f"mean_{stage}_ms"] = 1000.0 * float(s.group(1)) / float(c.group(1))
    return out


def run_load_test(*, clients: int = 8, slow: int = 1, duration_s: float = 60.0, warmup_s: float = 5.0,
                  width: int = 1920, height: int = 1080, fps: float = 30.0, engine: str = "classical", k: int = 5,
                  cache_frames: int = 64, slow_delay_s: float = 0.5, server_args: list[str] | None = None) -> dict:
    """Run the load test; returns per-client summaries, server memory and server metrics."""
    import psutil

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(port, width=width, height=height, fps=fps, engine=engine, k=k, cache_frames=cache_frames,
                        extra=server_args)
    try:
        wait_ready(base, proc)
        server = psutil.Process(proc.pid)
        records = [ClientRecord(f"client{i}", slow=i >= clients - slow) for i in range(clients)]
        url = base.replace("http", "ws") + "/ws/stream"
        rss: dict[str, float] = {}
        samples: list[float] = []
        load_before = os.getloadavg()

        async def main() -> None:
            loop = asyncio.get_running_loop()
            start = loop.time()
            warm_until, stop_at = start + warmup_s, start + warmup_s + duration_s
            tasks = [asyncio.create_task(run_client(url, r, stop_at, warm_until, slow_delay_s)) for r in records]
            await asyncio.sleep(warmup_s)
            rss["after_warmup_mb"] = server.memory_info().rss / 2**20
            while loop.time() < stop_at:
                await asyncio.sleep(1.0)
                samples.append(server.memory_info().rss / 2**20)
            await asyncio.gather(*tasks, return_exceptions=True)
            rss["end_mb"] = server.memory_info().rss / 2**20

        cpu0 = server.cpu_times()
        me0 = psutil.Process().cpu_times()
        asyncio.run(main())
        cpu1 = server.cpu_times()
        me1 = psutil.Process().cpu_times()
        metrics = scrape(base)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    summaries = [r.summary(duration_s) for r in records]
    normal = [s for s in summaries if not s["slow"]]
    return {
        "setup": {"clients": clients, "slow_clients": slow, "duration_s": duration_s, "warmup_s": warmup_s,
                  "source": f"demo {width}x{height} @ {fps:g} fps (pre-rendered {cache_frames} frames)",
                  "engine": engine, "k": k, "slow_delay_s": slow_delay_s, "cpus": os.cpu_count(),
                  "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "clients": summaries,
        "normal_min_fps": min(s["fps"] for s in normal) if normal else None,
        "normal_max_p99_ms": max(s["latency_p99_ms"] for s in normal) if normal else None,
        "normal_max_p50_ms": max(s["latency_p50_ms"] for s in normal) if normal else None,
        "rss": {**rss, "max_mb": max(samples) if samples else None,
                "growth_mb": rss.get("end_mb", np.nan) - rss.get("after_warmup_mb", np.nan)},
        "server_cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        "clients_cpu_s": (me1.user + me1.system) - (me0.user + me0.system),
        "server_metrics": metrics,
    }


def format_report(result: dict) -> str:
    s = result["setup"]
    lines = [f"Setup: {s['clients']} clients ({s['slow_clients']} slow: reads one frame per {s['slow_delay_s']} s), "
             f"{s['duration_s']:g} s after {s['warmup_s']:g} s warm-up, source {s['source']}, engine {s['engine']}, "
             f"K={s['k']}, {s['cpus']} CPUs, load average before {s['loadavg_before'][0]:.2f}, "
             f"after {s['loadavg_after'][0]:.2f}.", "",
             "| client | fps | latency p50 (ms) | p99 (ms) | max (ms) | skipped | fused | Mbit/s |",
             "|---|---|---|---|---|---|---|---|"]
    for c in result["clients"]:
        lines.append(f"| {c['client']}{' (slow)' if c['slow'] else ''} | {c['fps']:.1f} | {c['latency_p50_ms']:.1f} | "
                     f"{c['latency_p99_ms']:.1f} | {c['latency_max_ms']:.1f} | {c['skipped']} | "
                     f"{100 * c['fused_share']:.0f} % | {c['mbit_s']:.0f} |")
    r = result["rss"]
    lines += ["", f"Server RSS: {r.get('after_warmup_mb', float('nan')):.0f} MB after warm-up, "
                  f"{r.get('end_mb', float('nan')):.0f} MB at the end (growth {r['growth_mb']:+.1f} MB, "
                  f"max {r.get('max_mb') or float('nan'):.0f} MB); CPU over the run: server {result['server_cpu_s']:.1f} s, "
                  f"the {s['clients']} clients (one process) {result['clients_cpu_s']:.1f} s.",
              f"Server metrics: {json.dumps({k: round(v, 2) for k, v in result['server_metrics'].items()})}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--slow", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--engine", default="classical")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--cache-frames", type=int, default=120,
                        help="demo frames pre-rendered and looped (default 120: one seamless loop of the sweep, "
                             "the instrument and the eye; fewer would make the eye jump at every loop)")
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument("server_args", nargs="*", help="extra 'surgifuse serve' options (after --)")
    args = parser.parse_args(argv)
    result = run_load_test(clients=args.clients, slow=args.slow, duration_s=args.duration, warmup_s=args.warmup,
                           width=args.width, height=args.height, fps=args.fps, engine=args.engine, k=args.k,
                           cache_frames=args.cache_frames, server_args=args.server_args)
    print(format_report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
