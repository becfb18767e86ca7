"""``surgifuse fuse-video``: the live processing on every frame of a recorded video, in order."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from surgifuse.cli import main
from surgifuse.engines import create_engine
from surgifuse.imageio import read_image
from surgifuse.live.frames import CapturedFrame
from surgifuse.live.motion_guard import MotionGuard
from surgifuse.live.processor import FrameProcessor
from surgifuse.synth.video import write_sweep_video


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path, _ = write_sweep_video(tmp_path_factory.mktemp("v") / "sweep.mp4", seed=3, height=96, width=128, frames=24)
    return path


def _decoded(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def test_every_frame_is_the_live_processing_of_the_frames_so_far(video, tmp_path, capsys):
    out = tmp_path / "fused/"
    assert main(["fuse-video", str(video), "-o", f"{out}/", "--depth", f"{tmp_path / 'depth'}/", "--k", "4",
                 "--no-progress"]) == 0
    assert "fused 24 frames 128x96" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"frame_{i:05d}.png" for i in range(24)]
    processor = FrameProcessor(create_engine("classical"), k=4, align=True, guard=MotionGuard())
    for i, frame in enumerate(_decoded(video)):
        expected = processor.process(CapturedFrame(frame, i, 0.0))
        np.testing.assert_array_equal(read_image(out / names[i]), expected.image)
        depth = read_image(tmp_path / "depth" / names[i])
        assert depth.dtype == np.uint16 and depth.shape == (96, 128)
        np.testing.assert_array_equal(depth, np.round(np.clip(expected.depth / 3, 0, 1) * 65535).astype(np.uint16))


def test_a_still_eye_video_fuses_as_with_alignment_off(video, tmp_path):
    aligned, plain = tmp_path / "a/", tmp_path / "b/"
    assert main(["fuse-video", str(video), "-o", f"{aligned}/", "--no-progress", "--quiet"]) == 0
    assert main(["fuse-video", str(video), "-o", f"{plain}/", "--no-align", "--no-progress", "--quiet"]) == 0
    for name in sorted(p.name for p in aligned.iterdir()):
        np.testing.assert_array_equal(read_image(aligned / name), read_image(plain / name))


def test_a_video_output_has_one_frame_per_input_frame(video, tmp_path):
    out = tmp_path / "fused.avi"
    assert main(["fuse-video", str(video), "-o", str(out), "--no-progress", "--quiet"]) == 0
    frames = _decoded(out)
    assert len(frames) == 24 and frames[0].shape == (96, 128, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["fused.avi"]  # no staging file left


@pytest.mark.parametrize("make_args, expected", [
    (lambda v, t: [str(t / "missing.mp4"), "-o", str(t / "o.mp4")], "no such file"),
    (lambda v, t: [str(v), "-o", str(t / "o.gif")], "must end in"),
    (lambda v, t: [str(v), "-o", str(t / "o.mp4"), "--k", "40"], "1..31"),
    (lambda v, t: [str(v), "-o", str(t / "o.mp4"), "--engine-option", "threshold=-1"], "threshold"),
    (lambda v, t: [str(v), "-o", str(t / "nofolder" / "o.mp4")], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(video, tmp_path, capsys, make_args, expected):
    assert main(["fuse-video", *make_args(video, tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("surgifuse fuse-video: error:") and expected in err and err.count("\n") == 1
    assert not any(p.name.startswith(("o.", ".o.")) for p in tmp_path.iterdir())


def test_an_existing_output_is_kept_without_overwrite(video, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"precious")
    assert main(["fuse-video", str(video), "-o", str(out), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"precious"
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    assert main(["fuse-video", str(not_video), "-o", str(tmp_path / "x.mp4"), "--no-progress"]) == 2
    assert "notes.mp4" in capsys.readouterr().err
