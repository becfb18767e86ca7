"""Check a running SurgiFuse service from outside its container (``scripts/image test``).

``python scripts/image_check.py http://127.0.0.1:PORT [--started EPOCH]`` with ``SURGIFUSE_TOKEN``
in the environment: waits until ``/healthz`` answers, then reads ``/ws/stream`` until a frame fused
from the full stack arrives (binary message: 4-byte big-endian header length, JSON header, JPEG;
docs/api.md), checks that the stream refuses a wrong token and that ``/metrics`` counts the
published frames, and prints how long each took since ``--started`` (the container's start).
Needs only ``websockets``. Exit 1 with the reason on the first failure.

It also checks a deployment through its proxy: ``https://or1.example/ --cafile hospital-ca.pem``.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import struct
import sys
import time
import urllib.error
import urllib.request

from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect


def fail(message: str) -> None:
    print(f"FAILED: {message}", file=sys.stderr)
    raise SystemExit(1)


def wait_for_health(base: str, deadline: float, tls: ssl.SSLContext | None) -> None:
    last = "no answer"
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2, context=tls) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(0.1)
    fail(f"/healthz did not answer 200 in time (last: {last})")


def first_fused_frame(url: str, deadline: float, tls: ssl.SSLContext | None) -> tuple[dict, bytes, dict]:
    """Frames until the first one fused from the full stack (k = K of the hello message): its header
    and JPEG, and when (Unix time) the first frame and the first fused frame of any k came."""
    seen: dict[str, float] = {}
    full_k = None
    with connect(url, open_timeout=10, max_size=64 * 2**20, ssl=tls) as ws:
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                fail(f"no frame fused from {full_k} frames on /ws/stream in time (seen: {sorted(seen) or 'no frame'})")
            message = ws.recv(timeout=remaining)
            if isinstance(message, str):  # control messages: the hello names the settings
                control = json.loads(message)
                if control.get("type") == "hello":
                    full_k = control["settings"]["k"]
                continue
            (n,) = struct.unpack(">I", message[:4])
            header = json.loads(message[4:4 + n].decode("utf-8"))
            seen.setdefault("frame", time.time())
            if header.get("fused"):
                seen.setdefault("fused", time.time())
                if header["k"] == full_k:
                    return header, message[4 + n:], seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the service's address, e.g. http://127.0.0.1:8000")
    parser.add_argument("--started", type=float, default=time.time(), help="container start, Unix time")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds from --started (default 180)")
    parser.add_argument("--cafile", help="certificate authority of an https address (default: the system's)")
    args = parser.parse_args()
    base = args.base.rstrip("/")
    tls = ssl.create_default_context(cafile=args.cafile) if base.startswith("https://") else None
    token = os.environ.get("SURGIFUSE_TOKEN", "")
    deadline = args.started + args.timeout

    wait_for_health(base, deadline, tls)
    print(f"  /healthz 200 {time.time() - args.started:.1f} s after the container started")

    ws = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws/stream"
    try:
        with connect(ws + "?token=wrong-" + token, open_timeout=10, ssl=tls):
            fail("/ws/stream accepted a wrong token")
    except InvalidStatus as exc:
        print(f"  /ws/stream refuses a wrong token (HTTP {exc.response.status_code})")

    header, jpeg, seen = first_fused_frame(ws + "?token=" + token, deadline, tls)
    arrived = time.time() - args.started
    if not (jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"):
        fail(f"the frame's image is not a JPEG (starts {jpeg[:4].hex()})")
    print(f"  first frame {seen['frame'] - args.started:.1f} s, first fused frame {seen['fused'] - args.started:.1f} s, "
          f"first fused from the full stack (k={header['k']}) {arrived:.1f} s after the container started")
    print(f"  that frame: seq {header['seq']}, engine {header['engine']}, view {header['view']}, "
          f"{header['width']}x{header['height']}, {len(jpeg)} bytes of JPEG, fuse {header['timings'].get('fuse', 0):.1f} ms")

    with urllib.request.urlopen(base + "/metrics", timeout=5, context=tls) as response:
        text = response.read().decode()
    published = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("surgifuse_frames_published_total{"))
    if published < 1:
        fail("/metrics counts no published frame")
    print(f"  /metrics: {published:.0f} frames published")


if __name__ == "__main__":
    main()
