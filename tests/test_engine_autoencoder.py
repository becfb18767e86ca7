"""Engine ``autoencoder`` (paper 003) on the shipped ONNX model."""

import numpy as np
import pytest

from surgifuse.engines import create_engine
from surgifuse.engines.onnx_models import find_model


@pytest.fixture(scope="module")
def engine():
    # The model ships in models/: missing, it is a failure, not a skip.
    return create_engine("autoencoder", threads=1)


def _two_halves(rng):
    import cv2

    sharp = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    sharp = cv2.GaussianBlur(sharp, (3, 3), 0.7)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 3)
    a, b = sharp.copy(), sharp.copy()
    a[:, 48:] = blurred[:, 48:]  # frame 0 sharp on the left
    b[:, :48] = blurred[:, :48]  # frame 1 sharp on the right
    return sharp, [a, b]


def test_picks_the_sharp_frame(engine, rng):
    sharp, frames = _two_halves(rng)
    r = engine.fuse(frames)
    assert r.image.shape == sharp.shape and r.image.dtype == np.uint8
    err = np.abs(r.image.astype(int) - sharp).mean()
    assert err < 0.25 * min(np.abs(f.astype(int) - sharp).mean() for f in frames)
    assert np.median(r.depth_index[:, :40]) == 0 and np.median(r.depth_index[:, 56:]) == 1
    assert 0 <= r.confidence.min() and r.confidence.max() <= 1


def test_streaming_halves_equal_fuse(engine, rng):
    _, frames = _two_halves(rng)
    prepared = [engine.prepare_frame(f) for f in frames]
    assert prepared[0].dtype == np.uint32 and prepared[0].shape == (64, 96)
    a = engine.fuse_prepared(frames, prepared)
    b = engine.fuse(frames)
    np.testing.assert_array_equal(a.image, b.image)


def test_identical_frames_give_the_frame(engine, rng):
    f = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(engine.fuse([f, f, f]).image, f)


def test_grey_and_bad_input(engine, rng):
    g = rng.integers(0, 256, (32, 40), dtype=np.uint8)
    assert engine.fuse([g, g]).image.shape == g.shape
    with pytest.raises(TypeError, match="uint8"):
        engine.prepare_frame(g.astype(np.uint16))
    with pytest.raises(ValueError, match="HxW"):
        engine.prepare_frame(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="match"):
        engine.fuse_prepared([g, g], [engine.prepare_frame(g)])
    with pytest.raises(ValueError, match="radius"):
        create_engine("autoencoder", filter_radius=-1)


def test_model_card_exists():
    from pathlib import Path

    assert (Path(__file__).resolve().parents[1] / "docs" / "models" / "autoencoder.md").is_file()


def test_onnx_file_alone_is_enough(tmp_path, monkeypatch, rng):
    import shutil

    shutil.copy(find_model("autoencoder_activity.onnx"), tmp_path)
    monkeypatch.setenv("SURGIFUSE_MODELS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    import surgifuse.engines.onnx_models as om

    monkeypatch.setattr(om, "model_dirs", lambda: [tmp_path])
    engine = create_engine("autoencoder", threads=1)
    f = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    np.testing.assert_array_equal(engine.fuse([f, f]).image, f)
