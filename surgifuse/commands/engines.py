"""``surgifuse engines``: the fusion engines, each with its options (type, bounds, default) and
limits (largest K, pixel types, channels), as they declare them (``surgifuse.engines.spec``)."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="one engine (default: all of them)")
    parser.add_argument("--json", action="store_true", help="print the declarations as JSON (default: a table)")


def run(args: argparse.Namespace) -> int:
    from surgifuse.engines import engine_names, engine_spec

    specs = [engine_spec(name) for name in ([args.name] if args.name else engine_names())]
    if args.json:
        print(json.dumps([spec.as_dict() for spec in specs], indent=2))
        return 0
    for spec in specs:
        limits = spec.limits
        max_k = "any" if limits.max_k is None else limits.max_k
        if limits.streaming and limits.max_k is not None:
            max_k = f"{max_k} (offline any, one frame at a time)"
        print(f"{spec.name}: {spec.summary}")
        print(f"  limits: K 1..{max_k}, {'/'.join(limits.dtypes)}, "
              f"{' or '.join('grey' if c == 1 else f'{c}-channel' for c in limits.channels)}, "
              f"at least {limits.min_side} px per side, frame order {'free' if limits.order_invariant else 'matters'}")
        for opt in spec.options:
            print(f"  --engine-option {opt.name}=...  {opt.help}; {opt.allowed()} (default {opt.default!r})")
        print()
    return 0
