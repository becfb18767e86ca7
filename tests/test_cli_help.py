"""Every option of every sub-command says what it does and, where it has a default, what it is."""

from __future__ import annotations

import argparse

import pytest

from surgifuse.cli import COMMANDS, build_parser


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_has_a_parser():
    assert set(_subparsers()) == set(COMMANDS)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_has_help_stating_its_default(command):
    parser = _subparsers()[command]
    missing_help, missing_default = [], []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        if not (action.help or "").strip():
            missing_help.append(name)
        elif action.option_strings and action.default is not None and action.default is not False \
                and "default" not in action.help.lower():
            missing_default.append(f"{name} (default {action.default!r})")
    assert not missing_help, f"surgifuse {command}: options without help: {', '.join(missing_help)}"
    assert not missing_default, f"surgifuse {command}: help does not state the default: {', '.join(missing_default)}"



def test_a_command_being_run_declares_only_its_own_options():
    # `surgifuse fuse` need not import the service's settings to declare `serve`'s options
    action = next(a for a in build_parser("fuse")._actions if isinstance(a, argparse._SubParsersAction))
    assert set(action.choices) == set(COMMANDS)
    assert [a.dest for a in action.choices["serve"]._actions] == ["help"]
    full = _subparsers()["fuse"]
    assert [a.dest for a in action.choices["fuse"]._actions] == [a.dest for a in full._actions]
