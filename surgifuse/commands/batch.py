"""``surgifuse batch``: fuse every focal stack and every video under a folder, serially or on Ray.

Archives of recorded surgeries and stacks outgrow one machine. Each stack folder goes through
``surgifuse fuse``'s path (``fuse_stack_to_files``) and each video through ``surgifuse
fuse-video``'s (``fuse_video_file``), so an item's files are the bytes those commands write, on
whichever machine fused it. Outputs mirror INPUT's tree under OUTPUT and are renamed into place
only when complete: an existing output means a finished item, which the next run skips, so an
interrupted run resumes where it stopped. A failed item is reported (which, and why) and the others
go on; the exit status says whether any failed.

Ray (the ``batch`` extra) is imported only for ``--ray``: a local cluster started here and shut
down at the end, or an existing one (``ray.init(address=...)``), whose workers read and write the
paths themselves (a file system shared at the same paths, and SurgiFuse installed on every node).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from surgifuse.commands import add_engine_arguments
from surgifuse.errors import INPUT_ERRORS, InputError

#: ``--ray`` without an ADDRESS: a local cluster, started for this run (Ray's own name for it).
LOCAL_CLUSTER = "local"

#: Exit status when every item was fused or skipped, and when at least one failed (bad arguments: 2).
EXIT_OK, EXIT_ITEM_FAILED = 0, 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT",
                        help="a folder: every folder under it that directly holds at least 2 images is a stack "
                             "(fused as `surgifuse fuse FOLDER` reads it), every .mp4, .avi, .mov, .mkv, .m4v file "
                             "a video (fused as `surgifuse fuse-video`); hidden files and folders are skipped")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                        help="output folder, created if missing; a stack a/b is written to OUTPUT/a/b.png, a video "
                             "a/v.mp4 to OUTPUT/a/v.mp4")
    add_engine_arguments(parser)
    parser.add_argument("--depth", action="store_true",
                        help="also write the depth: OUTPUT/a/b_depth.png (16-bit, frame 0..K-1 mapped to 0..65535) "
                             "and OUTPUT/a/v_depth.mp4 (turbo colour preview) (default: not written)")
    parser.add_argument("--no-align", dest="align", action="store_false",
                        help="do not register the frames (default: registration on, as in fuse and fuse-video)")
    parser.add_argument("--k", type=int, default=5, help="videos: frames in the rolling focal stack (default 5)")
    parser.add_argument("--overwrite", action="store_true",
                        help="fuse items whose outputs exist again (default: skip them: the run resumes)")
    parser.add_argument("--ray", nargs="?", const=LOCAL_CLUSTER, default=None, metavar="ADDRESS",
                        help="fuse on Ray (the 'batch' extra): a local cluster started for this run without ADDRESS "
                             "(put --ray after INPUT), else the cluster at ADDRESS (host:port, ray://host:port or "
                             "auto) (default: serially, in this process)")
    parser.add_argument("--num-cpus", type=int, default=None, metavar="N",
                        help="--ray without ADDRESS: CPUs of the local cluster, that is items fused at once "
                             "(default: every CPU of this machine)")
    parser.add_argument("--report", metavar="FILE",
                        help="write a JSON report: every item with its status, outputs, time and error "
                             "(default: not written)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress report (default: one step per item on stderr)")
    parser.add_argument("--quiet", action="store_true", help="no summary line (default: print one)")


@dataclass(frozen=True)
class BatchItem:
    """One stack folder or video under INPUT, and the files it gives under OUTPUT."""

    kind: str  # "stack" or "video"
    name: str  # its path relative to INPUT ("a/b", "a/v.mp4")
    source: str
    output: str
    depth: str | None = None  # the depth output, when asked for

    @property
    def outputs(self) -> list[str]:
        return [self.output] + ([self.depth] if self.depth else [])

    def is_done(self) -> bool:
        """Every output exists. Each is renamed into place only once complete, so existing means finished."""
        return all(Path(p).is_file() for p in self.outputs)


@dataclass(frozen=True)
class BatchOptions:
    """What ``surgifuse fuse`` / ``fuse-video`` options an item is fused with."""

    engine: str = "classical"
    engine_option: tuple[str, ...] = ()
    align: bool = True
    k: int = 5


@dataclass
class ItemResult:
    """How one item went: ``status`` is ``done``, ``skipped`` or ``failed``."""

    name: str
    kind: str
    status: str
    seconds: float = 0.0
    summary: str | None = None  # the summary line fuse / fuse-video print
    error: str | None = None
    traceback: str | None = None  # for an error that is a bug in SurgiFuse, not bad input
    warnings: list[str] = field(default_factory=list)


def find_items(root: str | os.PathLike, output_root: str | os.PathLike, *, depth: bool = False) -> list[BatchItem]:
    """The stack folders and videos under ``root`` in natural order, with their outputs under
    ``output_root``; ``InputError`` when there is none, or when two items would write one file.

    A stack is a folder that directly holds at least 2 images (``surgifuse.imageio.IMAGE_EXTENSIONS``);
    a video is a file whose extension ``fuse-video`` writes too (``VIDEO_CODECS``). Hidden entries
    (the temporary files of an unfinished run among them) and ``output_root``, when it lies inside
    ``root``, are not walked.
    """
    from surgifuse.imageio import IMAGE_EXTENSIONS, natural_sort_key

    from .fuse_video import VIDEO_CODECS

    root, output_root = Path(root).resolve(), Path(output_root).resolve()
    items: list[BatchItem] = []
    for folder, dirs, files in os.walk(root):
        folder = Path(folder)
        dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=natural_sort_key)
        files = sorted((f for f in files if not f.startswith(".")), key=natural_sort_key)
        is_stack = sum(Path(f).suffix.lower() in IMAGE_EXTENSIONS for f in files) >= 2
        if folder == output_root:  # an earlier run's outputs, not inputs
            if is_stack:
                raise InputError(f"{output_root}: OUTPUT is a stack folder under INPUT; the outputs would become "
                                 "frames of it", file=str(output_root))
            dirs[:] = []
            continue
        relative = folder.relative_to(root)
        if is_stack:
            name = root.name if relative == Path(".") else relative.as_posix()
            target = output_root / (root.name if relative == Path(".") else relative)
            items.append(BatchItem("stack", name, str(folder), str(target.with_name(target.name + ".png")),
                                   str(target.with_name(target.name + "_depth.png")) if depth else None))
        for f in files:
            if Path(f).suffix.lower() in VIDEO_CODECS:
                target = output_root / relative / f
                items.append(BatchItem("video", (relative / f).as_posix(), str(folder / f), str(target),
                                       str(target.with_name(f"{target.stem}_depth{target.suffix}")) if depth else None))
    items.sort(key=lambda item: [natural_sort_key(part) for part in item.name.split("/")])
    if not items:
        raise InputError(f"{root}: no stack folder (a folder with at least 2 images) and no video "
                         f"({', '.join(VIDEO_CODECS)}) under it", file=str(root))
    _check_distinct_outputs(items)
    return items


def fuse_item(item: BatchItem, options: BatchOptions) -> ItemResult:
    """Fuse one item with ``surgifuse fuse``'s or ``fuse-video``'s path; never raises for a failed
    item (the result says why), so one bad stack cannot stop a batch. Runs in this process or in a
    Ray worker alike."""
    from .fuse import fuse_stack_to_files
    from .fuse_video import fuse_video_file

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            Path(item.output).parent.mkdir(parents=True, exist_ok=True)
            if item.kind == "stack":
                fused = fuse_stack_to_files([item.source], item.output, engine=options.engine,
                                            engine_option=options.engine_option, depth=item.depth, align=options.align)
            else:
                fused = fuse_video_file(item.source, item.output, depth=item.depth, engine=options.engine,
                                        engine_option=options.engine_option, k=options.k, align=options.align,
                                        overwrite=True, progress=False)
        except Exception as exc:  # noqa: BLE001 -- reported with the item; KeyboardInterrupt still stops the run
            bug = not isinstance(exc, INPUT_ERRORS)
            return ItemResult(item.name, item.kind, "failed", time.perf_counter() - t0,
                              error=str(exc) if not bug else f"{type(exc).__name__}: {exc}",
                              traceback=traceback.format_exc() if bug else None,
                              warnings=[str(w.message) for w in caught])
    return ItemResult(item.name, item.kind, "done", time.perf_counter() - t0, summary=fused.summary(),
                      warnings=[str(w.message) for w in caught])


def run(args: argparse.Namespace) -> int:
    from surgifuse.progress import progress_bar

    from . import parse_engine_options
    from .fuse_video import video_settings

    t_start = time.perf_counter()
    root, output_root = Path(args.input), Path(args.output)
    if not root.is_dir():
        raise (InputError(f"{root}: not a folder; `surgifuse fuse` and `fuse-video` take one stack or video",
                          file=str(root)) if root.exists() else FileNotFoundError(f"{root}: no such folder"))
    if output_root.exists() and not output_root.is_dir():
        raise InputError(f"{output_root}: exists and is not a folder", file=str(output_root))
    if output_root.resolve() == root.resolve():
        raise InputError(f"{output_root}: OUTPUT is INPUT; the outputs would mix with the stacks and videos",
                         file=str(output_root))
    parse_engine_options(args.engine, args.engine_option)
    video_settings(args.engine, args.engine_option, k=args.k, align=args.align)
    if args.report and not Path(args.report).resolve().parent.is_dir():
        raise FileNotFoundError(f"{args.report}: --report folder {Path(args.report).resolve().parent} does not exist")
    if args.num_cpus is not None and (args.ray != LOCAL_CLUSTER or args.num_cpus < 1):
        raise InputError("--num-cpus takes a count >= 1 and goes with --ray for a local cluster (an existing "
                         "cluster has its own CPUs)", field="num_cpus")
    ray = _import_ray() if args.ray else None
    items = find_items(root, output_root, depth=args.depth)
    _check_outputs_outside_inputs(items)
    options = BatchOptions(engine=args.engine, engine_option=tuple(args.engine_option), align=args.align, k=args.k)

    results: dict[str, ItemResult] = {}
    todo = []
    for item in items:
        if item.is_done() and not args.overwrite:
            results[item.name] = ItemResult(item.name, item.kind, "skipped")
        else:
            todo.append(item)

    def on_result(result: ItemResult) -> None:
        results[result.name] = result
        for message in result.warnings:
            print(f"surgifuse batch: {result.name}: warning: {message}", file=sys.stderr)
        if result.status == "failed":
            print(f"surgifuse batch: {result.name}: failed: {result.error}", file=sys.stderr)
            if result.traceback:
                print(result.traceback, end="", file=sys.stderr)
        bar.update(1)

    with _ray_cluster(ray, args.ray, args.num_cpus) if ray is not None and todo else contextlib.nullcontext():
        output_root.mkdir(parents=True, exist_ok=True)
        bar = progress_bar(total=len(items), initial=len(items) - len(todo), desc="batch", unit="item",
                           enabled=args.progress)
        try:
            if ray is None:
                for item in todo:
                    on_result(fuse_item(item, options))
            else:
                _fuse_on_ray(ray, todo, options, on_result)
        finally:
            bar.close()

    seconds = time.perf_counter() - t_start
    ordered = [results[item.name] for item in items]
    counts = {status: sum(r.status == status for r in ordered) for status in ("done", "skipped", "failed")}
    if args.report:
        _write_report(args, items, ordered, counts, seconds)
    if not args.quiet:
        stacks = sum(item.kind == "stack" for item in items)
        runner = "serially" if ray is None else ("on a local Ray cluster" if args.ray == LOCAL_CLUSTER
                                                 else f"on the Ray cluster at {args.ray}")
        kinds = f"{_count(stacks, 'stack')}, {_count(len(items) - stacks, 'video')}"
        print(f"batch: {_count(len(items), 'item')} ({kinds}) {runner} in {seconds:.1f} s: {counts['done']} done, "
              f"{counts['skipped']} skipped, {counts['failed']} failed -> {args.output}")
        failed = [r.name for r in ordered if r.status == "failed"]
        if failed:
            print(f"failed: {', '.join(failed)}")
    return EXIT_ITEM_FAILED if counts["failed"] else EXIT_OK


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray, which is not installed here: install the 'batch' extra "
                         "(pip install -c constraints.txt -e '.[batch]')", field="ray") from None
    return ray


@contextlib.contextmanager
def _ray_cluster(ray, address: str, num_cpus: int | None):
    """Connected to Ray for the block: a local cluster started here, or the cluster at ``address``;
    shut down (or disconnected) at the end, whatever happens."""
    import logging

    # Operating-room and hospital networks are offline: no usage report to Ray's servers.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    init = {"address": address, "logging_level": logging.ERROR, "log_to_driver": False}
    if address == LOCAL_CLUSTER:
        # A small object store: items travel as paths, the images never pass through it.
        init.update(num_cpus=num_cpus, include_dashboard=False, object_store_memory=128 * 2**20)
    else:
        _check_reachable(address)
    try:
        ray.init(**init)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
        raise InputError(f"--ray {address}: cannot start or reach a Ray cluster: {exc}", field="ray") from None
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """``InputError`` when ``HOST:PORT`` does not accept a connection: ``ray.init`` itself waits for
    an unreachable head node without end, printing a warning every few seconds (Ray 2.60)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # auto, ray://...: Ray's own look-up and time-outs
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise InputError(f"--ray {address}: no Ray head node answers there ({exc.strerror or exc}); start one "
                         "with `ray start --head`, or give --ray without ADDRESS for a local cluster",
                         field="ray") from None


def _fuse_on_ray(ray, todo: list[BatchItem], options: BatchOptions, on_result) -> None:
    """Fuse ``todo`` as Ray tasks of one CPU each, calling ``on_result`` as each one finishes."""
    task = ray.remote(num_cpus=1)(fuse_item)
    pending = {task.remote(item, options): item for item in todo}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            item = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker died (killed, out of memory), not the item
                result = ItemResult(item.name, item.kind, "failed", error=f"the Ray task failed: {exc}")
            on_result(result)


def _check_distinct_outputs(items: list[BatchItem]) -> None:
    seen: dict[str, str] = {}
    for item in items:
        for path in item.outputs:
            if path in seen:
                raise InputError(f"{item.name} and {seen[path]} would both write {path}; rename one of them",
                                 file=item.source)
            seen[path] = item.name


def _check_outputs_outside_inputs(items: list[BatchItem]) -> None:
    """An output must not replace an input nor land in a stack folder (it would become a frame)."""
    sources = {item.source for item in items}
    for item in items:
        for path in item.outputs:
            if path in sources or str(Path(path).parent) in sources:
                raise InputError(f"{path}: an output of {item.name} would be written into the input; choose an "
                                 "OUTPUT outside INPUT's stacks", file=path)


def _write_report(args: argparse.Namespace, items: list[BatchItem], results: list[ItemResult],
                  counts: dict[str, int], seconds: float) -> None:
    from surgifuse.imageio import write_bytes_atomic

    output_root = Path(args.output).resolve()
    entries = []
    for item, result in zip(items, results):
        entry = asdict(result)
        entry["seconds"] = round(result.seconds, 3)
        entry["source"] = item.source
        entry["outputs"] = [Path(p).relative_to(output_root).as_posix() for p in item.outputs]
        entries.append(entry)
    report = {
        "schema": "surgifuse-batch/1",
        "input": str(Path(args.input).resolve()),
        "output": str(output_root),
        "runner": "serial" if not args.ray else "ray",
        "ray_address": args.ray,
        "options": {"engine": args.engine, "engine_option": list(args.engine_option), "align": args.align,
                    "k": args.k, "depth": args.depth, "overwrite": args.overwrite},
        "seconds": round(seconds, 3),  # the whole run
        "counts": {"items": len(items), **counts},
        "items": entries,
    }
    write_bytes_atomic(args.report, (json.dumps(report, indent=2) + "\n").encode())
