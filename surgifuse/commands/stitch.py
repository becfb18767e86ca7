"""``surgifuse stitch``: stitch overlapping all-in-focus frames (image files or a folder of them) into
one panorama (``surgifuse.stitch.stitch``, OpenCV's stitcher), written atomically.

Everything that can be checked before the work is (the output's format, folder, an existing file
without ``--overwrite``), so a failing run leaves no OUT behind and an existing one as it was.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from surgifuse.commands import check_image_outputs
from surgifuse.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from surgifuse.stitch import MODES

    parser.add_argument(
        "inputs", nargs="+", metavar="IMAGE",
        help="at least 2 overlapping images (PNG/JPEG/TIFF, 8-bit, grey or colour; sizes may differ), or a "
             "folder of them (its image files in natural order: frame_2 before frame_10)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="PANORAMA",
                        help="the panorama; format from the extension (.png, .jpg, .tif)")
    parser.add_argument("--mode", default="scans", choices=list(MODES),
                        help="scans (default): affine transforms, a microscope or scanner moving over the field; "
                             "panorama: a camera turning about its centre (spherical projection)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace PANORAMA if it exists (default: refuse)")
    parser.add_argument("--quiet", action="store_true", help="no summary line")


def run(args: argparse.Namespace) -> int:
    from surgifuse import imageio
    from surgifuse.stitch import stitch

    t_start = time.perf_counter()
    check_image_outputs({"output": args.output}, overwrite=args.overwrite)
    images, names = read_images(args.inputs)
    if len(images) < 2:
        raise InputError(f"need at least 2 images, got {len(images)} ({', '.join(names)}): there is nothing to "
                         "stitch", file=names[0] if names else None)
    t_read = time.perf_counter()
    panorama = stitch(images, mode=args.mode, names=names)
    t_stitch = time.perf_counter()
    try:
        imageio.write_image(args.output, panorama)
    except OSError as exc:
        raise InputError(f"cannot write {args.output}: {exc.strerror or exc}", file=args.output) from exc
    t_write = time.perf_counter()
    if not args.quiet:
        h, w = panorama.shape[:2]
        print(f"stitched {len(images)} images {w}x{h} mode={args.mode}: read {1000 * (t_read - t_start):.0f} ms, "
              f"stitch {1000 * (t_stitch - t_read):.0f} ms, write {1000 * (t_write - t_stitch):.0f} ms "
              f"-> {args.output}")
    return 0


def read_images(inputs: list[str]) -> tuple[list, list[str]]:
    """Images of the given files, and of folders their image files in natural order; with their names.

    Unlike a focal stack, the images may differ in size and in channels (grey and colour).
    """
    from surgifuse import imageio

    paths: list[Path] = []
    for entry in inputs:
        path = Path(entry)
        paths.extend(imageio.list_image_files(path) if path.is_dir() else [path])
    return [imageio.read_image(p) for p in paths], [str(p) for p in paths]
