"""``surgifuse serve`` checks everything before it listens: one line and exit 2 for a value the engine
cannot honour or a port in use (it used to print "startup complete", then exit 3)."""

from __future__ import annotations

import socket

import pytest

from surgifuse.cli import main


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.err.startswith("surgifuse serve: error:") and captured.err.count("\n") == 1, captured.err
    assert "startup complete" not in captured.out + captured.err
    return captured.err


def test_a_port_in_use_is_one_line_and_exit_2(capsys):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = _one_error_line(capsys)
    assert f"port {port}" in err and "--port" in err


@pytest.mark.parametrize("argv, named", [
    (["--k", "40"], "1..31"),                                        # the classical engine's largest K
    (["--engine", "msmfm", "--engine-option", "threshold=9"], "threshold"),  # msmfm has no threshold
    (["--engine-option", "threshold=-1"], "threshold"),
    (["--engine-option", "threshold"], "NAME=VALUE"),
    (["--engine", "fn", "--engine-option", "model=no_such_model"], "no_such_model"),
    (["--engine", "nope"], "unknown engine"),
    (["--k", "0"], "--k"),
])
def test_a_setting_the_engine_cannot_honour_is_one_line_and_exit_2(capsys, monkeypatch, argv, named):
    monkeypatch.delenv("SURGIFUSE_ENGINE_OPTIONS", raising=False)
    assert main(["serve", "--port", "0", *argv]) == 2
    assert named in _one_error_line(capsys)


def test_engine_options_from_the_command_line_reach_the_settings(monkeypatch):
    from surgifuse.cli import build_parser
    from surgifuse.commands.serve import settings_from_args

    monkeypatch.setenv("SURGIFUSE_ENGINE_OPTIONS", '{"filter_radius": 2}')
    args = build_parser().parse_args(["serve", "--engine-option", "threshold=9", "--engine-option", "mode=fmb1",
                                      "--no-align", "--k", "7"])
    settings = settings_from_args(args)
    # the command line adds to the environment's options, and each value has the option's type
    assert settings.engine_options == {"filter_radius": 2, "threshold": 9, "mode": "fmb1"}
    assert settings.k == 7 and settings.align is False
