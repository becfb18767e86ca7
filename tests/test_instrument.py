"""The instrument tip's height above the retina: the library on generated stacks, ``surgifuse fuse
--report``, and the live stream's header."""

from __future__ import annotations

import json

import numpy as np
import pytest

from surgifuse.cli import main
from surgifuse.engines import create_engine
from surgifuse.errors import InputError
from surgifuse.evaluation.depth import depth_in_steps
from surgifuse.instrument import measure_instrument
from surgifuse.synth import generate_stack
from surgifuse.synth.stack import write_stack

# Stacks of our generator that no tuning used (tuning: seeds 3000-3011).
SEEDS = (9104, 9110)


def _true_height_steps(stack) -> float:
    truth = stack.meta["instrument_truth"]
    fp = stack.focus_positions
    return float(depth_in_steps(truth["retina_depth_under_tip_mm"], fp, clamp=False)
                 - depth_in_steps(truth["tip_depth_mm"], fp, clamp=False))


@pytest.fixture(scope="module")
def engine():
    return create_engine("classical")


@pytest.mark.parametrize("seed", SEEDS)
def test_tip_height_on_a_generated_stack_is_within_half_a_step(engine, seed):
    stack = generate_stack(seed, scene="fundus", instrument=True)
    result = engine.fuse(stack.frames)
    step_mm = stack.focus_positions[1] - stack.focus_positions[0]
    reading = measure_instrument(result.depth_index, result.image, confidence=result.confidence,
                                 focus_step_mm=step_mm, k=stack.k)
    truth = stack.meta["instrument_truth"]
    assert reading.present
    assert abs(reading.height_steps - _true_height_steps(stack)) <= 0.5
    assert reading.height_mm == pytest.approx(reading.height_steps * step_mm)
    # the tip is found where it is (within 0.4 mm: a forceps' tip is between its jaws)
    assert np.hypot(reading.tip_xy[0] - truth["tip_xy"][0], reading.tip_xy[1] - truth["tip_xy"][1]) < 0.4 * 512 / 8


@pytest.mark.parametrize("seed", (9200, 9201))
def test_absent_when_there_is_no_instrument(engine, seed):
    stack = generate_stack(seed, scene="mixed", instrument=False)
    result = engine.fuse(stack.frames)
    reading = measure_instrument(result.depth_index, result.image, confidence=result.confidence, k=stack.k)
    assert not reading.present
    assert reading.as_dict() == {"present": False, "tip_xy": None, "height_steps": None, "height_mm": None}


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="image must be HxWx3"):
        measure_instrument(np.zeros((8, 8), np.float32), np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(InputError, match="focus_step_mm"):
        measure_instrument(np.zeros((8, 8), np.float32), np.zeros((8, 8, 3), np.uint8), focus_step_mm=0.0)


@pytest.fixture(scope="module")
def stack_folder(tmp_path_factory):
    stack = generate_stack(SEEDS[0], scene="fundus", instrument=True)
    folder = write_stack(stack, tmp_path_factory.mktemp("stack") / "s")
    return folder, stack


def test_fuse_report_json(stack_folder, tmp_path):
    folder, stack = stack_folder
    report = tmp_path / "report.json"
    assert main(["fuse", str(folder), "--pattern", "frame_*", "-o", str(tmp_path / "out.png"),
                 "--depth", str(tmp_path / "depth.png"), "--report", str(report), "--quiet"]) == 0
    data = json.loads(report.read_text())
    assert set(data) == {"instrument", "depth_scale"}
    assert set(data["instrument"]) == {"present", "tip_xy", "height_steps", "height_mm"}
    inst = data["instrument"]
    assert inst["present"] is True and len(inst["tip_xy"]) == 2 and all(isinstance(v, float) for v in inst["tip_xy"])
    assert abs(inst["height_steps"] - _true_height_steps(stack)) <= 0.5
    assert inst["height_mm"] is None  # no --focus-step-mm
    # depth_scale turns the 16-bit depth image into focus steps
    assert data["depth_scale"] == pytest.approx((stack.k - 1) / 65535)
    from surgifuse.imageio import read_image

    depth16 = read_image(tmp_path / "depth.png")
    assert depth16.dtype == np.uint16 and float(depth16.max()) * data["depth_scale"] <= stack.k - 1 + 1e-6


def test_focus_step_mm_converts_heights(stack_folder, tmp_path):
    folder, _ = stack_folder
    out = []
    for mm in (None, 0.25):
        report = tmp_path / f"r{mm}.json"
        args = ["fuse", str(folder), "--pattern", "frame_*", "-o", str(tmp_path / "o.png"), "--report", str(report),
                "--quiet"]
        assert main(args + ([] if mm is None else ["--focus-step-mm", str(mm)])) == 0
        out.append(json.loads(report.read_text())["instrument"])
    assert out[0]["height_mm"] is None
    assert out[1]["height_steps"] == out[0]["height_steps"]
    assert out[1]["height_mm"] == pytest.approx(out[1]["height_steps"] * 0.25, abs=1e-3)


@pytest.mark.parametrize("extra, message", [(["--focus-step-mm", "0.5"], "needs --report"),
                                            (["--report", "r.json", "--focus-step-mm", "-1"], "must be a number > 0")])
def test_focus_step_mm_errors(stack_folder, tmp_path, capsys, extra, message):
    folder, _ = stack_folder
    code = main(["fuse", str(folder), "--pattern", "frame_*", "-o", str(tmp_path / "o.png"), *extra])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


# -- live ------------------------------------------------------------------------------------------


def _demo_app(**settings):
    from surgifuse.live.sources import SyntheticSweepSource
    from surgifuse.service.app import create_app
    from surgifuse.service.settings import ServiceSettings

    source = SyntheticSweepSource(seed=0, height=240, width=320, k=5, instrument_motion=False, eye_motion=False)
    options = {"budget_ms": 2000.0, "k": 5, **settings}
    return create_app(ServiceSettings(_env_file=None, **options), source=source)


def test_the_stream_header_carries_the_instrument_read_out():
    import httpx
    from live_support import receive_frames, running_server, ws_url
    from websockets.sync.client import connect

    with running_server(_demo_app(focus_step_mm=0.35)) as base:
        with connect(ws_url(base)) as ws:
            frames, _ = receive_frames(ws, 24, timeout=60)
        assert httpx.put(f"{base}/v1/settings", json={"instrument_warning_steps": 10.0}).status_code == 200
        with connect(ws_url(base)) as ws:
            later, _ = receive_frames(ws, 16, timeout=60)
        assert httpx.get(f"{base}/v1/settings").json()["instrument_warning_steps"] == 10.0
    headers = [h for h, _ in frames]
    assert all("instrument" in h for h in headers)
    measured = [h["instrument"] for h in headers if h["instrument"] is not None]
    # measured on the frames whose stack spans the whole sweep: 2 of every 8 with K=5
    assert len(measured) >= 3
    for reading in measured:
        assert set(reading) >= {"present", "tip_xy", "height_steps", "height_mm", "warning", "warning_steps"}
        assert reading["present"] is True and 0 <= reading["tip_xy"][0] < 320 and 0 <= reading["tip_xy"][1] < 240
        # the demo's forceps (seed 0, 320x240) is 2.80 focus steps above the retina: its renderer's
        # retina depth under the tip minus the instrument's depth there, over its focus spacing
        assert abs(reading["height_steps"] - 2.80) < 0.5
        assert reading["height_mm"] == pytest.approx(reading["height_steps"] * 0.35, abs=1e-3)
        assert reading["warning"] is False and reading["warning_steps"] == 1.0
    for h in headers:
        if h["instrument"] is not None:
            assert h["timings"]["instrument"] >= 0
    warned = [h["instrument"] for h, _ in later if h["instrument"] is not None]
    assert warned and all(r["warning"] is True and r["warning_steps"] == 10.0 for r in warned)


def test_warning_distance_is_a_bounded_setting():
    from surgifuse.live.settings import LiveSettings, apply_update

    assert LiveSettings().instrument_warning_steps == 1.0 and LiveSettings().focus_step_mm is None
    assert apply_update(LiveSettings(), {"instrument_warning_steps": 0.5}).settings.instrument_warning_steps == 0.5
    assert apply_update(LiveSettings(focus_step_mm=0.2), {"focus_step_mm": None}).settings.focus_step_mm is None
    for bad in ({"instrument_warning_steps": -1}, {"instrument_warning_steps": 65}, {"focus_step_mm": 0}):
        with pytest.raises(InputError):
            apply_update(LiveSettings(), bad)
