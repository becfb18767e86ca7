"""Sub-commands of the ``surgifuse`` CLI, one module each (see ``surgifuse.cli``)."""


def add_engine_arguments(parser) -> None:
    """``--engine`` and ``--engine-option NAME=VALUE`` (repeatable), as ``fuse`` and ``fuse-video``
    take them (``serve`` generates its options from the settings)."""
    parser.add_argument("--engine", default="classical", metavar="NAME",
                        help="fusion engine: classical (default), fn, autoencoder, msmfm (`surgifuse engines` "
                             "lists them with their options and limits)")
    parser.add_argument("--engine-option", action="append", default=[], metavar="NAME=VALUE",
                        help="an option of the engine, repeatable (e.g. --engine-option threshold=9; default: the "
                             "engine's own)")


def parse_engine_options(engine: str, assignments) -> tuple:
    """``(spec, options)``: the engine's declaration and its ``--engine-option NAME=VALUE`` items as
    validated options; an ``InputError`` naming ``--engine`` or ``--engine-option`` otherwise."""
    from surgifuse.engines import engine_spec
    from surgifuse.errors import InputError

    try:
        spec = engine_spec(engine)
        return spec, spec.parse_assignments(list(assignments))
    except InputError as exc:
        flag = "--engine" if exc.field == "engine" else "--engine-option"
        raise InputError(f"{flag}: {exc}", field=exc.field, allowed=exc.allowed) from None
