"""Progress reporting: a bar on a terminal, plain lines at a modest rate anywhere else (no carriage
returns in a log), nothing when disabled; and every long command follows that rule."""

from __future__ import annotations

import io

import pytest

from surgifuse import progress
from surgifuse.cli import main


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress, "_now", lambda: now[0])
    return now


def test_log_gets_a_line_per_interval_and_one_when_done(clock):
    log = io.StringIO()
    bar = progress.progress_bar(total=100, desc="train fn", unit="step", stream=log, interval_s=10.0)
    for _ in range(60):  # 60 steps, 0.5 s each: 30 s
        clock[0] += 0.5
        bar.update(1)
        bar.set_postfix(loss="0.1234")
    bar.close()
    bar.close()  # closing twice writes nothing more
    text = log.getvalue()
    assert "\r" not in text
    assert text.splitlines() == [
        "train fn: 20/100 step (20%), 10 s, loss=0.1234",
        "train fn: 40/100 step (40%), 20 s, loss=0.1234",
        "train fn: 60/100 step (60%), 30 s, loss=0.1234",
        "train fn: 60/100 step (60%), 30 s, loss=0.1234",
    ]


def test_a_short_run_in_a_log_writes_one_line(clock):
    log = io.StringIO()
    assert list(progress.track(range(3), desc="synth", unit="stack", stream=log)) == [0, 1, 2]
    assert log.getvalue() == "synth: 3/3 stack (100%), 0 s, done\n"


def test_a_terminal_gets_a_bar():
    term = _Terminal()
    bar = progress.progress_bar(total=5, desc="bench", unit="frame", stream=term)
    bar.update(5)
    bar.close()
    assert "\r" in term.getvalue() and "5/5" in term.getvalue()


def test_disabled_writes_nothing():
    for stream in (io.StringIO(), _Terminal()):
        bar = progress.progress_bar(total=5, desc="x", unit="y", enabled=False, stream=stream)
        bar.update(3)
        bar.set_postfix(loss=1)
        bar.close()
        assert list(progress.track([1, 2], desc="x", unit="y", enabled=False, stream=stream)) == [1, 2]
        assert stream.getvalue() == ""


# Every command with progress, its stderr captured as a log would be: no carriage-return redraws.
def test_synth_stacks_in_a_log(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "s"), "--count", "2", "--size", "32", "--k", "2", "--no-noise"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "synth: 2/2 stack" in err


def test_synth_video_in_a_log(tmp_path, capsys):
    assert main(["synth", str(tmp_path), "--count", "0", "--size", "32", "--k", "2", "--video", "3"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "sweep video: 3/3 frame" in err


def test_generate_dataset_in_a_log(tmp_path, capsys):
    from surgifuse.synth import generate_dataset

    generate_dataset(tmp_path, count=2, height=32, width=32, k=2, noise=False, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and "synth: 2/2 stack" in err


def test_training_in_a_log(tmp_path, capsys):
    pytest.importorskip("torch")
    from surgifuse.learning.config import DataConfig, TrainConfig
    from surgifuse.learning.train import train

    data = DataConfig(seed=20000, count=1, synth_height=32, synth_width=32, k=3, crop=24,
                      synth_options={"noise": False, "instrument": False, "scene": "fundus"})
    train(TrainConfig(model="autoencoder", out_dir=str(tmp_path), steps=2, batch_size=1, checkpoint_every=2),
          data, {"stem_width": 4, "growth": 2}, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and "train autoencoder: 2/2 step" in err
