"""Scoring fusion engines on focal stacks: PSNR/SSIM against truth where a stack has it,
Q^AB/F and NMI on every stack, and the two references (best single frame, depth oracle).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from typing import Callable, Iterable, Sequence

import numpy as np

from surgifuse.errors import InputError
from surgifuse.fusion import fuse_focal_stack

from . import metrics
from .references import best_single_frame, depth_oracle
from .stacks import EvalStack, find_stacks, load_eval_stack, resize_stack

__all__ = ["evaluate", "create_engines", "align_available", "stack_needs_alignment", "score_image",
           "ORACLE", "ORACLE_ALIGNED", "BEST_FRAME", "MIN_FRAMES"]

ORACLE = "oracle"
ORACLE_ALIGNED = "oracle-aligned"
BEST_FRAME = "best-frame"
SCHEMA_VERSION = 1
# A focal stack has at least two focus positions. One frame gives nothing to fuse: every engine
# returns it, and its scores would enter the means as if a fusion had been measured.
MIN_FRAMES = 2
# Stack settings copied into the results (synthetic meta.json also holds transforms and scene
# parameters, which belong to the data set, not to its scores).
_META_KEYS = ("seed", "scene", "instrument", "noise", "jpeg_quality", "breathing", "motion")


def create_engines(engine_names: Sequence[str], engine_options: dict | None = None) -> dict:
    """Build each named engine once; ``ValueError`` naming the engine if one cannot be built.

    An engine whose model file or optional dependency is missing (e.g. ``fn`` without its ONNX
    model) fails here, before any stack is read, with the engine's own reason in the message.
    """
    from ..engines import create_engine
    from ..engines import engine_names as known_names

    if not engine_names:
        raise InputError(f"name at least one engine to evaluate (choose from {', '.join(known_names())})")
    duplicates = {n for n in engine_names if list(engine_names).count(n) > 1}
    if duplicates:
        raise InputError(f"engine named more than once: {', '.join(sorted(duplicates))}")
    engines = {}
    for name in engine_names:
        if name in (ORACLE, ORACLE_ALIGNED, BEST_FRAME):
            raise InputError(f"{name!r} is a reference, always reported on stacks with truth; not an engine")
        options = (engine_options or {}).get(name, {})
        try:
            engines[name] = create_engine(name, **options)
        except ValueError as exc:
            if "unknown engine" in str(exc):
                raise
            raise InputError(f"engine {name!r} could not be created: {exc}") from exc
        except (ImportError, OSError, RuntimeError, TypeError, AttributeError) as exc:
            raise InputError(f"engine {name!r} could not be created: {type(exc).__name__}: {exc}") from exc
    return engines


def align_available() -> bool:
    """Whether ``surgifuse.align.align_stack`` exists in this build."""
    try:
        from ..align import align_stack  # noqa: F401
    except ImportError:
        return False
    return True


def _register(frames: list[np.ndarray]) -> tuple[list, list[np.ndarray]]:
    """Registrations onto the middle frame (the synthetic truth lies in its coordinates) and the
    frames as the oracle sees them: warped where the motion was significant."""
    from ..align import register_stack, warp

    registrations = register_stack(frames, reference="middle")
    aligned = [warp(f, r.transform, interpolation="lanczos") if r.significant else f
               for f, r in zip(frames, registrations)]
    return registrations, aligned


def stack_needs_alignment(meta: dict) -> bool:
    """Whether a stack may be misregistered: real data (no metadata) or a synthetic stack rendered
    with focus breathing or motion. A static synthetic stack is registered by construction, and
    resampling it would only blur it."""
    if not meta:
        return True
    return any(bool(meta.get(key)) for key in ("breathing", "motion"))


def score_image(image: np.ndarray, stack: EvalStack, *, inputs: Sequence[np.ndarray] | None = None,
                border: int = 8, no_reference: bool = True) -> dict:
    """Metrics of one fused image on one stack: psnr and ssim if it has truth; qabf and nmi if asked.

    ``inputs`` are the frames the image was fused from (the aligned ones, where alignment ran) for
    the no-reference metrics; default the stack's frames.
    """
    scores: dict = {}
    inputs = stack.frames if inputs is None else inputs
    if stack.gt is not None:
        scores["psnr"] = metrics.psnr(stack.gt, image, border=border)
        scores["ssim"] = metrics.ssim(stack.gt, image, border=border)
    if no_reference:
        scores["qabf"] = metrics.qabf(inputs, image)
        scores["nmi"] = metrics.nmi(inputs, image)
    return scores


def _finite_mean(values: Iterable[float]) -> float | None:
    # inf PSNR (a perfect match) would swamp a mean; it is capped at 100 dB for aggregation.
    vals = [min(v, 100.0) for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


def _ceiling(entry: dict) -> dict | None:
    """The oracle on the frames the engines fused: aligned where alignment ran, else as given."""
    results = entry["results"]
    return results.get(ORACLE_ALIGNED, results.get(ORACLE))


def _aggregate(per_stack: list[dict], names: list[str]) -> dict:
    out = {}
    for name in names:
        rows = [(s, s["results"][name]) for s in per_stack if name in s["results"]]
        agg: dict = {"n_stacks": len(rows)}
        for key in ("psnr", "ssim", "qabf", "nmi", "seconds"):
            agg[key] = _finite_mean(r.get(key) for _, r in rows)
        with_oracle = [(_ceiling(s), r) for s, r in rows if _ceiling(s) is not None and "psnr" in r]
        agg["gap_to_oracle_psnr"] = _finite_mean(min(c["psnr"], 100.0) - min(r["psnr"], 100.0) for c, r in with_oracle)
        agg["gap_to_oracle_ssim"] = _finite_mean(c["ssim"] - r["ssim"] for c, r in with_oracle)
        out[name] = agg
    return out


def evaluate(
    stack_dirs: str | os.PathLike | Sequence[str | os.PathLike],
    engine_names: Sequence[str],
    *,
    align: bool | None = None,
    limit: int | None = None,
    border: int = 8,
    no_reference: bool = True,
    max_side: int | None = None,
    engine_options: dict | None = None,
    on_fused: Callable[[EvalStack, str, np.ndarray, dict], None] | None = None,
    progress: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict:
    """Score engines on focal stacks.

    Parameters
    ----------
    stack_dirs : path or sequence of paths
        A stack folder, a folder of stack folders, or a list of either.
    engine_names : sequence of str
        Engines to run (``surgifuse.engines.engine_names()``).
    align : bool or None, optional
        Align each stack to its middle frame (``surgifuse.align.align_stack``) before the engines
        fuse it. None (the default, "auto") aligns the stacks that may be misregistered (real data,
        synthetic stacks with breathing or motion; ``stack_needs_alignment``) when the align module
        exists. The references never see aligned frames.
    limit : int, optional
        Score at most this many stacks (the first in natural order).
    border : int, optional
        Border excluded from PSNR/SSIM. Default 8.
    no_reference : bool, optional
        Also compute Q^AB/F and NMI (always on stacks without truth). Default True.
    max_side : int, optional
        Shrink stacks whose longer side exceeds this (for quick looks at large real data).
    engine_options : dict, optional
        ``{engine_name: {option: value}}`` passed to ``create_engine``.
    on_fused : callable, optional
        ``on_fused(stack, name, image, scores)`` after scoring every fused image, references
        included (to draw figures without keeping the images).
    progress : callable, optional
        Called with one line of text per scored stack.
    warn : callable, optional
        Called with one line of text per skipped stack (default: ``warnings.warn``).

    Returns
    -------
    dict
        JSON-ready: ``{"schema": 1, "engines": [...], "align": true|false|"auto", "border": int,
        "skipped": [{"name", "path", "k", "reason"}],
        "stacks": [{"name", "path", "k", "shape", "dtype", "has_truth", "meta", "best_frame_index",
        "aligned", "align_seconds", "results": {name: {"psnr", "ssim", "qabf", "nmi", "seconds"}}}],
        "aggregates": {name: {"n_stacks", "psnr", "ssim", "qabf", "nmi", "seconds",
        "gap_to_oracle_psnr", "gap_to_oracle_ssim"}}}``; results hold the engines and, on stacks
        with truth, ``"best-frame"`` and (with depth and focus positions) ``"oracle"``, plus
        ``"oracle-aligned"`` (the oracle on the aligned frames) on stacks that were aligned. The
        gaps are ``oracle - method`` against the as-given ``"oracle"``. A stack of fewer than
        ``MIN_FRAMES`` frames is not a focal stack: it is listed under ``"skipped"`` (not under
        ``"stacks"``, not in the aggregates) with the reason, and ``warn`` is called.

    Raises
    ------
    InputError
        For bad options, an engine that cannot be built, and when no stack is left to score
        (every one was skipped).
    """
    engine_names = list(engine_names)
    if limit is not None and (int(limit) != limit or limit < 1):
        raise InputError(f"limit must be a positive integer, got {limit}")
    engines = create_engines(engine_names, engine_options)
    if align and not align_available():
        raise InputError("alignment asked for, but surgifuse.align.align_stack is not available in this build")
    no_reference = bool(no_reference)

    if isinstance(stack_dirs, (str, os.PathLike)):
        stack_dirs = [stack_dirs]
    folders = [f for d in stack_dirs for f in find_stacks(d)]
    if limit is not None:
        folders = folders[: int(limit)]

    if warn is None:
        def warn(line: str) -> None:
            warnings.warn(line, stacklevel=3)

    per_stack, skipped = [], []
    for i, folder in enumerate(folders):
        stack = load_eval_stack(folder)
        if len(stack.frames) < MIN_FRAMES:
            reason = f"only {len(stack.frames)} frame: not a focal stack, which needs at least {MIN_FRAMES}"
            skipped.append({"name": stack.name, "path": str(stack.path), "k": len(stack.frames), "reason": reason})
            warn(f"{stack.path}: {reason}; skipped, not scored")
            continue
        if max_side is not None:
            stack = resize_stack(stack, max_side)
        score_nr = no_reference or not stack.has_truth
        entry: dict = {
            "name": stack.name,
            "path": str(stack.path),
            "k": len(stack.frames),
            "shape": list(stack.frames[0].shape),
            "dtype": str(stack.frames[0].dtype),
            "has_truth": stack.has_truth,
            "meta": {k: stack.meta[k] for k in _META_KEYS if k in stack.meta},
            "results": {},
        }
        if stack.has_truth:
            index, best = best_single_frame(stack.frames, stack.gt, border=border)
            entry["best_frame_index"] = index
            entry["results"][BEST_FRAME] = score_image(best, stack, border=border, no_reference=score_nr)
            if on_fused:
                on_fused(stack, BEST_FRAME, best, entry["results"][BEST_FRAME])
            if stack.has_oracle:
                oracle = depth_oracle(stack.frames, stack.depth, stack.focus_positions)
                entry["results"][ORACLE] = score_image(oracle, stack, border=border, no_reference=score_nr)
                if on_fused:
                    on_fused(stack, ORACLE, oracle, entry["results"][ORACLE])

        frames = stack.frames
        registrations = None
        entry["aligned"] = bool(align) if align is not None else (
            align_available() and stack_needs_alignment(stack.meta))
        if entry["aligned"]:
            t0 = time.perf_counter()
            registrations, frames = _register(frames)
            entry["align_seconds"] = time.perf_counter() - t0
            entry["moved"] = sum(1 for r in registrations if r.significant)
            if stack.has_truth and stack.has_oracle:
                # The same selection on the frames the engines fused: with breathing or motion the
                # as-given oracle mixes misregistered frames, this one shows what alignment allows.
                oracle = depth_oracle(frames, stack.depth, stack.focus_positions)
                entry["results"][ORACLE_ALIGNED] = score_image(oracle, stack, inputs=frames, border=border,
                                                               no_reference=score_nr)
                if on_fused:
                    on_fused(stack, ORACLE_ALIGNED, oracle, entry["results"][ORACLE_ALIGNED])
        for name, engine in engines.items():
            t0 = time.perf_counter()
            try:
                # The offline path of `surgifuse fuse` and the upload: focus measured on the raw
                # frames, warped where they moved.
                fusion = fuse_focal_stack(engine, stack.frames, align=False, registrations=registrations)
                result = fusion.result
            except Exception as exc:
                raise RuntimeError(
                    f"engine {name!r} failed on stack {stack.path}: {type(exc).__name__}: {exc}"
                ) from exc
            seconds = time.perf_counter() - t0
            image = np.asarray(result.image)
            if image.shape != stack.frames[0].shape or image.dtype != stack.frames[0].dtype:
                raise RuntimeError(
                    f"engine {name!r} returned {image.shape} {image.dtype} for frames of "
                    f"{stack.frames[0].shape} {stack.frames[0].dtype}"
                )
            # A stack deeper than the engine's K is streamed and its frames are not kept: the
            # no-reference metrics then compare with the frames as given.
            scores = score_image(image, stack, inputs=fusion.frames or None, border=border, no_reference=score_nr)
            scores["seconds"] = seconds
            entry["results"][name] = scores
            if on_fused:
                on_fused(stack, name, image, scores)
        per_stack.append(entry)
        if progress:
            progress(f"[{i + 1}/{len(folders)}] {stack.name}: " + ", ".join(
                f"{n} {r['psnr']:.2f} dB" if "psnr" in r else f"{n} Q={r['qabf']:.3f}"
                for n, r in entry["results"].items()
            ))

    if not per_stack:
        raise InputError(f"nothing to score: {_describe_skipped(skipped)}", file=skipped[0]["path"])
    references = (ORACLE, ORACLE_ALIGNED, BEST_FRAME)
    names = engine_names + [n for n in references if any(n in s["results"] for s in per_stack)]
    return {
        "schema": SCHEMA_VERSION,
        "engines": engine_names,
        "align": "auto" if align is None else bool(align),
        "border": border,
        "stacks": per_stack,
        "skipped": skipped,
        "aggregates": _aggregate(per_stack, names),
    }


def _describe_skipped(skipped: list[dict], *, most: int = 3) -> str:
    """"N stack(s) skipped: PATH (reason); ..." naming at most ``most`` of them."""
    named = "; ".join(f"{s['path']} ({s['reason']})" for s in skipped[:most])
    more = f"; and {len(skipped) - most} more" if len(skipped) > most else ""
    return f"{len(skipped)} stack(s) skipped: {named}{more}"
