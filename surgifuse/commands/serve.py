"""``surgifuse serve``: the live service (display page, websocket stream, upload, metrics).

Its options are the fields of the one settings class (``surgifuse.service.settings.ServiceSettings``,
whose processing part is ``surgifuse.live.settings.LiveSettings``), generated from it with their
descriptions, bounds and defaults. Options override ``SURGIFUSE_*`` environment variables, which
override the defaults. The token is read from ``SURGIFUSE_TOKEN`` only, never from the command line
(it would show in the process list). Everything is checked before the service listens: a value the
engine cannot honour or a port in use is one line and exit 2.
"""

from __future__ import annotations

import argparse
import types
import typing

from surgifuse.errors import InputError

#: Settings the command line does not take: the token (environment only) and the engine options
#: (``--engine-option NAME=VALUE``, checked against the chosen engine's declaration).
_NOT_OPTIONS = ("token", "engine_options")


def _settings_fields() -> dict:
    from surgifuse.service.settings import ServiceSettings

    return {name: info for name, info in ServiceSettings.model_fields.items() if name not in _NOT_OPTIONS}


def _value_type(annotation) -> type:
    """``int`` for ``int | None`` and the like: the type argparse converts the option's text to."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, info in _settings_fields().items():
        flag = "--" + name.replace("_", "-")
        default = info.get_default(call_default_factory=True)
        shown = "none" if default is None else ("on" if default is True else "off" if default is False else default)
        help_text = f"{info.description} (default {shown}; env SURGIFUSE_{name.upper()})"
        kind = _value_type(info.annotation)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=None, metavar=name.split("_")[-1].upper(), help=help_text)
    parser.add_argument("--engine-option", action="append", default=[], metavar="NAME=VALUE",
                        help="an option of the engine, repeatable (e.g. --engine-option threshold=9); "
                             "`surgifuse engines` lists each engine's options with bounds and defaults "
                             "(default: the engine's own; env SURGIFUSE_ENGINE_OPTIONS as JSON)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="log level (default info)")


def settings_from_args(args: argparse.Namespace):
    """The service settings from the options given (over the environment), checked against the
    engine's declaration; ``InputError`` naming the option otherwise."""
    from pydantic import ValidationError

    from surgifuse.engines import engine_spec
    from surgifuse.live.settings import check_settings
    from surgifuse.service.settings import ServiceSettings

    given = {name: getattr(args, name) for name in _settings_fields() if getattr(args, name, None) is not None}
    try:
        settings = ServiceSettings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(map(str, first["loc"]))
        problems = "; ".join(f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        raise InputError(f"invalid setting: {problems}", field=name) from None
    if args.engine_option:
        options = engine_spec(settings.engine).parse_assignments(args.engine_option)
        settings = settings.model_copy(update={"engine_options": {**settings.engine_options, **options}})
    check_settings(settings.live())
    return settings


def run(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from surgifuse.service.app import UVICORN_OPTIONS, create_app
    from surgifuse.service.listen import check_can_listen

    settings = settings_from_args(args)
    settings.check_security()
    check_can_listen(settings.host, settings.port)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    pipeline = app.state.pipeline
    if settings.source == "demo":
        # The demo's frame size is known before the first frame: say now whether the engine keeps up.
        pipeline.check_capability((settings.height, settings.width, 3))
    print(f"SurgiFuse live: http://{settings.host}:{settings.port}/  (source: {pipeline.source.description}, "
          f"engine: {settings.engine}, K={settings.k})", flush=True)
    for line in pipeline.warnings:
        print(f"warning: {line}", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, **UVICORN_OPTIONS)
    return 0
