"""Training runs a few steps on tiny stacks, logs, checkpoints, resumes; the CLI drives it; export checks parity."""

import csv
import json

import numpy as np
import pytest
from optional import optional_import

torch = optional_import("torch")

from surgifuse.cli import main  # noqa: E402
from surgifuse.learning.config import DataConfig, TrainConfig  # noqa: E402
from surgifuse.learning.data import CropSampler, load_stacks  # noqa: E402
from surgifuse.learning.train import load_checkpoint, train  # noqa: E402

TINY_FN = dict(encoder_width=4, refine_width=4, res_blocks=1)
SYNTH = dict(noise=False, instrument=False, scene="fundus")


def _data(**kw):
    return DataConfig(seed=20000, count=2, synth_height=32, synth_width=32, k=3, crop=24, synth_options=SYNTH, **kw)


def test_sampler_shapes_and_reproducible():
    stacks = load_stacks(_data())
    a = CropSampler(stacks, crop=24, seed=5).batch(3)
    b = CropSampler(stacks, crop=24, seed=5).batch(3)
    assert a["frames"].shape == (3, 3, 3, 24, 24) and a["gt"].shape == (3, 3, 24, 24) and a["canny"].shape == (3, 1, 24, 24)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert 0 <= float(a["frames"].min()) and float(a["frames"].max()) <= 1
    assert CropSampler(stacks, crop=24, seed=5).images(4).shape == (4, 3, 24, 24)
    with pytest.raises(ValueError, match="crop"):
        CropSampler(stacks, crop=64, seed=0)


def test_fn_trains_logs_checkpoints_and_resumes(tmp_path, rng):
    ae_dir = tmp_path / "ae"
    train(TrainConfig(model="autoencoder", out_dir=str(ae_dir), steps=2, batch_size=2, checkpoint_every=2, log_every=1), _data(), {"stem_width": 4, "growth": 2}, progress=False)
    tc = TrainConfig(model="fn", out_dir=str(tmp_path / "fn"), steps=3, batch_size=2, checkpoint_every=2, log_every=1,
                     perceptual_encoder=str(ae_dir / "last.pt"))
    first = train(tc, _data(), TINY_FN, val_config=_data(), progress=False)
    assert first["steps"] == 3 and first["best_val_psnr"] > 5
    rows = list(csv.DictReader(open(tmp_path / "fn" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert {"aif", "perceptual", "edge", "identity", "val_psnr"} <= set(rows[0])
    model, ckpt = load_checkpoint(tmp_path / "fn" / "last.pt")
    assert ckpt["step"] == 3 and model.config.encoder_width == 4
    tc.steps = 5
    second = train(tc, _data(), None, val_config=_data(), resume=True, progress=False)
    assert second["steps"] == 5
    rows = list(csv.DictReader(open(tmp_path / "fn" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]


def test_training_is_seeded(tmp_path):
    runs = []
    for name in ("a", "b"):
        tc = TrainConfig(model="fn", out_dir=str(tmp_path / name), steps=2, batch_size=1, losses=("aif",), checkpoint_every=10)
        runs.append(train(tc, _data(), TINY_FN, progress=False)["last_loss"])
    assert runs[0] == runs[1]


def test_perceptual_without_encoder_is_an_error(tmp_path):
    tc = TrainConfig(model="fn", out_dir=str(tmp_path), steps=1, losses=("aif", "perceptual"))
    with pytest.raises(ValueError, match="perceptual"):
        train(tc, _data(), TINY_FN, progress=False)


def test_cli_train_then_export(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "fn", "--generate", "2", "--synth-size", "32", "--k", "3", "--crop", "24", "--steps", "2",
               "--batch-size", "1", "--losses", "aif,edge,identity", "--encoder-width", "4", "--refine-width", "4",
               "--res-blocks", "1", "--val-generate", "0", "--no-progress", "--out", str(out),
               "--synth-option", "noise=false", "--synth-option", "instrument=false"])
    assert rc == 0 and (out / "last.pt").is_file()
    capsys.readouterr()
    rc = main(["export", str(out / "last.pt"), "--out", str(tmp_path / "models"), "--name", "tiny"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["export_check"]["max_abs_diff"] < 1e-4
    for f in ("tiny.onnx", "tiny_encoder.onnx", "tiny_fuse.onnx", "tiny.json"):
        assert (tmp_path / "models" / f).is_file()
    assert sorted(report["written"]) == sorted(str(tmp_path / "models" / f) for f in
                                               ("tiny_encoder.onnx", "tiny_fuse.onnx", "tiny.onnx", "tiny.json"))
    # A second export to the same files is refused.
    assert main(["export", str(out / "last.pt"), "--out", str(tmp_path / "models"), "--name", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "tiny_encoder.onnx" in err and "tiny.json" in err and "--overwrite" in err


@pytest.fixture(scope="module")
def tiny_autoencoder_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ae")
    train(TrainConfig(model="autoencoder", out_dir=str(out), steps=1, batch_size=1, checkpoint_every=1), _data(),
          {"stem_width": 4, "growth": 2}, progress=False)
    return out / "last.pt"


def test_cli_export_refuses_to_replace_a_model(tmp_path, monkeypatch, capsys, tiny_autoencoder_checkpoint):
    # The default --out is models/, where the shipped models live.
    monkeypatch.chdir(tmp_path)
    shipped = tmp_path / "models" / "autoencoder.json"
    shipped.parent.mkdir()
    shipped.write_text("shipped")
    assert main(["export", str(tiny_autoencoder_checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "models/autoencoder.json" in err and "--overwrite" in err and "--out" in err and "--name" in err
    assert shipped.read_text() == "shipped"
    assert sorted(p.name for p in shipped.parent.iterdir()) == ["autoencoder.json"]  # checked before any work

    # Another name writes beside it and says where.
    assert main(["export", str(tiny_autoencoder_checkpoint), "--name", "tiny"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["written"] == ["models/tiny_activity.onnx", "models/tiny.json"]
    assert "models/tiny_activity.onnx" in captured.err
    assert shipped.read_text() == "shipped"

    # The graph alone is enough to refuse; --overwrite replaces.
    (tmp_path / "models" / "tiny.json").unlink()
    assert main(["export", str(tiny_autoencoder_checkpoint), "--name", "tiny"]) == 2
    assert "models/tiny_activity.onnx" in capsys.readouterr().err
    assert not (tmp_path / "models" / "tiny.json").exists()
    assert main(["export", str(tiny_autoencoder_checkpoint), "--overwrite"]) == 0
    assert json.loads(shipped.read_text())["kind"] == "autoencoder"


def test_cli_bad_input(tmp_path, capsys):
    assert main(["train", "fn", "--data", str(tmp_path / "missing"), "--losses", "aif", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["train", "fn", "--generate", "1", "--synth-option", "noequals", "--out", str(tmp_path / "o")]) == 2
    assert main(["export", str(tmp_path / "nothing.pt")]) == 2


def test_aligned_stacks_keep_shape_and_truth():
    cfg = DataConfig(seed=20000, count=1, synth_height=48, synth_width=48, k=3, crop=24,
                     synth_options={**SYNTH, "breathing": 0.05}, align=False)
    raw = load_stacks(cfg)[0]
    cfg.align = True
    aligned = load_stacks(cfg)[0]
    assert aligned.frames.shape == raw.frames.shape and aligned.frames.dtype == np.uint8
    np.testing.assert_array_equal(aligned.gt, raw.gt)
    # The middle frame is the reference; the outer frames are rescaled by breathing, so they move.
    assert np.abs(aligned.frames[0].astype(int) - raw.frames[0]).mean() > 0.1


def test_randomized_stacks_differ_in_optics_noise_and_compression_and_repeat_per_seed():
    from surgifuse.learning.config import DataConfig
    from surgifuse.learning.data import load_stacks, randomized_synth_options

    draws = [randomized_synth_options(seed) for seed in range(20000, 20040)]
    assert randomized_synth_options(20003) == draws[3]  # deterministic per seed
    apertures = [d["numerical_aperture"] for d in draws]
    assert min(apertures) >= 0.04 and max(apertures) <= 0.25 and max(apertures) / min(apertures) > 2
    assert {d["noise"] for d in draws} == {True, False}
    assert any(d["jpeg_quality"] is None for d in draws) and any(d["jpeg_quality"] for d in draws)
    assert any(d["breathing"] > 0 for d in draws) and any(d["breathing"] == 0 for d in draws)
    # Options given explicitly win over the drawn ones.
    config = DataConfig(seed=20000, count=2, synth_height=32, synth_width=32, k=3, randomize=True,
                        synth_options={"noise": False, "jpeg_quality": None, "breathing": 0.0, "motion": 0.0})
    a, b = load_stacks(config), load_stacks(config)
    assert all(np.array_equal(x.frames, y.frames) for x, y in zip(a, b))
    plain = load_stacks(DataConfig(seed=20000, count=2, synth_height=32, synth_width=32, k=3,
                                   synth_options={"noise": False}))
    assert not all(np.array_equal(x.frames, y.frames) for x, y in zip(a, plain))  # other optics
