"""Side by side with OpenFocus (Xinzhe99/OpenFocus, MIT licence): its GFG-FGF fusion (generalised
four-neighbourhood Gaussian gradient + fast guided filter; Fu, Gong, Wang et al., Laser &
Optoelectronics Progress 61(6), 2024) and its guided-filter fusion (Li, Kang & Hu, IEEE TIP 2013),
against our engines, on the independent validation set (surgifuse.validation: never used to train
or tune) and on the 20 Lytro pairs.

OpenFocus runs from its own folder with its own Python (a separate virtual environment; nothing of it
enters this repository): this script writes a small runner into a temporary folder that imports its
``fusion_methods`` and calls them on the same PNG files our engines read.

    python3 -m venv /tmp/ofvenv && /tmp/ofvenv/bin/pip install numpy opencv-python
    .venv/bin/python scripts/compare_openfocus.py /path/to/OpenFocus --python /tmp/ofvenv/bin/python

Sets (K=5, no motion, alignment off everywhere): 8 stacks 512x512 with noise and JPEG 90 (seeds
9000-9007), the same 8 scenes noise-free and lossless, 4 stacks 1920x1080 with noise and JPEG 90
(seeds 9100-9103), the same 4 scenes noise-free (``--sets`` picks some, ``--no-lytro``). Scores: PSNR and SSIM against the truth (surgifuse.evaluation.metrics, 8 px border
excluded), Q^AB/F on Lytro; time: the fusion call alone on frames already in memory, after one
untimed warm-up call, median over the 1080p stacks. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from surgifuse.evaluation.metrics import psnr, qabf, ssim  # noqa: E402
from surgifuse.evaluation.references import depth_oracle  # noqa: E402
from surgifuse.imageio import read_image  # noqa: E402
from surgifuse.validation import write_validation_set  # noqa: E402

LYTRO = REPO.parent / "shared" / "data" / "real" / "lytro"
#: (name, seed, size (h, w), count, noise and JPEG 90)
SETS = (
    ("512 noisy", 9000, (512, 512), 8, True),
    ("512 noise-free", 9000, (512, 512), 8, False),
    ("1080p noisy", 9100, (1080, 1920), 4, True),
    ("1080p noise-free", 9100, (1080, 1920), 4, False),
)
TIMED_SET = "1080p noisy"
#: OpenFocus methods: (label, function, kernel_size). 31 is its GUI's default smoothing slider (the
#: value a user gets); 7 is the default of its Python API for GFG-FGF.
OPENFOCUS_METHODS = (
    ("OpenFocus GFG-FGF (k=31, GUI default)", "gfgfgf", 31),
    ("OpenFocus GFG-FGF (k=7, API default)", "gfgfgf", 7),
    ("OpenFocus guided filter (k=31)", "guided_filter", 31),
)

RUNNER = r'''
import json, sys, time
import cv2
sys.path.insert(0, sys.argv[1])
from fusion_methods.gfg_fgf import gfgfgf_impl
from fusion_methods.gff import gff_impl

functions = {"gfgfgf": gfgfgf_impl, "guided_filter": gff_impl}
jobs = json.load(open(sys.argv[2]))
warmed, results = set(), []
for job in jobs:
    frames = [cv2.imread(p, cv2.IMREAD_COLOR) for p in job["frames"]]  # BGR, as OpenFocus reads
    fuse = functions[job["method"]]
    key = (job["method"], job["kernel_size"])
    if key not in warmed:
        fuse(frames, None, kernel_size=job["kernel_size"])
        warmed.add(key)
    t0 = time.perf_counter()
    out = fuse(frames, None, kernel_size=job["kernel_size"])
    seconds = time.perf_counter() - t0
    if not cv2.imwrite(job["out"], out):
        raise SystemExit("could not write " + job["out"])
    results.append({"out": job["out"], "seconds": seconds})
json.dump({"results": results, "opencv": cv2.__version__, "ximgproc": hasattr(cv2, "ximgproc")},
          open(sys.argv[3], "w"))
'''


def make_sets(data: Path, names: list[str]) -> dict[str, list[Path]]:
    """Write the sets called ``names`` under ``data`` (kept between runs: a set already there is reused)."""
    out = {}
    for name, seed, (h, w), count, noisy in SETS:
        if name not in names:
            continue
        folder = data / name.replace(" ", "_")
        stacks = sorted(folder.glob("stack_*"))
        if len(stacks) != count:
            stacks = write_validation_set(folder, count=count, seed=seed, overwrite=True, height=h, width=w, k=5,
                                          noise=noisy, jpeg_quality=90 if noisy else None)
        out[name] = stacks
    return out


def frame_files(stack: Path) -> list[str]:
    meta = json.loads((stack / "meta.json").read_text())
    return [str(stack / f) for f in meta["files"]["frames"]]


def run_openfocus(openfocus: str, python: str, jobs: list[dict], work: Path) -> dict:
    runner, job_file, result_file = work / "openfocus_runner.py", work / "jobs.json", work / "results.json"
    runner.write_text(RUNNER)
    job_file.write_text(json.dumps(jobs))
    done = subprocess.run([python, str(runner), openfocus, str(job_file), str(result_file)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"OpenFocus runner failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(result_file.read_text())


def score(fused: np.ndarray, stack: Path) -> tuple[float, float]:
    gt = read_image(stack / "gt.png")
    return psnr(gt, fused), ssim(gt, fused)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("openfocus", metavar="OPENFOCUS_DIR", help="a checkout of Xinzhe99/OpenFocus")
    parser.add_argument("--python", default=sys.executable,
                        help="the Python that has OpenFocus's dependencies (numpy, opencv-python)")
    parser.add_argument("--data", default=None,
                        help="folder for the validation sets (reused if present; default: a temporary folder)")
    parser.add_argument("--engines", default="classical,msmfm", help="our engines, comma-separated")
    parser.add_argument("--sets", default=",".join(name for name, *_ in SETS),
                        help="which sets, comma-separated (default all: " + ", ".join(name for name, *_ in SETS) + ")")
    parser.add_argument("--no-lytro", action="store_true", help="leave out the Lytro pairs")
    args = parser.parse_args()
    names = [n.strip() for n in args.sets.split(",")]
    unknown = [n for n in names if n not in {name for name, *_ in SETS}]
    if unknown:
        parser.error(f"unknown set(s) {unknown}; choose from {[name for name, *_ in SETS]}")
    from surgifuse.engines import create_engine

    tmp = tempfile.TemporaryDirectory(prefix="compare-openfocus-")
    work = Path(tmp.name)
    data = Path(args.data) if args.data else work / "data"
    t0 = time.perf_counter()
    sets = make_sets(data, names)
    print(f"validation sets written/found in {time.perf_counter() - t0:.0f} s: {data}", file=sys.stderr)
    lytro_pairs = [] if args.no_lytro else [[str(LYTRO / f"color_lytro_{i:02d}_{j}.png") for j in (1, 2)]
                                            for i in range(1, 21)]

    # (method label) -> {set name: [(psnr, ssim)], "lytro": [qabf], "seconds": [...]}
    table: dict[str, dict] = {}

    jobs = []
    for label, method, ksize in OPENFOCUS_METHODS:
        tag = f"{method}_k{ksize}"
        for name, stacks in sets.items():
            for stack in stacks:
                jobs.append({"method": method, "kernel_size": ksize, "frames": frame_files(stack), "label": label,
                             "set": name, "stack": str(stack),
                             "out": str(work / f"{tag}_{name.replace(' ', '_')}_{stack.name}.png")})
        for i, pair in enumerate(lytro_pairs):
            jobs.append({"method": method, "kernel_size": ksize, "frames": pair, "label": label, "set": "lytro",
                         "stack": str(i), "out": str(work / f"{tag}_lytro_{i:02d}.png")})
    t0 = time.perf_counter()
    of = run_openfocus(args.openfocus, args.python, jobs, work)
    print(f"OpenFocus ran {len(jobs)} fusions in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    for job, res in zip(jobs, of["results"]):
        entry = table.setdefault(job["label"], {})
        fused = read_image(job["out"])
        if job["set"] == "lytro":
            entry.setdefault("lytro", []).append(qabf([read_image(p) for p in job["frames"]], fused))
            continue
        entry.setdefault(job["set"], []).append(score(fused, Path(job["stack"])))
        if job["set"] == TIMED_SET:
            entry.setdefault("seconds", []).append(res["seconds"])

    for name in args.engines.split(","):
        engine = create_engine(name.strip())
        label = f"SurgiFuse {name.strip()}"
        entry = table.setdefault(label, {})
        warmed = False
        for set_name, stacks in sets.items():
            for stack in stacks:
                frames = [read_image(f) for f in frame_files(stack)]
                if not warmed:
                    engine.fuse(frames)
                    warmed = True
                t0 = time.perf_counter()
                fused = engine.fuse(frames).image
                seconds = time.perf_counter() - t0
                entry.setdefault(set_name, []).append(score(fused, stack))
                if set_name == TIMED_SET:
                    entry.setdefault("seconds", []).append(seconds)
        for pair in lytro_pairs:
            frames = [read_image(p) for p in pair]
            entry.setdefault("lytro", []).append(qabf(frames, engine.fuse(frames).image))

    # The ceiling of per-pixel frame selection: each pixel from the frame focused nearest its depth.
    entry = table.setdefault("reference: depth oracle (truth depth picks the frame)", {})
    for set_name, stacks in sets.items():
        for stack in stacks:
            frames = [read_image(f) for f in frame_files(stack)]
            meta = json.loads((stack / "meta.json").read_text())
            entry.setdefault(set_name, []).append(
                score(depth_oracle(frames, np.load(stack / "depth.npy"), meta["focus_positions"]), stack))

    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines() if line.startswith("Model name")),
        platform.processor())
    print(f"\nIndependent validation set (surgifuse.validation), K=5, alignment off; "
          f"{datetime.date.today().isoformat()}; CPU: {cpu} ({os.cpu_count()} cores, shared); "
          f"OpenFocus's OpenCV {of['opencv']} (ximgproc: {'yes' if of['ximgproc'] else 'no: its own fast guided filter'}).\n")
    shown = [name for name, *_ in SETS if name in sets]
    header = ["method"] + [f"{name} PSNR / SSIM" for name in shown] + ["Lytro Q^AB/F", "s per 5x1080p stack"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, entry in table.items():
        cells = [label]
        for name in shown:
            pairs = entry.get(name)
            cells.append(f"{np.mean([p for p, _ in pairs]):.2f} / {np.mean([s for _, s in pairs]):.4f}" if pairs else "-")
        cells.append(f"{np.mean(entry['lytro']):.4f}" if "lytro" in entry else "-")
        cells.append(f"{statistics.median(entry['seconds']):.3f}" if "seconds" in entry else "-")
        print("| " + " | ".join(cells) + " |")
    tmp.cleanup()


if __name__ == "__main__":
    main()
