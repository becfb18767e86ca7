"""The benchmark's outputs: a text table, a JSON document (with a schema check) and a PNG of the
per-stage latency distributions."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from surgifuse.errors import InputError

SCHEMA = "surgifuse-bench/1"
_SUMMARY_KEYS = ("n", "mean", "min", "p50", "p95", "p99", "max")
_NUMBER = (int, float)

# key -> required type(s), for the top level, a run and a comparison.
_TOP = {"schema": str, "mode": str, "created": str, "command": str, "config": dict, "machine": dict,
        "runs": list, "comparisons": list, "skipped": list}
_RUN = {"engine": str, "device": str, "stages": dict, "samples_ms": dict, "throughput_fps": _NUMBER,
        "cpu_percent": _NUMBER, "peak_rss_mb": _NUMBER}
_COMPARISON = {"name": str, "baseline": str, "candidate": str, "baseline_p50_ms": _NUMBER,
               "candidate_p50_ms": _NUMBER, "speedup": _NUMBER, "note": str}
_MACHINE = {"cpu_model": str, "cpu_logical_cores": int, "gpus": list, "libraries": dict}


def validate_report(report: Any) -> None:
    """Check a bench JSON document; ``ValueError`` listing every problem found.

    Required: the top-level keys of ``SCHEMA`` with their types; per run, the run keys and, per
    stage, ``n, mean, min, p50, p95, p99, max`` as finite numbers with ``p50 <= p95 <= p99 <= max``
    and ``n`` equal to the number of raw samples; a ``total`` stage; per comparison, both sides'
    p50 and a positive ``speedup``.
    """
    problems: list[str] = []
    if not isinstance(report, dict):
        raise InputError(f"a bench report is a JSON object, got {type(report).__name__}")
    _check_keys(report, _TOP, "report", problems)
    if report.get("schema") not in (None, SCHEMA) and isinstance(report.get("schema"), str):
        problems.append(f"report.schema is {report['schema']!r}, expected {SCHEMA!r}")
    if isinstance(report.get("machine"), dict):
        _check_keys(report["machine"], _MACHINE, "machine", problems)
    runs = report.get("runs")
    if isinstance(runs, list):
        for i, run in enumerate(runs):
            _check_run(run, f"runs[{i}]", problems)
    comparisons = report.get("comparisons")
    if isinstance(comparisons, list):
        for i, comp in enumerate(comparisons):
            where = f"comparisons[{i}]"
            if not isinstance(comp, dict):
                problems.append(f"{where} is {type(comp).__name__}, not an object")
                continue
            _check_keys(comp, _COMPARISON, where, problems)
            speedup = comp.get("speedup")
            if isinstance(speedup, _NUMBER) and not (math.isfinite(speedup) and speedup > 0):
                problems.append(f"{where}.speedup must be a positive finite number, got {speedup}")
    skipped = report.get("skipped")
    if isinstance(skipped, list):
        for i, item in enumerate(skipped):
            if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("reason"), str)):
                problems.append(f"skipped[{i}] must be an object with string 'name' and 'reason'")
    if problems:
        raise InputError("invalid bench report: " + "; ".join(problems))


def _check_keys(obj: dict, spec: dict, where: str, problems: list[str]) -> None:
    for key, kind in spec.items():
        if key not in obj:
            problems.append(f"{where} lacks {key!r}")
        elif not isinstance(obj[key], kind) or isinstance(obj[key], bool):
            problems.append(f"{where}.{key} has type {type(obj[key]).__name__}")


def _check_run(run: Any, where: str, problems: list[str]) -> None:
    if not isinstance(run, dict):
        problems.append(f"{where} is {type(run).__name__}, not an object")
        return
    _check_keys(run, _RUN, where, problems)
    stages, samples = run.get("stages"), run.get("samples_ms")
    if not isinstance(stages, dict) or not isinstance(samples, dict):
        return
    if "total" not in stages:
        problems.append(f"{where}.stages lacks 'total'")
    for name, summary in stages.items():
        at = f"{where}.stages.{name}"
        if not isinstance(summary, dict):
            problems.append(f"{at} is not an object")
            continue
        bad = [k for k in _SUMMARY_KEYS if not isinstance(summary.get(k), _NUMBER) or isinstance(summary.get(k), bool)
               or not math.isfinite(summary[k])]
        if bad:
            problems.append(f"{at} lacks finite numbers for {', '.join(bad)}")
            continue
        if not summary["min"] <= summary["p50"] <= summary["p95"] <= summary["p99"] <= summary["max"]:
            problems.append(f"{at}: need min <= p50 <= p95 <= p99 <= max, got "
                            + ", ".join(f"{k}={summary[k]:.4g}" for k in ("min", "p50", "p95", "p99", "max")))
        raw = samples.get(name)
        if not isinstance(raw, list) or len(raw) != summary["n"]:
            problems.append(f"{at}.n is {summary['n']} but samples_ms.{name} has "
                            f"{len(raw) if isinstance(raw, list) else 'no'} values")


def write_json(report: dict, path: str | Path) -> Path:
    """Validate ``report`` and write it as indented JSON."""
    validate_report(report)
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"folder {path.parent} does not exist (for --json {path})")
    path.write_text(json.dumps(report, indent=1, sort_keys=False) + "\n")
    return path


def format_table(report: dict) -> str:
    """The human-readable summary: per run a stage table, then the comparisons and skips."""
    lines = []
    cfg = report.get("config", {})
    machine = report.get("machine", {})
    gpus = ", ".join(g["name"] for g in machine.get("gpus", [])) or "none"
    lines.append(f"machine: {machine.get('cpu_model', '?')}, {machine.get('cpu_logical_cores', '?')} logical cores, GPU: {gpus}")
    if report.get("mode") == "pipeline":
        lines.append(f"size {cfg.get('width')}x{cfg.get('height')}, K={cfg.get('k')}, {cfg.get('frames')} frames after "
                     f"{cfg.get('warmup')} warm-up, source {cfg.get('source')}, align {'on' if cfg.get('align') else 'off'}")
    elif report.get("mode") == "e2e":
        lines.append(f"stream {cfg.get('url')} (view {cfg.get('view')}) for {cfg.get('duration_s')} s")
    for run in report.get("runs", []):
        lines.append("")
        if report.get("mode") == "e2e":
            lines.append(f"server engine {run['engine']}: {run.get('frames_received')} frames received "
                         f"({run['throughput_fps']:.1f}/s), {run.get('frames_skipped')} skipped, "
                         f"{run.get('frames_unfused')} unfused; clock offset {run.get('clock_offset_ms', 0):.1f} ms "
                         f"(round trip {run.get('clock_rtt_ms', 0):.1f} ms)")
        else:
            lines.append(f"engine {run['engine']} on {run['device']}: {run['throughput_fps']:.1f} frames/s, "
                         f"CPU {run['cpu_percent']:.0f}% of one core, peak RSS {run['peak_rss_mb']:.0f} MB")
        rows = list(run["stages"].items())
        if run.get("total_fused_only"):
            rows.append(("total, fused frames only", run["total_fused_only"]))
        width = max(12, *(len(name) + 2 for name, _ in rows))
        lines.append(f"  {'stage':<{width}}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}{'mean':>9}   (ms)")
        for name, s in rows:
            lines.append(f"  {name:<{width}}{s['p50']:>9.2f}{s['p95']:>9.2f}{s['p99']:>9.2f}{s['max']:>9.2f}{s['mean']:>9.2f}")
    if report.get("comparisons"):
        lines.append("")
        lines.append("comparisons (speedup = baseline p50 / candidate p50; > 1: candidate faster)")
        for c in report["comparisons"]:
            lines.append(f"  {c['name']}: {c['candidate']} {c['candidate_p50_ms']:.2f} ms vs {c['baseline']} "
                         f"{c['baseline_p50_ms']:.2f} ms -> x{c['speedup']:.2f}" + (f"  [{c['note']}]" if c.get("note") else ""))
    for item in report.get("skipped", []):
        lines.append(f"skipped {item['name']}: {item['reason']}")
    return "\n".join(lines)


def plot_report(report: dict, path: str | Path) -> Path:
    """A PNG with one panel per run: the latency distribution of each stage (box: p25-p75, whiskers
    to min and max, marks at p95 and p99), log time axis since stages differ by orders of magnitude."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .stats import percentile

    runs = report.get("runs", [])
    if not runs:
        raise InputError("nothing to plot: the report has no runs")
    path = Path(path)
    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 1.2 + 0.45 * max(len(r["stages"]) for r in runs) * len(runs) + 0.6 * len(runs)),
                             squeeze=False)
    for ax, run in zip(axes[:, 0], runs):
        names = list(run["stages"])
        data = [[max(v, 1e-4) for v in run["samples_ms"][n]] for n in names]
        ax.boxplot(data, orientation="horizontal", whis=(0, 100), widths=0.6, tick_labels=names)
        for y, values in enumerate(data, start=1):
            ax.plot([percentile(values, 95)], [y], "v", color="tab:orange", ms=5)
            ax.plot([percentile(values, 99)], [y], "x", color="tab:red", ms=6)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_xlabel("ms per frame (log)")
        cfg = report.get("config", {})
        ax.set_title(f"{run['engine']} on {run['device']}, {cfg.get('width')}x{cfg.get('height')} K={cfg.get('k')}: "
                     f"{run['throughput_fps']:.1f} fps   (v p95, x p99)", fontsize=9)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def format_markdown(report: dict) -> str:
    """The same figures as ``format_table`` as Markdown tables (for docs/benchmarks.md)."""
    out = []
    for run in report.get("runs", []):
        if report.get("mode") == "e2e":
            out.append(f"**{run['engine']} (server)**: {run.get('frames_received')} frames received, "
                       f"{run.get('frames_skipped')} skipped, {run.get('frames_unfused')} unfused")
        else:
            out.append(f"**{run['engine']} on {run['device']}**: {run['throughput_fps']:.1f} frames/s, "
                       f"CPU {run['cpu_percent']:.0f}% of one core, peak RSS {run['peak_rss_mb']:.0f} MB")
        out.append("")
        out.append("| stage | p50 ms | p95 ms | p99 ms | max ms |")
        out.append("|---|---:|---:|---:|---:|")
        rows = list(run["stages"].items())
        if run.get("total_fused_only"):
            rows.append(("total, fused frames only", run["total_fused_only"]))
        for name, s in rows:
            out.append(f"| {name} | {s['p50']:.2f} | {s['p95']:.2f} | {s['p99']:.2f} | {s['max']:.2f} |")
        out.append("")
    if report.get("comparisons"):
        out.append("| comparison | candidate p50 ms | baseline p50 ms | speedup | note |")
        out.append("|---|---:|---:|---:|---|")
        for c in report["comparisons"]:
            out.append(f"| {c['name']} ({c['candidate']} vs {c['baseline']}) | {c['candidate_p50_ms']:.2f} | "
                       f"{c['baseline_p50_ms']:.2f} | x{c['speedup']:.2f} | {c.get('note', '')} |")
        out.append("")
    for item in report.get("skipped", []):
        out.append(f"- skipped {item['name']}: {item['reason']}")
    return "\n".join(out).rstrip() + "\n"
