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
