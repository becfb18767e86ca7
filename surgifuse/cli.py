"""The ``surgifuse`` command: one sub-command per module in ``surgifuse.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys

from surgifuse.errors import INPUT_ERRORS

# Each module defines ``add_arguments(parser)`` and ``run(args) -> int``; imported lazily so that
# ``surgifuse serve`` never imports torch and ``--help`` stays fast.
COMMANDS = {
    "fuse": "fuse a focal stack (image files, a folder or a multi-page TIFF) into one image",
    "fuse-video": "apply the live processing (rolling stack, registration, engine, motion guard) to every frame of a video",
    "batch": "fuse every stack folder and video under a folder, serially or on a Ray cluster (resumable)",
    "stitch": "stitch overlapping all-in-focus frames (e.g. of the fundus) into one panorama",
    "synth": "generate synthetic focal stacks with true all-in-focus image and depth",
    "eval": "score fusion engines on focal stacks (PSNR/SSIM against truth, or no-reference metrics)",
    "serve": "run the live service: capture, rolling focal stack, fusion, websocket stream",
    "bench": "measure per-stage latency (p50/p95/p99) and throughput",
    "engines": "list the fusion engines with their options (bounds, defaults) and limits (largest K, pixel types)",
    "train": "train the autoencoder or the Fusion Network (needs the 'train' extra: torch)",
    "export": "export a trained model to ONNX",
}


def _module_name(command: str) -> str:
    return f"surgifuse.commands.{command.replace('-', '_')}"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command``, only that sub-command's arguments are declared (the others
    keep their name and help): declaring ``serve``'s options imports the settings model, 0.2 s that
    ``surgifuse fuse`` need not pay."""
    parser = argparse.ArgumentParser(prog="surgifuse", description="Real-time all-in-focus video for surgical microscopes.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=name)
        if command is not None and name != command:
            continue
        try:
            module = importlib.import_module(_module_name(name))
        except ModuleNotFoundError as exc:
            if exc.name != _module_name(name):
                raise
            p.set_defaults(_missing=True)
            continue
        module.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv and argv[0] in COMMANDS else None).parse_args(argv)
    if getattr(args, "_missing", False):
        print(f"surgifuse {args.command}: not available in this build", file=sys.stderr)
        return 2
    module = importlib.import_module(_module_name(args._module))
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except INPUT_ERRORS as exc:
        # Bad input (an option, a file, a path): one clear line and exit 2. Anything else is a bug
        # and keeps its traceback.
        print(f"surgifuse {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
