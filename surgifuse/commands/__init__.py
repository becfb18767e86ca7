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


def check_image_outputs(outputs: dict[str, str | None], *, overwrite: bool = True) -> dict[str, str]:
    """Fail before any work if an output image's format is unknown, its folder is missing or
    unwritable, two roles share a path, or (``overwrite=False``) it exists already.

    ``outputs`` maps a role (``"output"``, ``"depth"``...) to a path or ``None`` (not written);
    returns the role -> format (``png``, ``jpeg``, ``tiff``) of those given.
    """
    import os
    from pathlib import Path

    from surgifuse.errors import InputError
    from surgifuse.imageio import format_for_path

    formats = {}
    seen: dict[Path, str] = {}
    for role, path in outputs.items():
        if not path:
            continue
        formats[role] = format_for_path(path)
        resolved = Path(path).resolve()
        if resolved in seen:
            raise InputError(f"{path}: used for both the {seen[resolved]} and the {role} output")
        seen[resolved] = role
        if resolved.is_dir():
            raise InputError(f"{path}: is a folder; give a file name for the {role} output")
        folder = resolved.parent
        if not folder.is_dir():
            raise FileNotFoundError(f"{path}: output folder {folder} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(f"{path}: output folder {folder} is not writable")
        if not overwrite and resolved.exists():
            raise InputError(f"{path}: exists; pass --overwrite to replace it, or choose another {role}", file=path)
    return formats
