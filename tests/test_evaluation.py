"""Tests of the evaluation references, stack loading, the ``evaluate`` runner, reports and
``surgifuse eval``."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from surgifuse.errors import InputError
from surgifuse.evaluation import (
    BEST_FRAME,
    ORACLE,
    best_single_frame,
    depth_oracle,
    evaluate,
    find_stacks,
    load_eval_stack,
    oracle_index,
)
from surgifuse.evaluation.report import format_table, to_jsonable
from surgifuse.evaluation.run import create_engines, stack_needs_alignment
from surgifuse.imageio import write_image


def band_stack(rng, *, k=3, height=64, band=48, noise=2.0):
    """A stack whose truth is a sharp texture; depth is constant on vertical bands, band i at
    focus position i; frame j blurs band i by |i - j|. Frames carry noise, the truth does not."""
    width = band * k
    sharp = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 0.8)
    depth = np.repeat(np.arange(k, dtype=np.float32), band)[None, :].repeat(height, axis=0)
    frames = []
    for j in range(k):
        frame = np.empty_like(sharp)
        for i in range(k):
            cols = slice(i * band, (i + 1) * band)
            blurred = sharp if i == j else cv2.GaussianBlur(sharp, (0, 0), 1.5 * abs(i - j))
            frame[:, cols] = blurred[:, cols]
        noisy = frame.astype(np.float64) + rng.normal(0, noise, frame.shape)
        frames.append(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    return frames, sharp, depth, [float(i) for i in range(k)]


def write_band_stack(folder, frames, gt, depth, positions, meta=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        write_image(folder / f"frame_{i}.png", f)
    write_image(folder / "gt.png", gt)
    np.save(folder / "depth.npy", depth)
    (folder / "meta.json").write_text(json.dumps({"focus_positions": positions, **(meta or {})}))


# ---------------------------------------------------------------------------------------------- references


def test_best_single_frame_picks_closest_and_lowest_tie(rng):
    gt = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    far = np.clip(gt.astype(int) + 30, 0, 255).astype(np.uint8)
    near = np.clip(gt.astype(int) + 3, 0, 255).astype(np.uint8)
    index, image = best_single_frame([far, near, far, near], gt)
    assert index == 1 and image is not None and np.array_equal(image, near)
    with pytest.raises(ValueError, match="gt has shape"):
        best_single_frame([far], gt[:16])


def test_oracle_index_nearest_focus_and_ties():
    depth = np.array([[0.0, 0.4, 0.5, 0.6], [1.0, 2.0, 7.0, -3.0]], np.float32)
    positions = [0.0, 1.0, 2.0]
    expected = np.array([[0, 0, 0, 1], [1, 2, 2, 0]])  # 0.5 is equidistant from 0 and 1: lower index
    assert np.array_equal(oracle_index(depth, positions), expected)
    # Unsorted focus positions: the index is into the stack order, not the sorted order.
    assert np.array_equal(oracle_index(depth, [2.0, 0.0, 1.0]), np.array([[1, 1, 1, 2], [2, 0, 0, 1]]))


def test_oracle_index_errors():
    with pytest.raises(ValueError, match="HxW"):
        oracle_index(np.zeros((2, 2, 1), np.float32), [0.0])
    with pytest.raises(TypeError, match="float"):
        oracle_index(np.zeros((2, 2), np.int32), [0.0])
    with pytest.raises(ValueError, match="K >= 1"):
        oracle_index(np.zeros((2, 2), np.float32), [])


def test_depth_oracle_assembles_bands(rng):
    frames, gt, depth, positions = band_stack(rng, noise=0.0)
    oracle = depth_oracle(frames, depth, positions)
    assert np.array_equal(oracle, gt)  # noiseless frames: each band from its sharp frame is the truth
    with pytest.raises(ValueError, match="focus_positions has 2 values for 3 frames"):
        depth_oracle(frames, depth, positions[:2])
    with pytest.raises(ValueError, match="depth has shape"):
        depth_oracle(frames, depth[:10], positions)


# ---------------------------------------------------------------------------------------------- stacks


def test_load_synthetic_folder_and_find_stacks(tmp_path, rng):
    frames, gt, depth, positions = band_stack(rng)
    for name in ("stack_10", "stack_2"):
        write_band_stack(tmp_path / name, frames, gt, depth, positions, {"breathing": 0.0})
    found = find_stacks(tmp_path)
    assert [p.name for p in found] == ["stack_2", "stack_10"]  # natural order
    assert find_stacks(tmp_path / "stack_2") == [tmp_path / "stack_2"]
    stack = load_eval_stack(found[0])
    assert stack.has_truth and stack.has_oracle and len(stack.frames) == 3
    assert all(np.array_equal(a, b) for a, b in zip(stack.frames, frames))  # RGB order round trip
    assert np.array_equal(stack.gt, gt) and stack.depth.dtype == np.float32
    assert stack.focus_positions == positions


def test_load_plain_folder_sniffs_content(tmp_path, rng):
    frames, *_ = band_stack(rng, k=2)
    for i, f in enumerate(frames):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        (tmp_path / f"img_{i + 1}.png").write_bytes(buf.tobytes())  # JPEG bytes named .png
    stack = load_eval_stack(tmp_path)
    assert len(stack.frames) == 2 and not stack.has_truth and not stack.has_oracle
    assert np.abs(stack.frames[0].astype(int) - frames[0]).mean() < 10  # RGB, not BGR


def test_stack_errors(tmp_path, rng):
    with pytest.raises(FileNotFoundError):
        find_stacks(tmp_path / "missing")
    with pytest.raises(ValueError, match="no focal stack"):
        find_stacks(tmp_path)
    frames, gt, depth, positions = band_stack(rng)
    write_band_stack(tmp_path / "s", frames, gt, depth, positions[:2])
    with pytest.raises(ValueError, match="2 focus.positions for 3 frames"):
        load_eval_stack(tmp_path / "s")


def test_stack_needs_alignment():
    assert stack_needs_alignment({})
    assert stack_needs_alignment({"breathing": 0.01, "motion": 0})
    assert not stack_needs_alignment({"breathing": 0.0, "motion": False, "seed": 1})


# ---------------------------------------------------------------------------------------------- evaluate


def test_evaluate_scores_engines_and_references(tmp_path, rng):
    for s in range(2):
        write_band_stack(tmp_path / f"s{s}", *band_stack(rng), {"breathing": 0, "motion": 0})
    seen = []
    results = evaluate(tmp_path, ["msmfm"], on_fused=lambda st, n, im, sc: seen.append((st.name, n, sc)))
    assert results["engines"] == ["msmfm"] and len(results["stacks"]) == 2
    assert {n for _, n, _ in seen} == {"msmfm", ORACLE, BEST_FRAME}
    for entry in results["stacks"]:
        res = entry["results"]
        assert set(res) == {"msmfm", ORACLE, BEST_FRAME}
        assert entry["aligned"] is False  # static synthetic stacks are fused as given
        assert set(res["msmfm"]) == {"psnr", "ssim", "qabf", "nmi", "seconds"}
        # The oracle takes each band from its sharp frame: far better than any single frame.
        assert res[ORACLE]["psnr"] > res[BEST_FRAME]["psnr"] + 3
        assert res["msmfm"]["psnr"] > res[BEST_FRAME]["psnr"] + 3
    agg = results["aggregates"]
    assert list(agg) == ["msmfm", ORACLE, BEST_FRAME]
    gap = np.mean([s["results"][ORACLE]["psnr"] - s["results"]["msmfm"]["psnr"] for s in results["stacks"]])
    assert agg["msmfm"]["gap_to_oracle_psnr"] == pytest.approx(gap)
    assert agg[ORACLE]["gap_to_oracle_psnr"] == 0.0
    assert agg["msmfm"]["n_stacks"] == 2
    table = format_table(results)
    assert "msmfm" in table and "oracle" in table and "best-frame" in table
    json.dumps(to_jsonable(results), allow_nan=False)  # strict JSON


def test_evaluate_limit_and_no_truth(tmp_path, rng):
    for s in range(3):
        write_band_stack(tmp_path / f"s{s}", *band_stack(rng, k=2))
    assert len(evaluate(tmp_path, ["msmfm"], limit=2, align=False)["stacks"]) == 2
    plain = tmp_path / "plain"
    plain.mkdir()
    for i, f in enumerate(band_stack(rng, k=2)[0]):
        write_image(plain / f"x{i}.png", f)
    res = evaluate(plain, ["msmfm"], align=False)
    entry = res["stacks"][0]
    assert not entry["has_truth"] and set(entry["results"]) == {"msmfm"}
    assert set(entry["results"]["msmfm"]) == {"qabf", "nmi", "seconds"}
    assert res["aggregates"]["msmfm"]["psnr"] is None


def test_one_frame_stack_is_skipped_not_scored(tmp_path, rng):
    frames, gt, depth, positions = band_stack(rng)
    write_band_stack(tmp_path / "s0", frames, gt, depth, positions, {"breathing": 0, "motion": 0})
    write_band_stack(tmp_path / "s1", frames[:1], gt, depth, positions[:1], {"breathing": 0, "motion": 0})
    warnings = []
    results = evaluate(tmp_path, ["msmfm"], warn=warnings.append)
    assert [s["name"] for s in results["stacks"]] == ["s0"]
    (skipped,) = results["skipped"]
    assert skipped["name"] == "s1" and skipped["k"] == 1 and "not a focal stack" in skipped["reason"]
    assert all(agg["n_stacks"] == 1 for agg in results["aggregates"].values())
    assert len(warnings) == 1 and "s1" in warnings[0] and "skipped" in warnings[0]
    assert "skipped 1 of 2 stacks" in format_table(results) and "s1: only 1 frame" in format_table(results)
    # Without a warn callback the library warns the Python way.
    with pytest.warns(UserWarning, match="not a focal stack"):
        evaluate(tmp_path, ["msmfm"])


def test_only_one_frame_stacks_is_an_input_error(tmp_path, rng):
    frames, gt, depth, positions = band_stack(rng)
    write_band_stack(tmp_path / "s1", frames[:1], gt, depth, positions[:1])
    with pytest.raises(InputError, match="nothing to score.*s1.*only 1 frame"):
        evaluate(tmp_path, ["msmfm"], warn=lambda line: None)


def test_engine_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown engine 'nope'"):
        create_engines(["nope"])
    with pytest.raises(ValueError, match="at least one engine"):
        create_engines([])
    with pytest.raises(ValueError, match="more than once"):
        create_engines(["msmfm", "msmfm"])
    with pytest.raises(ValueError, match="reference"):
        create_engines(["oracle"])

    import surgifuse.engines as engines

    def broken(name, **options):
        raise FileNotFoundError("models/fusion_net.onnx not found")

    monkeypatch.setattr(engines, "create_engine", broken)
    with pytest.raises(ValueError, match=r"engine 'fn' could not be created.*fusion_net\.onnx"):
        create_engines(["fn"])


def test_to_jsonable_infinite_psnr():
    assert to_jsonable({"psnr": math.inf, "x": np.float32(1.5), "n": np.int64(3)}) == {"psnr": None, "x": 1.5, "n": 3}


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_eval_writes_table_json_and_figures(tmp_path, rng, capsys):
    from surgifuse.cli import main

    write_band_stack(tmp_path / "data" / "s0", *band_stack(rng))
    out_json = tmp_path / "r.json"
    figs = tmp_path / "figs"
    rc = main(["eval", str(tmp_path / "data"), "--engine", "msmfm", "--json", str(out_json),
               "--figures", str(figs), "--no-align", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "msmfm" in printed and "oracle" in printed
    data = json.loads(out_json.read_text())
    assert data["schema"] == 1 and data["stacks"][0]["name"] == "s0"
    pngs = sorted(p.name for p in figs.glob("*.png"))
    assert pngs == ["s0_best-frame.png", "s0_msmfm.png", "s0_oracle.png"]
    image = cv2.imread(str(figs / "s0_msmfm.png"))
    assert image is not None and image.shape[0] > 100


def test_cli_eval_bad_input(tmp_path, capsys):
    from surgifuse.cli import main

    assert main(["eval", str(tmp_path / "missing"), "--engine", "msmfm"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--engine", "bogus"]) == 2
    assert "unknown engine" in capsys.readouterr().err
    assert main(["eval", str(tmp_path)]) == 2
    assert "--engine" in capsys.readouterr().err


def test_cli_eval_flags_a_one_frame_stack(tmp_path, rng, capsys):
    from surgifuse.cli import main

    frames, gt, depth, positions = band_stack(rng)
    write_band_stack(tmp_path / "data" / "s0", frames, gt, depth, positions)
    write_band_stack(tmp_path / "data" / "s1", frames[:1], gt, depth, positions[:1])
    out_json = tmp_path / "r.json"
    assert main(["eval", str(tmp_path / "data"), "--engine", "msmfm", "--no-align", "--quiet", "--json", str(out_json)]) == 0
    captured = capsys.readouterr()
    assert "warning" in captured.err and "s1" in captured.err  # even with --quiet
    assert "skipped 1 of 2 stacks" in captured.out
    data = json.loads(out_json.read_text())
    assert [s["name"] for s in data["stacks"]] == ["s0"] and data["skipped"][0]["name"] == "s1"

    # Nothing but one-frame stacks: bad input, exit 2.
    assert main(["eval", str(tmp_path / "data" / "s1"), "--engine", "msmfm", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "surgifuse eval: error: nothing to score" in err and "only 1 frame" in err


def test_eval_on_real_stack(shared_dir):
    folder = shared_dir / "data" / "real" / "pcb-macro"
    res = evaluate(folder, ["msmfm"], max_side=160)
    entry = res["stacks"][0]
    assert entry["k"] == 7 and not entry["has_truth"] and max(entry["shape"][:2]) == 160
    q = entry["results"]["msmfm"]["qabf"]
    assert 0.0 < q < 1.0


def test_evaluate_synthetic_stack_with_breathing(tmp_path):
    from surgifuse import synth
    from surgifuse.evaluation.run import ORACLE_ALIGNED, align_available

    for seed, breathing in ((0, 0.0), (1, 0.02)):
        synth.write_stack(synth.generate_stack(seed, height=96, width=96, k=3, breathing=breathing),
                          tmp_path / f"s{seed}")
    res = evaluate(tmp_path, ["msmfm"])
    static, breathing_entry = res["stacks"]
    assert static["aligned"] is False
    assert breathing_entry["aligned"] is align_available()
    assert breathing_entry["meta"]["breathing"] == 0.02
    assert set(static["results"]) == {"msmfm", ORACLE, BEST_FRAME}
    if breathing_entry["aligned"]:
        # The oracle on the aligned frames is the ceiling the gap is measured against.
        assert set(breathing_entry["results"]) == {"msmfm", ORACLE, ORACLE_ALIGNED, BEST_FRAME}
        ceiling = [static["results"][ORACLE], breathing_entry["results"][ORACLE_ALIGNED]]
    else:
        ceiling = [static["results"][ORACLE], breathing_entry["results"][ORACLE]]
    gaps = [c["psnr"] - e["results"]["msmfm"]["psnr"] for c, e in zip(ceiling, res["stacks"])]
    assert res["aggregates"]["msmfm"]["gap_to_oracle_psnr"] == pytest.approx(np.mean(gaps))
    for entry in res["stacks"]:
        assert entry["has_truth"] and entry["results"][ORACLE]["psnr"] > 20
