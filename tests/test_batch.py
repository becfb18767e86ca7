"""``surgifuse batch``: every stack folder and video under a folder, fused as ``fuse`` / ``fuse-video``
fuse them, resumable, failures isolated; on a local Ray cluster with the same bytes."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from optional import optional_import

from surgifuse.cli import main
from surgifuse.synth import generate_stack, write_stack
from surgifuse.synth.video import write_sweep_video

STACKS = ["a/s1", "a/s2", "b/c/s10"]
VIDEO = "a/v.mp4"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Three small stacks in nested folders, a short video, and what is not an item: a folder with
    one image, a hidden stack, the video's truth file."""
    root = tmp_path_factory.mktemp("archive") / "in"
    for seed, name in enumerate(STACKS):
        write_stack(generate_stack(seed, height=64, width=80, k=3, breathing=0.01), root / name)
    write_sweep_video(root / VIDEO, seed=5, height=48, width=64, frames=10)
    (root / "b" / "one").mkdir()
    shutil.copy(root / "a" / "s1" / "frame_0.png", root / "b" / "one" / "frame_0.png")
    shutil.copytree(root / "a" / "s1", root / ".hidden")
    return root


@pytest.fixture(scope="module")
def serial(archive, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "out"
    assert main(["batch", str(archive), "-o", str(out), "--depth", "--no-progress", "--quiet"]) == 0
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _expected_names() -> set[str]:
    return {f"{s}{suffix}.png" for s in STACKS for suffix in ("", "_depth")} | {VIDEO, "a/v_depth.mp4"}


def test_serial_outputs_are_the_files_of_fuse_and_fuse_video(archive, serial, tmp_path):
    outputs = _files(serial)
    assert set(outputs) == _expected_names()  # no temporary file, nothing for b/one or .hidden
    for stack in STACKS:
        name = Path(stack).name
        assert main(["fuse", str(archive / stack), "-o", str(tmp_path / f"{name}.png"),
                     "--depth", str(tmp_path / f"{name}_depth.png"), "--quiet"]) == 0
        assert outputs[f"{stack}.png"] == (tmp_path / f"{name}.png").read_bytes(), stack
        assert outputs[f"{stack}_depth.png"] == (tmp_path / f"{name}_depth.png").read_bytes(), stack
    assert main(["fuse-video", str(archive / VIDEO), "-o", str(tmp_path / "v.mp4"), "--depth",
                 str(tmp_path / "v_depth.mp4"), "--no-progress", "--quiet"]) == 0
    assert outputs[VIDEO] == (tmp_path / "v.mp4").read_bytes()
    assert outputs["a/v_depth.mp4"] == (tmp_path / "v_depth.mp4").read_bytes()


def test_options_pass_through_to_each_item(archive, tmp_path):
    out = tmp_path / "out"
    assert main(["batch", str(archive), "-o", str(out), "--no-align", "--k", "4", "--engine-option", "threshold=9",
                 "--no-progress", "--quiet"]) == 0
    assert set(_files(out)) == {f"{s}.png" for s in STACKS} | {VIDEO}  # no depth without --depth
    assert main(["fuse", str(archive / "a/s2"), "-o", str(tmp_path / "s2.png"), "--no-align",
                 "--engine-option", "threshold=9", "--quiet"]) == 0
    assert (out / "a/s2.png").read_bytes() == (tmp_path / "s2.png").read_bytes()
    assert main(["fuse-video", str(archive / VIDEO), "-o", str(tmp_path / "v.mp4"), "--no-align", "--k", "4",
                 "--engine-option", "threshold=9", "--no-progress", "--quiet"]) == 0
    assert (out / VIDEO).read_bytes() == (tmp_path / "v.mp4").read_bytes()


def test_a_second_run_skips_every_finished_item(archive, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["batch", str(archive), "-o", str(out), "--depth", "--no-progress"]
    assert main(args) == 0
    assert "4 items (3 stacks, 1 video) serially" in capsys.readouterr().out
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    report = tmp_path / "report.json"
    assert main([*args, "--report", str(report)]) == 0
    assert "0 done, 4 skipped, 0 failed" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps
    assert json.loads(report.read_text())["counts"] == {"items": 4, "done": 0, "skipped": 4, "failed": 0}

    # An item with an output missing (a run stopped before its depth was renamed into place) is redone;
    # a temporary file of an interrupted write does not count as an output.
    (out / "a/s2_depth.png").unlink()
    (out / "b/c/.s10.png.tmp").write_bytes(b"half")
    assert main(args) == 0
    assert "1 done, 3 skipped, 0 failed" in capsys.readouterr().out
    assert (out / "a/s2_depth.png").is_file()

    assert main([*args, "--overwrite"]) == 0
    assert "4 done, 0 skipped, 0 failed" in capsys.readouterr().out


def test_an_output_folder_inside_the_input_is_not_walked(archive, tmp_path, capsys):
    root = tmp_path / "in"
    shutil.copytree(archive, root)
    args = ["batch", str(root), "-o", str(root / "fused"), "--no-progress"]
    assert main(args) == 0
    assert "4 items (3 stacks, 1 video) serially" in capsys.readouterr().out
    assert main(args) == 0  # its own outputs (a video among them) are not items of the next run
    assert "4 items (3 stacks, 1 video) serially" in (out := capsys.readouterr().out) and "4 skipped" in out


def test_a_broken_stack_fails_alone_and_the_run_exits_1(archive, serial, tmp_path, capsys):
    root = tmp_path / "in"
    shutil.copytree(archive, root)
    (root / "a/s2/frame_1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out, report = tmp_path / "out", tmp_path / "report.json"
    assert main(["batch", str(root), "-o", str(out), "--depth", "--no-progress", "--report", str(report)]) == 1
    captured = capsys.readouterr()
    assert "surgifuse batch: a/s2: failed:" in captured.err and "frame_1.png" in captured.err
    assert "3 done, 0 skipped, 1 failed" in captured.out and "failed: a/s2" in captured.out
    done = _files(out)
    assert set(done) == _expected_names() - {"a/s2.png", "a/s2_depth.png"}
    assert done == {name: data for name, data in _files(serial).items() if name in done}
    items = {item["name"]: item for item in json.loads(report.read_text())["items"]}
    assert items["a/s2"]["status"] == "failed" and "frame_1.png" in items["a/s2"]["error"]
    assert items["a/s2"]["traceback"] is None  # bad input, not a bug
    assert {name: item["status"] for name, item in items.items() if name != "a/s2"} == dict.fromkeys(
        ["a/s1", VIDEO, "b/c/s10"], "done")
    assert items["a/s1"]["outputs"] == ["a/s1.png", "a/s1_depth.png"]


def test_a_bug_in_one_item_is_reported_with_its_traceback(archive, tmp_path, capsys, monkeypatch):
    import surgifuse.commands.fuse as fuse_command

    real = fuse_command.fuse_stack_to_files

    def failing(inputs, output, **kwargs):
        if "s10" in str(inputs[0]):
            raise RuntimeError("boom")
        return real(inputs, output, **kwargs)

    monkeypatch.setattr(fuse_command, "fuse_stack_to_files", failing)
    assert main(["batch", str(archive), "-o", str(tmp_path / "out"), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "surgifuse batch: b/c/s10: failed: RuntimeError: boom" in captured.err and "Traceback" in captured.err
    assert "3 done, 0 skipped, 1 failed" in captured.out


def test_ray_on_a_local_cluster_writes_the_serial_bytes(archive, serial, tmp_path, capsys):
    ray = optional_import("ray")
    import psutil

    out = tmp_path / "out"
    assert main(["batch", str(archive), "-o", str(out), "--depth", "--no-progress", "--ray", "--num-cpus", "2"]) == 0
    captured = capsys.readouterr()
    assert "4 items (3 stacks, 1 video) on a local Ray cluster" in captured.out
    assert _files(out) == _files(serial)
    assert not ray.is_initialized()  # the cluster batch started is shut down
    left = [p.name() for p in psutil.Process().children(recursive=True) if p.is_running()]
    assert not [name for name in left if "raylet" in name or "gcs_server" in name], left


def test_ray_not_installed_is_a_clear_input_error(archive, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["batch", str(archive), "-o", str(tmp_path / "out"), "--ray"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("surgifuse batch: error: --ray needs Ray") and "'batch' extra" in err
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_a_ray_address_nobody_answers_is_an_input_error(archive, tmp_path, capsys):
    optional_import("ray")
    # Port 1 on the loopback: refused at once (ray.init alone would wait for it without end).
    assert main(["batch", str(archive), "-o", str(tmp_path / "out"), "--ray=127.0.0.1:1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("surgifuse batch: error: --ray 127.0.0.1:1: no Ray head node answers")
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("make_args, expected", [
    (lambda a, t: [str(t / "missing"), "-o", str(t / "out")], "no such folder"),
    (lambda a, t: [str(a / VIDEO), "-o", str(t / "out")], "not a folder"),
    (lambda a, t: [str(a / "b" / "one"), "-o", str(t / "out")], "no stack folder"),
    (lambda a, t: [str(a), "-o", str(a)], "OUTPUT is INPUT"),
    (lambda a, t: [str(a), "-o", str(a / "a" / "s1")], "OUTPUT is a stack folder"),
    (lambda a, t: [str(a), "-o", str(a / VIDEO)], "not a folder"),
    (lambda a, t: [str(a), "-o", str(t / "out"), "--engine", "nope"], "--engine"),
    (lambda a, t: [str(a), "-o", str(t / "out"), "--engine-option", "threshold=-1"], "threshold"),
    (lambda a, t: [str(a), "-o", str(t / "out"), "--k", "40"], "1..31"),
    (lambda a, t: [str(a), "-o", str(t / "out"), "--report", str(t / "nofolder" / "r.json")], "does not exist"),
    (lambda a, t: [str(a), "-o", str(t / "out"), "--num-cpus", "2"], "--num-cpus"),
])
def test_bad_arguments_are_one_line_and_exit_2(archive, tmp_path, capsys, make_args, expected):
    before = _files(archive)
    assert main(["batch", *make_args(archive, tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("surgifuse batch: error:") and expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists() and _files(archive) == before


def test_two_items_writing_one_file_is_refused(tmp_path, capsys):
    root = tmp_path / "in"
    for seed, name in enumerate(["s", "s_depth"]):
        write_stack(generate_stack(seed, height=32, width=32, k=2), root / name)
    assert main(["batch", str(root), "-o", str(tmp_path / "out"), "--depth"]) == 2
    assert "s_depth and s would both write" in capsys.readouterr().err
    assert main(["batch", str(root), "-o", str(tmp_path / "out"), "--no-progress", "--quiet"]) == 0


def test_a_missing_option_value_is_argparse_exit_2(archive, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["batch", str(archive)])
    assert exc.value.code == 2 and "-o/--output" in capsys.readouterr().err
