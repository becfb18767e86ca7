"""Engine ``fn`` on the shipped ONNX models: streaming equals whole stack, ONNX Runtime equals PyTorch,
outputs in range, bad input rejected."""


import numpy as np
import pytest
from optional import optional_import

from surgifuse.engines import create_engine
from surgifuse.engines.onnx_models import find_model
from surgifuse.errors import InputError


@pytest.fixture(scope="module")
def engine():
    # The model ships in models/: missing, it is a failure, not a skip.
    return create_engine("fn", threads=1)


@pytest.fixture(scope="module")
def stack():
    from surgifuse.synth import generate_stack

    s = generate_stack(40900, height=64, width=80, k=4, scene="fundus", instrument=False)
    return s


def test_fuse_outputs(engine, stack):
    r = engine.fuse(stack.frames)
    assert r.image.shape == stack.frames[0].shape and r.image.dtype == np.uint8
    assert r.depth_index.shape == (64, 80) and r.depth_index.dtype == np.float32
    assert 0 <= r.depth_index.min() and r.depth_index.max() <= 3
    assert 0 <= r.confidence.min() and r.confidence.max() <= 1
    assert "fuse_refine" in r.timings


def test_streaming_equals_whole_stack_graph(engine, stack):
    import onnxruntime as ort

    frames = list(stack.frames)
    prepared = [engine.prepare_frame(f) for f in frames]
    streamed = engine.fuse_prepared(frames, prepared)
    sidecar = engine.model_info
    whole = ort.InferenceSession(str(find_model(sidecar["graphs"]["whole"])), providers=["CPUExecutionProvider"])
    x = np.concatenate([engine.network_input(f) for f in frames])
    img, weights = whole.run(None, {"x": x})
    ref = np.clip(np.rint(np.moveaxis(img[0], 0, 2) * 255), 0, 255).astype(np.uint8)
    assert np.abs(streamed.image.astype(int) - ref).max() <= 1
    depth = np.tensordot(np.arange(len(frames), dtype=np.float32), weights[0], axes=1)
    assert np.abs(streamed.depth_index - depth).max() < 1e-4
    # The buffer's cached features can be reused in any order: the fusion is order-free.
    order = [2, 0, 3, 1]
    shuffled = engine.fuse_prepared([frames[i] for i in order], [prepared[i] for i in order])
    assert np.abs(shuffled.image.astype(int) - streamed.image).max() <= 1


def test_onnx_matches_pytorch(engine, stack):
    torch = optional_import("torch")
    import onnx
    from onnx import numpy_helper

    from surgifuse.learning.config import FusionNetConfig, config_from_dict
    from surgifuse.learning.models import FusionNet

    # Rebuild the PyTorch model from the shipped whole-stack graph's weights (exported in module order).
    sidecar = engine.model_info
    net = FusionNet(config_from_dict(FusionNetConfig, sidecar["model_config"])).eval()
    graph = onnx.load(str(find_model(sidecar["graphs"]["whole"]))).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    state = net.state_dict()
    missing = [k for k in state if k not in init]
    assert not missing, f"the shipped graph's initializer names differ from the state dict ({missing[:2]}...)"
    net.load_state_dict({k: torch.from_numpy(init[k].copy()) for k in state})
    frames = np.stack(stack.frames)
    with torch.no_grad():
        ref = net(torch.from_numpy(np.moveaxis(frames, -1, 1)).float().div(255)[None])[0].numpy()
    x = np.concatenate([engine.network_input(f) for f in stack.frames])
    import onnxruntime as ort

    got = ort.InferenceSession(str(find_model(sidecar["graphs"]["whole"])), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0][0]
    assert np.abs(got - ref).max() < 1e-4


def test_single_frame_and_identical_frames(engine, stack):
    f = stack.gt
    one = engine.fuse([f])
    assert one.image.shape == f.shape
    same = engine.fuse([f, f, f])
    # Identical frames: blend weights are uniform, so the depth is the middle index and confidence 0.
    np.testing.assert_allclose(same.depth_index, 1.0, atol=1e-4)
    np.testing.assert_allclose(same.confidence, 0.0, atol=1e-4)


def test_grey_frames(engine, stack):
    grey = [np.ascontiguousarray(f[:, :, 1]) for f in stack.frames]
    r = engine.fuse(grey)
    assert r.image.shape == grey[0].shape and r.image.dtype == np.uint8


def test_bad_input(engine, stack):
    with pytest.raises(TypeError, match="uint8"):
        engine.fuse([f.astype(np.float32) for f in stack.frames])
    with pytest.raises(ValueError, match="HxW"):
        engine.prepare_frame(np.zeros((8, 8, 4), np.uint8))
    frames = list(stack.frames)
    with pytest.raises(ValueError, match="match"):
        engine.fuse_prepared(frames, [engine.prepare_frame(frames[0])])
    with pytest.raises(TypeError, match="prepare_frame"):
        engine.fuse_prepared(frames[:1], [np.zeros(3)])


def test_missing_model_and_bad_device():
    with pytest.raises(InputError, match="not found") as missing:
        create_engine("fn", model="no_such_model")
    assert missing.value.field == "model"
    with pytest.raises(InputError, match="device") as bad:
        create_engine("fn", device="tpu")
    assert bad.value.field == "device" and bad.value.allowed == "one of auto, cpu, cuda"


def test_model_card_and_sidecar_agree(engine):
    from pathlib import Path

    card = Path(__file__).resolve().parents[1] / "docs" / "models" / "fusion_net.md"
    assert card.is_file(), "every shipped model needs a model card"
    assert engine.model_info["export_check"]["max_abs_diff"] < 1e-4


def test_onnx_files_alone_are_enough(tmp_path, monkeypatch, engine, stack):
    import shutil

    import surgifuse.engines.onnx_models as om

    for part in ("encoder", "fuse"):
        shutil.copy(find_model(engine.model_info["graphs"][part]), tmp_path)
    monkeypatch.setattr(om, "model_dirs", lambda: [tmp_path])
    alone = create_engine("fn", threads=1)
    assert alone.model_info["model_config"] == engine.model_info["model_config"]
    np.testing.assert_array_equal(alone.fuse(stack.frames).image, engine.fuse(stack.frames).image)
