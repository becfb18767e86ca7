"""``surgifuse bench``: per-stage latency (p50/p95/p99/max), throughput, CPU and memory of the
streaming pipeline, the ratio comparisons, or end-to-end latency against a running server."""

from __future__ import annotations

import argparse
import sys

from surgifuse.errors import InputError
from surgifuse.progress import progress_bar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", default="classical", choices=["classical", "fn", "autoencoder", "msmfm", "all"],
                        help="engine to time; 'all' runs classical, fn and autoencoder (default: classical)")
    parser.add_argument("--size", default="1080p",
                        help="frame size: 512, 720p, 1080p, 4k or WIDTHxHEIGHT such as 64x64 (default: 1080p)")
    parser.add_argument("--k", type=int, default=5, help="focal stack size: frames fused per update (default: 5)")
    parser.add_argument("--frames", type=int, default=100, help="timed frames per engine (default: 100)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed frames first, at least K (default: 10, or K when K is larger)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where fusion runs (default: cpu)")
    parser.add_argument("--source", default="decode", choices=["decode", "render"],
                        help="first stage: decode a JPEG of a sweep frame (a camera stream's cost) or render one "
                             "with the synthetic renderer (default: decode)")
    parser.add_argument("--no-align", dest="align", action="store_false",
                        help="leave out the alignment stage (default: timed, as the service runs it)")
    parser.add_argument("--no-motion-guard", dest="motion_guard", action="store_false",
                        help="leave out the motion guard stage (default: timed, as the service runs it)")
    parser.add_argument("--clients", type=int, default=4,
                        help="client slots the publish stage fans out to (default: 4)")
    parser.add_argument("--jpeg-quality", type=int, default=80, help="JPEG quality of the encode stage (default: 80)")
    parser.add_argument("--threads", type=int, default=0,
                        help="worker threads for the C++ core, OpenCV and ONNX Runtime (default 0: their defaults)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per side of each comparison (default: 20)")
    parser.add_argument("--no-compare", dest="compare", action="store_false",
                        help="skip the ratio comparisons (default: run them)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic sweep (default: 0)")
    parser.add_argument("--json", metavar="OUT",
                        help="write the full report (schema surgifuse-bench/1) here (default: not written)")
    parser.add_argument("--plot", metavar="OUT.png",
                        help="write a PNG of the per-stage latency distributions here (default: not written)")
    parser.add_argument("--markdown", metavar="OUT.md",
                        help="write the tables as Markdown here, for the docs (default: not written)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress on stderr (default: a bar on a terminal, otherwise a line every 10 s)")
    e2e = parser.add_argument_group("end-to-end mode (against a running `surgifuse serve`)")
    e2e.add_argument("--e2e", metavar="URL",
                     help="websocket URL of the stream, e.g. ws://127.0.0.1:8000/ws/stream (default: none, the "
                          "pipeline mode)")
    e2e.add_argument("--duration", type=float, default=10.0, help="seconds to receive frames (default: 10)")
    e2e.add_argument("--token", help="access token, if the server requires one (default: none)")
    e2e.add_argument("--view", default="fused", choices=["fused", "raw", "depth"],
                     help="stream view to request (default: fused)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from surgifuse.bench.report import format_markdown, format_table, plot_report, write_json

    # Every argument (and the device) is checked before any progress bar or work starts.
    _check_outputs(args)
    if args.e2e:
        _check_e2e(args)
        report = _run_e2e(args)
    else:
        config, engines = _check_pipeline(args)
        report = _run_pipeline(args, config, engines)
    print(format_table(report))
    if args.json:
        write_json(report, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        plot_report(report, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.markdown:
        Path(args.markdown).write_text(format_markdown(report))
        print(f"wrote {args.markdown}", file=sys.stderr)
    return 0


def _check_outputs(args) -> None:
    from pathlib import Path

    for flag, value in (("--json", args.json), ("--plot", args.plot), ("--markdown", args.markdown)):
        if value and not Path(value).resolve().parent.is_dir():
            raise FileNotFoundError(f"{flag} {value}: folder {Path(value).resolve().parent} does not exist")
    if args.plot and not str(args.plot).lower().endswith(".png"):
        raise InputError(f"--plot {args.plot}: the plot is a PNG, name it *.png", field="--plot", file=args.plot)


def _check_e2e(args) -> None:
    from surgifuse.bench.e2e import stream_url

    if not args.duration > 0:
        raise InputError(f"--duration must be > 0, got {args.duration}", field="--duration")
    stream_url(args.e2e, args.view)  # a ws:// or wss:// URL


def _check_pipeline(args):
    """``(BenchConfig, engine names)`` after checking every pipeline option and, for
    ``--device cuda``, that a device is there."""
    from surgifuse.bench.cuda import CudaUnavailableError, require_cuda
    from surgifuse.bench.runner import BenchConfig
    from surgifuse.bench.sizes import parse_size
    from surgifuse.bench.suite import LIVE_ENGINES

    width, height = parse_size(args.size)
    if args.k < 1:
        raise InputError(f"--k must be >= 1, got {args.k}", field="--k")
    warmup = max(10, args.k) if args.warmup is None else args.warmup
    if warmup < args.k:
        raise InputError(f"--warmup must be at least K (--k {args.k}): the buffer fills first; got {warmup}",
                         field="--warmup", allowed=f">= {args.k}")
    if args.repeats < 1:
        raise InputError(f"--repeats must be >= 1, got {args.repeats}", field="--repeats")
    engines = list(LIVE_ENGINES) if args.engine == "all" else [args.engine]
    config = BenchConfig(engine=engines[0], width=width, height=height, k=args.k, frames=args.frames,
                         warmup=warmup, device=args.device, source=args.source, align=args.align,
                         motion_guard=args.motion_guard,
                         jpeg_quality=args.jpeg_quality, clients=args.clients, seed=args.seed, threads=args.threads)
    if config.device == "cuda":
        try:
            require_cuda()
        except CudaUnavailableError as exc:
            raise InputError(f"--device cuda: {exc}", field="--device") from None
    return config, engines


def _run_pipeline(args, config, engines) -> dict:
    from surgifuse.bench.suite import run_pipeline_bench

    bar = progress_bar(total=config.frames * len(engines), desc=f"bench {args.size}", unit="frame",
                       enabled=args.progress, leave=False)
    try:
        return run_pipeline_bench(config, engines, compare_repeats=args.repeats, comparisons=args.compare,
                                  progress=bar.update)
    finally:
        bar.close()


def _run_e2e(args) -> dict:
    from surgifuse.bench.e2e import run_e2e

    bar = progress_bar(total=round(args.duration), desc="e2e", unit="s", enabled=args.progress, leave=False)
    try:
        return run_e2e(args.e2e, duration=args.duration, token=args.token, view=args.view, progress=bar.update)
    finally:
        bar.close()
