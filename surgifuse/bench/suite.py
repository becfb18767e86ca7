"""One ``surgifuse bench`` invocation: a streaming run per engine, the comparisons, the report dict."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import sys
from typing import Callable, Sequence

from surgifuse.errors import InputError

from . import compare
from .machine import machine_info
from .report import SCHEMA
from .runner import BenchConfig, RenderedSweep, create_bench_engine, open_source, run_streaming, set_threads

#: What ``--engine all`` runs (msmfm is the offline ground-truth method, not a live engine).
LIVE_ENGINES = ("classical", "fn", "autoencoder")


def new_report(mode: str, config: dict, *, command: str | None = None) -> dict:
    """An empty report of ``SCHEMA`` with the machine filled in."""
    return {
        "schema": SCHEMA,
        "mode": mode,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command if command is not None else " ".join(["surgifuse"] + sys.argv[1:]),
        "config": config,
        "machine": machine_info(),
        "runs": [],
        "comparisons": [],
        "skipped": [],
    }


def run_pipeline_bench(config: BenchConfig, engines: Sequence[str], *, compare_repeats: int = 20,
                       comparisons: bool = True, progress: Callable[[int], None] | None = None,
                       command: str | None = None) -> dict:
    """Streaming runs of ``engines`` under ``config``, then the ratio comparisons.

    An engine that cannot be created here (a learned engine without its exported model) is listed
    under ``skipped`` with the reason instead of failing the whole run. ``--device cuda`` without a
    device fails at once with ``bench.cuda.CudaUnavailableError``.
    """
    if not engines:
        raise InputError("no engine to benchmark")
    if compare_repeats < 1:
        raise InputError(f"compare_repeats must be >= 1, got {compare_repeats}")
    set_threads(config.threads)
    report = new_report("pipeline", {**config.as_dict(), "engine": list(engines)}, command=command)
    if config.device == "cuda":
        from surgifuse.bench.cuda import require_cuda

        require_cuda()
    # One renderer for everyone (seconds to build at 1080p); the comparisons fuse its first K frames.
    renderer = RenderedSweep(width=config.width, height=config.height, k=config.k, seed=config.seed)
    sweep_frames = [frame for frame, _focus in renderer.frames(config.k)]
    if comparisons:
        # Before any engine exists, so that no other thread pool (ONNX Runtime's workers spin
        # after each run) competes with the two FMBs for the cores while they are timed.
        _add_fmb_comparisons(report, sweep_frames[0], repeats=compare_repeats)
    for name in engines:
        try:
            engine = create_bench_engine(name, device=config.device, threads=config.threads)
        except (FileNotFoundError, ImportError, ValueError) as exc:
            report["skipped"].append({"name": f"engine {name}", "reason": str(exc)})
            continue
        run = run_streaming(dataclasses.replace(config, engine=name), engine=engine,
                            source=open_source(config, renderer), progress=progress)
        report["runs"].append(run)
        if comparisons:
            report["comparisons"].append(compare.compare_streaming_vs_whole(engine, sweep_frames, repeats=compare_repeats))
        del engine  # free its sessions and threads before the next engine is timed
    if comparisons:
        report["comparisons"].extend(compare.compare_engines_to_classical(report["runs"]))
    return report


def _add_fmb_comparisons(report: dict, frame, *, repeats: int) -> None:
    try:
        from surgifuse import _core

        _core.focus_measure  # noqa: B018 - probe: absent until the core is built
    except (ImportError, AttributeError) as exc:
        report["skipped"].append({"name": "FMB: C++ vs OpenCV composition", "reason": f"C++ core unavailable: {exc}"})
        return
    report["comparisons"].append(compare.compare_fmb_core_vs_opencv(frame, repeats=repeats))
    from surgifuse.bench.cuda import CudaUnavailableError

    try:
        report["comparisons"].append(compare.compare_fmb_gpu_vs_cpu(frame, repeats=repeats))
    except (CudaUnavailableError, AttributeError) as exc:
        report["skipped"].append({"name": "FMB: CUDA vs CPU", "reason": str(exc)})
