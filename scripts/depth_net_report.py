"""Train paper 002's monocular depth network (surgifuse/learning/models/depth_net.py) on our
generator's depth and compare it with depth from focus (surgifuse/focus_curve.py + refine_depth).

    .venv/bin/python scripts/depth_net_report.py [--minutes 15] [--stacks 192] [--size 128] [--out DIR]

Training data: ``surgifuse.synth.generate_stack`` seeds 30000+ (domain randomised as ``surgifuse
train --randomize``, without breathing or jitter so that the truth lies on every frame), K = 5; the
input is the fused frame (classical engine) or, one time in two, a single frame of the stack; the
target the true depth as a fraction of the stack's range. Losses l_depth + l_grad + l_normal on
ln(d + 0.5) at every decoder scale. Then, on material never trained on: the tuning seeds of the
depth filter (3000-3011, 512x512, where the choice "ship or not" is made), our generator's report
seeds 9100-9123 and the independent generator's 9000-9023. Rows: the network from the fused frame,
depth from focus (the focus curve, refined), and the two combined where depth from focus has no data
of its own (``refine_depth``'s confidence: the network's depth weighs 1 - confidence).
Needs torch (the ``train`` extra). The checkpoint goes to --out (not to the repository).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from surgifuse.depth import refine_depth  # noqa: E402
from surgifuse.engines import create_engine  # noqa: E402
from surgifuse.evaluation.depth import depth_accuracy, depth_in_steps  # noqa: E402
from surgifuse.focus_curve import depth_from_focus_curve  # noqa: E402
from surgifuse.learning.data import randomized_synth_options  # noqa: E402
from surgifuse.learning.depth_losses import DepthLosses  # noqa: E402
from surgifuse.learning.models.depth_net import DepthNet  # noqa: E402
from surgifuse.progress import progress_bar  # noqa: E402
from surgifuse.synth import generate_stack  # noqa: E402

K = 5


def training_set(count: int, size: int, engine) -> list[tuple[np.ndarray, np.ndarray]]:
    """(K + 1 images (fused first), depth fraction) per stack."""
    out = []
    bar = progress_bar(total=count, desc="generate", unit="stack", enabled=True)
    for seed in range(30000, 30000 + count):
        options = {**randomized_synth_options(seed), "breathing": 0.0, "motion": 0.0}
        s = generate_stack(seed, height=size, width=size, k=K, **options)
        fused = engine.fuse(s.frames).image
        depth = np.clip(depth_in_steps(s.depth, s.focus_positions) / (K - 1), 0.0, 1.0).astype(np.float32)
        out.append((np.stack([fused, *s.frames]), depth))
        bar.update(1)
    bar.close()
    return out


def batch(data, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    images, depths = [], []
    for i in rng.integers(0, len(data), n):
        stack, depth = data[i]
        image = stack[0] if rng.random() < 0.5 else stack[1 + rng.integers(0, K)]
        if rng.random() < 0.5:
            image, depth = image[:, ::-1], depth[:, ::-1]
        images.append(np.ascontiguousarray(image))
        depths.append(np.ascontiguousarray(depth))
    # contiguous NCHW: a channels-last view crashed the backward pass of torch 2.13 (double free)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().float() / 255.0
    y = torch.from_numpy(np.stack(depths))[:, None]
    return x, y


def train(data, minutes: float, seed: int = 0) -> tuple[DepthNet, dict]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = DepthNet()
    losses = DepthLosses()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    t0, step, log = time.perf_counter(), 0, {}
    net.train()
    while time.perf_counter() - t0 < minutes * 60:
        x, y = batch(data, 8, rng)
        outputs = net(x)
        total = 0.0
        for out in outputs:
            target = y if out.shape[2:] == y.shape[2:] else F.adaptive_avg_pool2d(y, out.shape[2:])
            total = total + losses(out, target)["total"]
        opt.zero_grad()
        total.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            log[step] = float(total.detach())
            print(f"step {step}: loss {float(total.detach()):.4f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return net, {"steps": step, "seconds": time.perf_counter() - t0, "loss": log}


def predict(net: DepthNet, image: np.ndarray, size: int | None = None) -> np.ndarray:
    """Depth in frames (0..K-1) at the image's size (padded to a multiple of 16); with ``size``, the
    network sees the image reduced to that longer side (the scale it was trained at), and its depth
    is enlarged back."""
    if size is not None and max(image.shape[:2]) > size:
        import cv2

        h0, w0 = image.shape[:2]
        scale = size / max(h0, w0)
        small = cv2.resize(image, (round(w0 * scale), round(h0 * scale)), interpolation=cv2.INTER_AREA)
        return cv2.resize(predict(net, small), (w0, h0), interpolation=cv2.INTER_LINEAR)
    h, w = image.shape[:2]
    ph, pw = -h % 16, -w % 16
    padded = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")
    with torch.no_grad():
        x = torch.from_numpy(padded).permute(2, 0, 1)[None].contiguous().float() / 255.0
        d = net(x)[0][0, 0].numpy()
    return d[:h, :w] * (K - 1)


def cases(kind: str, seeds):
    for seed in seeds:
        if kind == "validation":
            from surgifuse.validation import generate_validation_stack

            s = generate_validation_stack(seed, height=512, width=512, k=K)
            yield s.frames, np.clip(s.depth, 0, K - 1).astype(np.float32), s.foreground_mask
        else:
            s = generate_stack(seed, height=512, width=512, k=K, scene="mixed", instrument=True, noise=True)
            yield s.frames, depth_in_steps(s.depth, s.focus_positions), s.instrument_mask


def evaluate(net: DepthNet, engine, kind: str, seeds, size: int | None = None) -> dict:
    rows = {"network (fused frame)": [], "depth from focus (focus curve, refined)": [],
            "depth from focus, the network where it has no data": []}
    net.eval()
    for frames, truth, mask in cases(kind, seeds):
        fused = engine.fuse(frames).image
        learned = predict(net, fused, size)
        curve, confidence = depth_from_focus_curve(frames)
        focus, near_data = refine_depth(curve, confidence, fused)
        combined = near_data * focus + (1.0 - near_data) * learned
        for name, est in zip(rows, (learned, focus, combined)):
            rows[name].append(depth_accuracy(est, truth, instrument_mask=mask))
    return rows


def print_rows(title: str, rows: dict) -> None:
    print(f"\n**{title}**\n\n| depth | rank correlation | mean error (steps) | edge error (steps) |\n|---|---|---|---|")
    for name, rs in rows.items():
        m = lambda key: float(np.nanmean([r[key] for r in rs]))  # noqa: E731
        print(f"| {name} | {m('rank_correlation'):.3f} | {m('mean_error_steps'):.3f} | {m('edge_error_steps'):.3f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--stacks", type=int, default=192)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", default="runs/depth_net")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="two stacks per evaluation set (a smoke test)")
    parser.add_argument("--checkpoint", help="evaluate this checkpoint (depth_net.pt) instead of training")
    parser.add_argument("--predict-at-training-size", action="store_true",
                        help="the network sees each image reduced to --size (the scale it was trained at)")
    args = parser.parse_args(argv)
    if args.size % 16:
        parser.error("--size must be a multiple of 16")
    torch.set_num_threads(args.threads)
    engine = create_engine("classical")
    if args.checkpoint:
        net = DepthNet()
        saved = torch.load(args.checkpoint, map_location="cpu")
        net.load_state_dict(saved["state"])
        info = saved["info"]
        print(f"DepthNet from {args.checkpoint}: {info['steps']} steps of 8 in {info['seconds']:.0f} s.")
    else:
        t0 = time.perf_counter()
        data = training_set(args.stacks, args.size, engine)
        generated = time.perf_counter() - t0
        net, info = train(data, args.minutes)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"state": net.state_dict(), "info": info}, out / "depth_net.pt")
        params = sum(p.numel() for p in net.parameters())
        print(f"DepthNet ({params} parameters): {args.stacks} stacks of {args.size}x{args.size} generated in "
              f"{generated:.0f} s, {info['steps']} steps of 8 in {info['seconds']:.0f} s on {args.threads} threads.")
    n = 2 if args.quick else None
    size = args.size if args.predict_at_training_size else None
    print(f"The network sees the fused frame {'reduced to ' + str(size) + ' px' if size else 'at 512x512'}.")
    print_rows("tuning seeds 3000-3011 (surgifuse.synth, 512x512, K=5)",
               evaluate(net, engine, "synth", list(range(3000, 3012))[:n], size))
    print_rows("surgifuse.synth seeds 9100-9123 (512x512, K=5)",
               evaluate(net, engine, "synth", list(range(9100, 9124))[:n], size))
    print_rows("independent surgifuse.validation seeds 9000-9023 (512x512, K=5)",
               evaluate(net, engine, "validation", list(range(9000, 9024))[:n], size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
