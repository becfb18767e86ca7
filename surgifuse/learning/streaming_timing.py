"""Streaming update time of a learned engine: one new frame = one ``prepare_frame`` (encoder graph)
plus one ``fuse_prepared`` on the K cached entries (fuse + refine graph), as the live buffer runs it.

    python -m surgifuse.learning.streaming_timing --engine fn --k 5 --threads 2 --sizes 512x512,1280x720,1920x1080

Uses ONNX Runtime only (no torch). Reports the median of ``--repeats`` updates after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def time_updates(engine, *, height: int, width: int, k: int, repeats: int, seed: int = 0) -> dict:
    """Median milliseconds of (prepare one frame, fuse K prepared) over ``repeats`` updates."""
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(k)]
    prepared = [engine.prepare_frame(f) for f in frames]
    engine.fuse_prepared(frames, prepared)  # warm-up
    prep, fuse = [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        prepared[i % k] = engine.prepare_frame(frames[i % k])
        t1 = time.perf_counter()
        engine.fuse_prepared(frames, prepared)
        t2 = time.perf_counter()
        prep.append((t1 - t0) * 1e3)
        fuse.append((t2 - t1) * 1e3)
    return {
        "size": f"{width}x{height}", "k": k, "prepare_ms": float(np.median(prep)), "fuse_ms": float(np.median(fuse)),
        "update_ms": float(np.median(np.add(prep, fuse))),
    }


def main(argv=None) -> int:
    from surgifuse.engines import create_engine

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", default="fn")
    p.add_argument("--model", default=None, help="model name or sidecar path (default: the engine's)")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sizes", default="512x512,1280x720,1920x1080")
    args = p.parse_args(argv)
    options = {"threads": args.threads, "device": "cpu"}
    if args.model:
        options["model"] = args.model
    engine = create_engine(args.engine, **options)
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.lower().split("x"))
        print(json.dumps(time_updates(engine, height=h, width=w, k=args.k, repeats=args.repeats)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
