"""Depth and instrument-height figures for docs/depth.md: depth from focus before and after
``surgifuse.depth.refine_depth``, and the instrument tip's height above the retina
(``surgifuse.instrument.measure_instrument``), against the generators' truth.

Run: .venv/bin/python scripts/depth_report.py [--seeds 9100-9123] [--validation [--focus-stack BINARY]] > report.md

Material (never used while the filter and the detector were tuned; tuning: seeds 3000-3011, 512x512,
K=5, mixed scenes, instrument on, ``--tune``):
* ``surgifuse.synth.generate_stack``: 512x512, K=5, mixed scenes (fundus / photographs), an
  instrument in every stack, noise on; and 640x480, K=7, fundus; and stacks without an instrument
  (for detection);
* with ``--validation``, the independent generator ``surgifuse.validation`` where it is installed
  (its depth is in focus steps already).

Depth is compared in focus steps (the truth in mm interpolated over the focus positions, clamped to
[0, K-1]: a depth from focus says nothing beyond the first and last focus). Columns: Spearman's
rank correlation and the mean absolute error over the image less an 8-px border, the mean error
within 5 px of the instrument's edges, and the cost at 1080p (refine: reduce, filter and enlarge
back; "work size": without the enlargement, as the live read-out uses it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from surgifuse.depth import refine_depth
from surgifuse.engines import create_engine
from surgifuse.evaluation.depth import depth_accuracy, depth_in_steps
from surgifuse.focus_curve import depth_from_focus_curve
from surgifuse.instrument import measure_instrument
from surgifuse.synth import generate_stack


def _seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def _synth_cases(seeds, **options):
    for seed in seeds:
        s = generate_stack(seed, **options)
        truth = s.meta.get("instrument_truth")
        height = None
        if truth is not None:
            height = (depth_in_steps(truth["retina_depth_under_tip_mm"], s.focus_positions, clamp=False)
                      - depth_in_steps(truth["tip_depth_mm"], s.focus_positions, clamp=False))
        yield {"seed": seed, "frames": s.frames, "truth": depth_in_steps(s.depth, s.focus_positions),
               "mask": s.instrument_mask, "instrument": truth is not None, "height": height,
               "tip": None if truth is None else truth["tip_xy"], "kind": s.meta["scene_kind"],
               "step_mm": float(np.mean(np.diff(s.focus_positions)))}


def _validation_cases(seeds, **options):
    from surgifuse.validation import generate_validation_stack

    for seed in seeds:
        s = generate_validation_stack(seed, **options)
        k = len(s.frames)
        tip, height = _validation_tip_truth(s)
        yield {"seed": seed, "frames": s.frames, "truth": np.clip(s.depth, 0, k - 1).astype(np.float32),
               "mask": s.foreground_mask, "instrument": bool(s.meta.get("instrument")), "height": height, "tip": tip,
               "kind": f"validation {s.meta.get('scene')}", "step_mm": None}


def _validation_tip_truth(stack) -> tuple[list[float] | None, float | None]:
    """The instrument's tip (visible px) and its height above the background (focus steps) in a
    stack of the independent generator, rebuilt from its meta: the tip from the instrument's
    parameters (canvas px less the generator's margin), the background beneath it from the
    surface's parameters (its quadric, tilt and bumps). (None, None) when that is not possible."""
    import math

    try:
        from surgifuse.validation import camera, scenes
        from surgifuse.validation import stack as vstack

        meta = stack.meta
        inst = next(o for o in meta["scene_params"]["objects"] if o["kind"] == "instrument")
        surface = meta["scene_params"]["background"]["surface"]
        h, w, k = meta["height"], meta["width"], meta["k"]
        blur = meta["lens"]["blur_per_step_px"]
        pad = math.ceil(blur * (k - 1 + scenes.NEAR_OVERHANG + 0.5)) + 2
        margin = pad + max(camera.warp_margin(h, w, meta["breathing"], meta["jitter"]),
                           math.ceil(vstack.WARP_MARGIN_FRACTION * max(h, w)) + 2)
        tip = [inst["tip_px"][0] - margin, inst["tip_px"][1] - margin]
        half = w / 2.0

        def raw(x, y):
            xs, ys = (x - (w - 1) / 2.0) / half, (y - (h - 1) / 2.0) / half
            (a, b, c), (tx, ty) = surface["quadric"], surface["tilt"]
            z = a * xs * xs + b * ys * ys + c * xs * ys + tx * xs + ty * ys
            for amp, bx, by, sigma in surface["bumps"]:
                z = z + amp * np.exp(-((xs - bx) ** 2 + (ys - by) ** 2) / (2 * sigma * sigma))
            return z

        grid = raw(np.arange(w, dtype=np.float64)[None, :], np.arange(h, dtype=np.float64)[:, None])
        lo, hi = float(grid.min()), float(grid.max())
        near, far = surface["depth_range"]
        background = near + (float(raw(tip[0], tip[1])) - lo) / max(hi - lo, 1e-6) * (far - near)
        background = min(max(background, near - scenes.OBJECT_GAP / 2), far + 0.5)
        return tip, background - inst["tip_depth"]
    except (ImportError, KeyError, StopIteration, AttributeError, TypeError):
        return None, None


#: The depth maps compared: the engine's depth index and the focus curve's (``surgifuse.focus_curve``),
#: each as measured and refined; the instrument is measured from each source's measured depth.
DEPTHS = (("raw", "depth from focus, the engine's index (raw)"), ("refined", "the engine's index, refined"),
          ("curve", "the focus curve's depth (raw)"), ("curve_refined", "**the focus curve's depth, refined** (`fuse --depth`)"))
SOURCES = ("engine", "curve")


def focus_stack_depth(binary: str, frames) -> np.ndarray:
    """focus-stack's depth map (``--depthmap``) of ``frames`` in frames 0..K-1 (NaN where it has none).

    Its PNG holds ``(depth + 1) * 255 / K`` for K < 255 (value 0: unknown; its task_depthmap.cc);
    run with ``--align-keep-size --nocrop`` so that the map has the frames' size."""
    import subprocess
    import tempfile

    from surgifuse.imageio import read_image, write_image

    k = len(frames)
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for i, f in enumerate(frames):
            names.append(os.path.join(tmp, f"frame_{i:03d}.png"))
            write_image(names[-1], f)
        out = os.path.join(tmp, "depth.png")
        subprocess.run([binary, f"--output={os.path.join(tmp, 'fused.png')}", f"--depthmap={out}", "--align-keep-size",
                        "--nocrop", *names], check=True, capture_output=True, timeout=600)
        value = read_image(out).astype(np.float32)
    if value.ndim == 3:
        value = value[..., 0]
    depth = value * k / 255.0 - 1.0
    depth[value == 0] = np.nan
    return depth


def evaluate(cases, engine, focus_stack: str | None = None) -> dict:
    rows = {name: [] for name, _ in DEPTHS}
    if focus_stack:
        rows["focus_stack"] = []
    instrument = {src: {"heights": [], "detections": [], "tips": [], "height_kinds": []} for src in SOURCES}
    kinds = []
    for case in cases:
        kinds.append(case["kind"])
        result = engine.fuse(case["frames"])
        image, depth, conf = result.image, result.depth_index, result.confidence
        curve, curve_conf = depth_from_focus_curve(case["frames"])
        maps = {"raw": depth, "refined": refine_depth(depth, conf, image)[0],
                "curve": curve, "curve_refined": refine_depth(curve, curve_conf, image)[0]}
        if focus_stack:
            theirs = focus_stack_depth(focus_stack, case["frames"])
            # unknown pixels (value 0) take the middle of the stack, as a depth without data would
            maps["focus_stack"] = np.nan_to_num(theirs, nan=(len(case["frames"]) - 1) / 2.0)
        for name, estimate in maps.items():
            rows[name].append(depth_accuracy(estimate, case["truth"], instrument_mask=case["mask"]))
        for src, (d, c) in (("engine", (depth, conf)), ("curve", (curve, curve_conf))):
            out = instrument[src]
            reading = measure_instrument(d, image, confidence=c, k=len(case["frames"]))
            if case["instrument"] is not None:
                out["detections"].append((case["instrument"], reading.present))
            if case["height"] is not None and reading.present:
                out["heights"].append(reading.height_steps - case["height"])
                out["height_kinds"].append(case["kind"])
                out["tips"].append(float(np.hypot(reading.tip_xy[0] - case["tip"][0], reading.tip_xy[1] - case["tip"][1])))
    return {"rows": rows, "instrument": instrument, "kinds": kinds}


def _mean(values) -> float:
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def timing_1080p(engine, repeats: int = 30) -> dict:
    """Median ms of refine_depth (full size and work size) and measure_instrument at 1920x1080, on a
    generated stack's depth and image enlarged to 1080p."""
    s = generate_stack(3000, height=270, width=480, k=5, scene="fundus", instrument=True)
    r = engine.fuse(s.frames)
    size = (1920, 1080)
    depth = cv2.resize(r.depth_index, size, interpolation=cv2.INTER_NEAREST)
    conf = cv2.resize(r.confidence, size, interpolation=cv2.INTER_NEAREST)
    image = cv2.resize(r.image, size, interpolation=cv2.INTER_LINEAR)

    def median_ms(fn, repeats: int = repeats) -> tuple[float, float]:
        for _ in range(3):
            fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times), min(times)

    from surgifuse.live.frames import ProcessedFrame
    from surgifuse.live.instrument_readout import instrument_header

    # The live read-out as the publisher calls it: stack index -> focus steps, reduce, measure.
    processed = ProcessedFrame(seq=0, capture_ms=0.0, raw=image, image=image, depth=depth, fused=True, engine="classical",
                               k=5, frame_seqs=list(range(5)), frame_focus=[0.0, 0.25, 0.5, 0.75, 1.0])

    frames = [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in s.frames]
    return {"curve": median_ms(lambda: depth_from_focus_curve(frames), repeats=max(3, repeats // 5)),
            "refine_full": median_ms(lambda: refine_depth(depth, conf, image)),
            "refine_work": median_ms(lambda: refine_depth(depth, conf, image, full_size=False)),
            "instrument": median_ms(lambda: measure_instrument(depth, image, confidence=conf)),
            "instrument_live": median_ms(lambda: instrument_header(processed, warning_steps=1.0))}


def print_depth_table(title: str, result: dict, timing: dict | None) -> None:
    n = len(result["rows"]["raw"])
    print(f"\n**{title}** ({n} stacks)\n")
    print("| depth | rank correlation | mean error (steps) | error within 5 px of instrument edges (steps) | ms at 1080p |")
    print("|---|---|---|---|---|")
    labels = DEPTHS + ((("focus_stack", "focus-stack's depth map (`--depthmap`, defaults)"),)
                       if "focus_stack" in result["rows"] else ())
    for name, label in labels:
        rows = result["rows"][name]
        rho = [r["rank_correlation"] for r in rows]
        mae = [r["mean_error_steps"] for r in rows]
        edge = [r["edge_error_steps"] for r in rows]
        ms = {"raw": "0 (the engine's output)",
              "refined": "" if timing is None else f"{timing['refine_full'][0]:.1f} ({timing['refine_work'][0]:.1f} at work size)",
              "curve": "" if timing is None else f"{timing['curve'][0]:.0f} for K=5",
              "curve_refined": "" if timing is None else f"{timing['curve'][0] + timing['refine_full'][0]:.0f}",
              "focus_stack": "(its whole command)"}[name]
        print(f"| {label} | {_mean(rho):.3f} (worst {min(rho):.3f}) | {_mean(mae):.3f} (worst {max(mae):.3f}) | "
              f"{_mean(edge):.3f} | {ms} |")


def print_by_scene(result: dict) -> None:
    print("\n| scenes | n | rank correlation: raw, refined, curve refined | mean error | edge error |")
    print("|---|---|---|---|---|")
    for kind in sorted(set(result["kinds"])):
        idx = [i for i, k in enumerate(result["kinds"]) if k == kind]
        cells = []
        for key in ("rank_correlation", "mean_error_steps", "edge_error_steps"):
            values = [_mean([result["rows"][name][i][key] for i in idx]) for name in ("raw", "refined", "curve_refined")]
            cells.append(", ".join(f"{v:.3f}" for v in values))
        print(f"| {kind} | {len(idx)} | " + " | ".join(cells) + " |")


def print_instrument_table(title: str, result: dict) -> None:
    print(f"\n**{title}**\n")
    print("| depth measured from | stacks with / without instrument | detected (with) | absent (without) | "
          "tip-height error, median | max | within 0.5 steps | signed mean | tip position error px, median |")
    print("|---|---|---|---|---|---|---|---|---|")
    for src in SOURCES:
        r = result["instrument"][src]
        errors = [abs(e) for e in r["heights"]]
        det = r["detections"]
        with_inst = [p for truth, p in det if truth]
        without = [p for truth, p in det if not truth]
        med = f"{np.median(errors):.2f}" if errors else "-"
        mx = f"{np.max(errors):.2f}" if errors else "-"
        within = f"{sum(v <= 0.5 for v in errors)}/{len(errors)}" if errors else "-"
        signed = f"{np.mean(r['heights']):+.2f}" if errors else "-"
        tip = f"{np.median(r['tips']):.1f}" if r["tips"] else "-"
        label = {"engine": "the engine's index", "curve": "the focus curve"}[src]
        print(f"| {label} | {len(with_inst)} / {len(without)} | {sum(with_inst)}/{len(with_inst)} | "
              f"{sum(not p for p in without)}/{len(without)} | {med} | {mx} | {within} | {signed} | {tip} |")
    r = result["instrument"]["curve"]
    kinds = sorted(set(r["height_kinds"]))
    if len(kinds) > 1:
        print("\n| scenes (focus curve) | measured | tip-height error, median | max | within 0.5 steps |\n|---|---|---|---|---|")
        for kind in kinds:
            e = [abs(h) for h, k in zip(r["heights"], r["height_kinds"]) if k == kind]
            print(f"| {kind} | {len(e)} | {np.median(e):.2f} | {np.max(e):.2f} | {sum(v <= 0.5 for v in e)}/{len(e)} |")


def repeats_of(args) -> int:
    return 5 if args.quick else 30


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="9100-9123", help="report seeds (default 9100-9123)")
    parser.add_argument("--absent-seeds", default="9200-9211", help="seeds of stacks without an instrument")
    parser.add_argument("--tune", action="store_true", help="report the tuning seeds 3000-3011 instead")
    parser.add_argument("--validation", action="store_true", help="also the independent generator (surgifuse.validation)")
    parser.add_argument("--validation-seeds", default="9000-9023")
    parser.add_argument("--quick", action="store_true", help="4 stacks per set, 5 timing repeats")
    parser.add_argument("--focus-stack", metavar="BINARY",
                        help="also focus-stack's depth map on the independent stacks (a focus-stack binary built "
                             "from its README in a scratch folder)")
    args = parser.parse_args(argv)

    engine = create_engine("classical")
    seeds = list(range(3000, 3012)) if args.tune else _seeds(args.seeds)
    absent = _seeds(args.absent_seeds)
    if args.quick:
        seeds, absent = seeds[:4], absent[:4]
    timing = timing_1080p(engine, repeats=repeats_of(args))
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"Engine: {engine!r}.\n\nCost at 1920x1080 on this machine ({os.cpu_count()} CPUs, load average {load} at the "
          f"start), median (minimum) of {repeats_of(args)} calls:\n")
    print("| step | ms median | ms min |\n|---|---|---|")
    for key, label in (("curve", "`depth_from_focus_curve`, 5 frames"),
                       ("refine_full", "`refine_depth`, result at full size"),
                       ("refine_work", "`refine_depth`, result at work size (256x144)"),
                       ("instrument", "`measure_instrument` with confidence (`fuse --report`)"),
                       ("instrument_live", "live read-out (`instrument_header`: index to steps, reduce, measure)")):
        print(f"| {label} | {timing[key][0]:.1f} | {timing[key][1]:.1f} |")

    base = {"height": 512, "width": 512, "k": 5, "scene": "mixed", "instrument": True}
    main_set = evaluate(_synth_cases(seeds, **base), engine)
    none = evaluate(_synth_cases(absent, **{**base, "instrument": False}), engine)
    for src in SOURCES:
        main_set["instrument"][src]["detections"] += none["instrument"][src]["detections"]
    label = "tuning seeds 3000-3011" if args.tune else f"seeds {seeds[0]}-{seeds[-1]}"
    print_depth_table(f"surgifuse.synth, {label}, 512x512, K=5, mixed scenes, instrument", main_set, timing)
    print_by_scene(main_set)
    print_instrument_table(f"Instrument, surgifuse.synth {label} (+ {len(absent)} stacks without instrument, "
                           f"seeds {absent[0]}-{absent[-1]})", main_set)

    other = {"height": 480, "width": 640, "k": 7, "scene": "fundus", "instrument": True}
    other_seeds = [s + 200 for s in seeds]
    second = evaluate(_synth_cases(other_seeds, **other), engine)
    print_depth_table(f"surgifuse.synth, seeds {other_seeds[0]}-{other_seeds[-1]}, 640x480, K=7, fundus, instrument",
                      second, timing)
    print_instrument_table(f"Instrument, surgifuse.synth seeds {other_seeds[0]}-{other_seeds[-1]} (640x480, K=7, fundus)",
                           second)

    if args.validation:
        try:
            import surgifuse.validation  # noqa: F401
        except ImportError as exc:
            print(f"\n(independent generator not available: {exc})")
        else:
            vseeds = _seeds(args.validation_seeds)[:4 if args.quick else None]
            third = evaluate(_validation_cases(vseeds, height=512, width=512, k=5), engine, args.focus_stack)
            print_depth_table(f"surgifuse.validation (independent generator), seeds {vseeds[0]}-{vseeds[-1]}, "
                              "512x512, K=5", third, timing)
            print_instrument_table(f"Instrument, surgifuse.validation seeds {vseeds[0]}-{vseeds[-1]}", third)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
