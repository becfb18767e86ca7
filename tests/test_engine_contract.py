"""The contract every registered engine keeps, checked against what it declares (``engine.spec``).

Identical frames give that frame; the frame order does not matter where the engine says so;
streaming (``prepare_frame`` + ``fuse_prepared``) equals the whole-stack ``fuse``; every option
works at its bounds and is refused one step past them, naming the field; K works at the declared
limit and is refused one past it; the live settings switch between every pair of engines with
options set, keeping what the new engine accepts and naming what it drops.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from surgifuse.engines import create_engine, engine_names, engine_spec
from surgifuse.errors import InputError
from surgifuse.live.pipeline import build_processor
from surgifuse.live.settings import LiveSettings, apply_update

ENGINES = engine_names()
#: An option that cannot run here is refused with InputError naming it (cuda without a GPU).
UNAVAILABLE_HERE = {"device"}


def _sweep(k: int, h: int = 40, w: int = 56, *, seed: int = 0, dtype=np.uint8) -> list[np.ndarray]:
    """K frames of one texture, frame i sharp in the i-th vertical band, blurred elsewhere."""
    rng = np.random.default_rng(seed)
    scene = cv2.resize(rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8), (w, h),
                       interpolation=cv2.INTER_NEAREST)
    blurred = cv2.GaussianBlur(scene, (0, 0), 2.0)
    frames = []
    for i in range(k):
        f = blurred.copy()
        band = slice(i * w // k, (i + 1) * w // k)
        f[:, band] = scene[:, band]
        frames.append(f.astype(np.uint16) * 257 if dtype == np.uint16 else f)
    return frames


def _check_result(result, frames):
    k = len(frames)
    assert result.image.shape == frames[0].shape and result.image.dtype == frames[0].dtype
    assert result.depth_index.shape == frames[0].shape[:2] and result.depth_index.dtype == np.float32
    assert np.all((result.depth_index >= 0) & (result.depth_index <= k - 1))
    assert np.all((result.confidence >= 0) & (result.confidence <= 1))


@pytest.fixture(scope="module", params=ENGINES)
def name(request):
    return request.param


def test_every_engine_declares_itself(name):
    spec = engine_spec(name)
    assert spec.name == name and spec.summary and spec.options
    assert create_engine(name).options == spec.defaults()
    for opt in spec.options:
        assert opt.validate(opt.default) == opt.default, opt.name  # defaults are within the bounds


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_identical_frames_give_that_frame(name, dtype):
    spec = engine_spec(name)
    frame = _sweep(1, dtype=dtype)[0]
    if np.dtype(dtype).name not in spec.limits.dtypes:
        with pytest.raises(InputError) as refused:
            create_engine(name).fuse([frame] * 3)
        assert np.dtype(dtype).name in str(refused.value)
        return
    for frames in ([frame] * 3, [frame[..., 0].copy()] * 3):  # colour and grey
        result = create_engine(name).fuse(frames)
        _check_result(result, frames)
        # Learned engines blend in float: rounding may move a value by one level.
        assert np.abs(result.image.astype(np.int64) - frames[0]).max() <= 1


def test_frame_order_does_not_matter_where_declared(name):
    spec = engine_spec(name)
    frames = _sweep(4)
    engine = create_engine(name)
    forward = engine.fuse(frames).image.astype(np.int64)
    shuffled = engine.fuse([frames[i] for i in (2, 0, 3, 1)]).image.astype(np.int64)
    if spec.limits.order_invariant:
        assert np.abs(forward - shuffled).max() <= 1


def test_streaming_equals_whole_stack(name):
    frames = _sweep(4)
    engine = create_engine(name)
    whole = engine.fuse(frames)
    streamed = engine.fuse_prepared(frames, [engine.prepare_frame(f) for f in frames])
    np.testing.assert_array_equal(streamed.image, whole.image)
    np.testing.assert_array_equal(streamed.depth_index, whole.depth_index)


def _bound_values(opt):
    """(value, accepted) pairs at and one step past each bound of ``opt``."""
    step = 1 if opt.type is int else 1e-3
    cases = []
    if opt.minimum is not None:
        low = opt.minimum if not opt.odd or opt.minimum % 2 else opt.minimum + 1
        cases += [(opt.type(low), True), (opt.type(opt.minimum - step), False)]
    if opt.maximum is not None:
        high = opt.maximum if not opt.odd or opt.maximum % 2 else opt.maximum - 1
        cases += [(opt.type(high), True), (opt.type(opt.maximum + step), False)]
    if opt.odd:
        cases.append((opt.type(opt.default + 1), False))
    if opt.choices is not None:
        cases += [(c, True) for c in opt.choices] + [("no-such-choice", False)]
    if opt.type is bool:
        cases += [(True, True), (False, True), (1, False)]
    if opt.type is str and opt.choices is None:
        cases.append((12, False))
    return cases


def test_every_option_works_at_its_bounds_and_is_refused_past_them(name):
    spec = engine_spec(name)
    frames = _sweep(3, 72, 96)  # large enough for every bound (classical step 64 needs 65 px)
    for opt in spec.options:
        for value, accepted in _bound_values(opt):
            if accepted:
                try:
                    engine = create_engine(name, **{opt.name: value})
                except InputError as exc:
                    # Only a device this machine lacks may be refused, and it must say which field.
                    assert opt.name in UNAVAILABLE_HERE and exc.field == opt.name, (opt.name, value, exc)
                    continue
                assert engine.options[opt.name] == value
                _check_result(engine.fuse(frames), frames)
            else:
                with pytest.raises(InputError) as refused:
                    create_engine(name, **{opt.name: value})
                assert refused.value.field == opt.name and refused.value.allowed == opt.allowed(), (opt.name, value)
    if name == "classical":  # the frame-size limit of the focus measure's options names the option
        with pytest.raises(InputError) as too_small:
            create_engine(name, step=8).fuse([f[:8, :8] for f in frames])
        assert too_small.value.field == "step" and "8 px" in str(too_small.value)
    with pytest.raises(InputError) as unknown:
        create_engine(name, no_such_option=1)
    assert unknown.value.field == "no_such_option" and spec.options[0].name in str(unknown.value)


def test_k_at_the_limit_and_one_past_it(name):
    spec = engine_spec(name)
    engine = create_engine(name)
    limit = spec.limits.max_k if spec.limits.max_k is not None else 40
    frames = _sweep(limit, 16, 2 * limit)
    assert spec.check_k(limit) == limit
    _check_result(engine.fuse(frames), frames)
    if spec.limits.max_k is None:
        return
    with pytest.raises(InputError) as too_many:
        spec.check_k(limit + 1)
    assert too_many.value.field == "k" and str(limit) in too_many.value.allowed
    with pytest.raises(InputError, match=f"1..{limit}"):
        engine.fuse(frames + frames[:1])
    with pytest.raises(InputError) as live:
        build_processor(LiveSettings(engine=name, k=limit + 1))
    assert live.value.field == "k"


def test_smallest_declared_frame(name):
    spec = engine_spec(name)
    side = spec.limits.min_side
    frames = [f[:side, :side] for f in _sweep(3)]
    _check_result(create_engine(name).fuse(frames), frames)


def _non_default_options(name: str) -> dict:
    """A value other than the default for each option (but a device this machine may lack, and a
    model name: there is one shipped model per engine)."""
    out = {}
    for opt in engine_spec(name).options:
        if opt.name in UNAVAILABLE_HERE or (opt.type is str and opt.choices is None):
            continue
        if opt.choices is not None:
            out[opt.name] = next(c for c in opt.choices if c != opt.default)
        elif opt.type is bool:
            out[opt.name] = not opt.default
        elif opt.type is int:
            step = 2 if opt.odd else 1
            out[opt.name] = opt.default + step if opt.maximum is None or opt.default + step <= opt.maximum \
                else opt.default - step
        else:
            out[opt.name] = opt.default / 2
    return out


@pytest.mark.parametrize("old, new", list(itertools.permutations(ENGINES, 2)))
def test_switching_engine_keeps_accepted_options_and_names_the_dropped(old, new):
    options = _non_default_options(old)
    assert options, f"{old} has no option to carry over"
    current = LiveSettings(engine=old, engine_options=options, k=3)
    build_processor(current)  # valid for the old engine
    change = apply_update(current, {"engine": new})
    new_spec = engine_spec(new)
    kept, dropped = change.settings.engine_options, change.dropped_options
    assert change.settings.engine == new
    assert set(kept) | set(dropped) == set(options) and not set(kept) & set(dropped)
    for opt_name, value in kept.items():
        assert value == options[opt_name] and new_spec.option(opt_name).validate(value) == value
    for opt_name, reason in dropped.items():
        with pytest.raises(InputError):
            new_spec.option(opt_name).validate(options[opt_name])
        assert opt_name in reason
    processor = build_processor(change.settings)
    assert processor.engine.name == new and all(processor.engine.options[o] == v for o, v in kept.items())
    # ... and it fuses
    for seq, frame in enumerate(_sweep(3, 24, 32)):
        from surgifuse.live.frames import CapturedFrame

        out = processor.process(CapturedFrame(frame, seq, 0.0))
    assert out.fused and out.image.shape == frame.shape


def test_an_update_with_bad_options_or_k_changes_nothing():
    current = LiveSettings(engine="classical", engine_options={"threshold": 9}, k=5)
    for update, field in (({"k": 40}, "k"), ({"engine_options": {"threshold": -1}}, "engine_options.threshold"),
                          ({"engine_options": {"scales": 3}}, "engine_options.scales"),
                          ({"engine": "msmfm", "engine_options": {"threshold": 9}}, "engine_options.threshold"),
                          ({"engine": "nope"}, "engine"), ({"align": None}, "align")):
        with pytest.raises(InputError) as bad:
            apply_update(current, update)
        assert bad.value.field == field, (update, bad.value.field)
    assert current == LiveSettings(engine="classical", engine_options={"threshold": 9}, k=5)
    # null resets one option, or all of them
    assert apply_update(current, {"engine_options": {"threshold": None}}).settings.engine_options == {}
    assert apply_update(current, {"engine_options": None}).settings.engine_options == {}
