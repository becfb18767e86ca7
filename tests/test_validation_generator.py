"""The independent validation generator (surgifuse.validation): determinism, truth, defocus physics,
occlusion, the camera switches, the disk layout ``surgifuse eval`` reads, and its independence from
the training generator."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from surgifuse.validation import (
    Lens,
    ValidationStack,
    disc_psf,
    generate_validation_stack,
    write_validation_set,
    write_validation_stack,
)
from surgifuse.validation.layers import Layer, Scene
from surgifuse.validation.render import FocusRenderer

PACKAGE = Path(__file__).resolve().parents[1] / "surgifuse" / "validation"
SIZE = 96
BLUR = 3.0  # px per focus step: enough blur at this small size to see it


def small(seed=9000, **options):
    defaults = {"height": SIZE, "width": SIZE, "k": 5, "blur_per_step": BLUR}
    return generate_validation_stack(seed, **{**defaults, **options})


@pytest.fixture(scope="module")
def clean():
    """Noise off, lossless, with objects."""
    return small(9001, noise=False, n_objects=2)


def laplacian_energy(image: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.mean(cv2.Laplacian(grey, cv2.CV_32F) ** 2))


def flat_scene(depth: float, size: int = 64, *, square_depth: float | None = None) -> Scene:
    """A textured flat background at ``depth``; optionally a white square at ``square_depth``."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 0.8)
    texture = 0.2 + 0.6 * (texture - texture.min()) / (texture.max() - texture.min())
    layers = [Layer("background", (0, size, 0, size), texture, np.ones((size, size), np.float32),
                    np.full((size, size), depth, np.float32))]
    if square_depth is not None:
        alpha = np.zeros((size, size), np.float32)
        alpha[24:40, 24:40] = 1.0
        layers.append(Layer("square", (0, size, 0, size), np.repeat(alpha[..., None], 3, axis=2), alpha,
                            np.full((size, size), square_depth, np.float32)))
    return Scene(size, size, layers)


def test_deterministic_per_seed():
    a, b, c = small(9000), small(9000), small(9002)
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))
    assert np.array_equal(a.gt, b.gt) and np.array_equal(a.depth, b.depth)
    assert a.meta == b.meta
    assert not np.array_equal(a.gt, c.gt)


def test_shapes_dtypes_and_meta():
    s = small(9000, k=4, jpeg_quality=90)
    assert isinstance(s, ValidationStack) and s.k == 4
    assert all(f.shape == (SIZE, SIZE, 3) and f.dtype == np.uint8 for f in s.frames)
    assert s.gt.shape == (SIZE, SIZE, 3) and s.gt.dtype == np.uint8
    assert s.depth.shape == (SIZE, SIZE) and s.depth.dtype == np.float32
    assert s.foreground_mask.shape == (SIZE, SIZE) and s.foreground_mask.dtype == bool
    assert s.focus_positions == [0.0, 1.0, 2.0, 3.0]
    assert s.meta["generator"] == "independent" and s.meta["units"]["depth"] == "focus steps"
    assert s.meta["jpeg_quality"] == 90 and s.meta["noise"] is True
    json.dumps(s.meta)  # JSON-safe
    # The depth range is in focus steps and spans the sweep.
    assert -0.5 <= float(s.depth.min()) <= 2.0 and 3.0 <= float(s.depth.max()) <= 3.5


def test_scene_unchanged_by_camera_switches():
    a = small(9003)
    b = small(9003, noise=False, jpeg_quality=50, breathing=0.01, jitter=1.0)
    assert np.array_equal(a.gt, b.gt) and np.array_equal(a.depth, b.depth)


def test_truth_is_sharp_where_the_stack_is(clean):
    """With noise off, a pixel whose depth is within half a pixel of blur of a frame's focus is
    that frame's pixel exactly, away from the reach of the blurred foreground objects."""
    reach = int(np.ceil(BLUR * (clean.k + 0.5))) + 2
    near_objects = cv2.dilate(clean.foreground_mask.astype(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8)) > 0
    checked = 0
    for i, frame in enumerate(clean.frames):
        sharp = (np.abs(clean.depth - i) * BLUR <= 0.5) & ~near_objects
        sharp[:2, :] = sharp[-2:, :] = sharp[:, :2] = sharp[:, -2:] = False
        if sharp.sum() < 20:
            continue
        diff = np.abs(frame.astype(int) - clean.gt.astype(int))[sharp]
        assert diff.max() <= 1, f"frame {i}: in-focus pixels differ from the truth by up to {diff.max()}"
        checked += int(sharp.sum())
    assert checked > 200


def test_defocus_grows_with_distance_from_focus():
    """Laplacian energy of a flat region decreases monotonically as the focus moves away from it."""
    renderer = FocusRenderer(flat_scene(depth=2.0), Lens(BLUR, spherical_aberration=0.15))
    energy = [laplacian_energy((np.clip(renderer.render(f), 0, 1) * 255).astype(np.uint8)[8:-8, 8:-8])
              for f in range(5)]
    assert energy[2] > energy[1] > energy[0]
    assert energy[2] > energy[3] > energy[4]


@pytest.mark.parametrize("seed", [9007, 9008, 9011])
def test_defocus_grows_in_generated_stack(seed):
    """The same in generated stacks (no objects), on iso-depth bands: the pixels within 0.15 steps
    of each focus position. A small blur per step (1.2 px) leaves detail to compare over several
    steps; once a band is blurred to below ``floor`` (8-bit rounding alone leaves about 2),
    further blur cannot show and comparisons stop."""
    floor = 4.0
    stack = small(seed, noise=False, n_objects=0, blur_per_step=1.2)
    inner = np.zeros(stack.depth.shape, bool)
    inner[4:-4, 4:-4] = True
    lap = [cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F) ** 2 for f in stack.frames]
    compared = 0
    for m in range(stack.k):
        band = inner & (np.abs(stack.depth - m) < 0.15)
        if band.sum() < 50:
            continue
        energy = [float(e[band].mean()) for e in lap]
        for step in (1, -1):
            i = m
            while 0 <= i + step < stack.k and energy[i + step] > floor:
                assert energy[i] > energy[i + step], f"depth {m}: energies {energy}"
                i += step
                compared += 1
    assert compared >= 4, compared


def test_defocused_foreground_spreads_over_the_background():
    """Occlusion-aware: with the background in focus, a defocused square's light spreads beyond
    its mask and its edge turns partly transparent (not a sharp cut-out over a sharp background)."""
    scene = flat_scene(depth=4.0, square_depth=0.0)
    sharp = scene.all_in_focus()
    image = FocusRenderer(scene, Lens(BLUR)).render(4.0)  # blur radius of the square: 12 px
    outside = np.zeros((64, 64), bool)
    outside[18:46, 18:46] = True
    outside[22:42, 22:42] = False  # a ring 2-6 px outside the square's edge
    assert float((image - sharp)[outside].mean()) > 0.04  # a hard cut-out would leave exactly 0
    inside_edge = np.zeros((64, 64), bool)
    inside_edge[24:40, 24:40] = True
    inside_edge[26:38, 26:38] = False
    assert float(image[inside_edge].mean()) < 0.85  # white square now mixed with the background
    far = np.zeros((64, 64), bool)
    far[:4, :] = True  # beyond the blur's reach: the in-focus background, untouched
    assert np.allclose(image[far], sharp[far], atol=1e-5)


def test_generated_foreground_edge_spreads_in_far_focused_frame(clean):
    """In the frame focused on the far background, pixels just outside the objects' mask differ from
    the truth (the blurred objects spread over them) far more than pixels far from the objects."""
    mask = clean.foreground_mask.astype(np.uint8)
    ring = (cv2.dilate(mask, np.ones((5, 5), np.uint8)) > 0) & ~(mask > 0)
    reach = int(np.ceil(BLUR * (clean.k + 0.5))) + 2
    far = ~(cv2.dilate(mask, np.ones((2 * reach + 1,) * 2, np.uint8)) > 0)
    far_frame = clean.frames[-1].astype(float)
    far_in_focus = far & (np.abs(clean.depth - (clean.k - 1)) * BLUR <= 0.5)
    err_ring = np.abs(far_frame - clean.gt)[ring].mean()
    assert ring.sum() > 20 and err_ring > 3.0
    if far_in_focus.sum() > 20:
        assert np.abs(far_frame - clean.gt)[far_in_focus].mean() < 0.5


def test_noise_off_is_noise_free_and_noise_on_is_plausible():
    off = small(9004, noise=False)
    off_again = small(9004, noise=False, full_well=10.0, read_noise_dn=20.0)  # ignored when off
    assert all(np.array_equal(a, b) for a, b in zip(off.frames, off_again.frames))
    flat = FocusRenderer(Scene(32, 32, [Layer("bg", (0, 32, 0, 32), np.full((32, 32, 3), 0.4, np.float32),
                                               np.ones((32, 32), np.float32), np.zeros((32, 32), np.float32))]),
                         Lens(BLUR)).render(2.0)
    assert float(np.ptp(flat)) < 1e-6
    on = small(9004)
    residual = np.concatenate([(a.astype(float) - b).ravel() for a, b in zip(on.frames, off.frames)])
    assert 0.5 < residual.std() < 10.0 and abs(residual.mean()) < 1.0


def test_jpeg_changes_pixels():
    raw = small(9005, noise=False)
    compressed = small(9005, noise=False, jpeg_quality=90)
    diffs = [np.abs(a.astype(int) - b).mean() for a, b in zip(raw.frames, compressed.frames)]
    assert all(0 < d < 5 for d in diffs)


def test_breathing_and_jitter_move_frames_but_not_the_reference():
    still = small(9006, noise=False)
    moving = small(9006, noise=False, breathing=0.01, jitter=1.0)
    ref = still.k // 2
    assert np.array_equal(still.frames[ref], moving.frames[ref])
    assert not np.array_equal(still.frames[0], moving.frames[0])
    assert moving.meta["motion"] == 1.0 and moving.meta["breathing"] == 0.01
    scale_last = moving.meta["frame_transforms"][-1][0][0]
    assert scale_last > 1.0  # the last frame is magnified


def test_disc_psf():
    k = disc_psf(5.0)
    assert k.shape == (13, 13) and abs(float(k.sum()) - 1.0) < 1e-5
    assert disc_psf(0.5).shape == (1, 1)
    ab = disc_psf(5.0, spherical_aberration=0.3)
    behind, front = ab, disc_psf(-5.0, spherical_aberration=0.3)
    assert behind[6, 6] < front[6, 6]  # behind focus: dimmer centre, brighter rim


def test_written_set_is_read_by_the_evaluation(tmp_path):
    from surgifuse.evaluation.stacks import find_stacks, load_eval_stack

    paths = write_validation_set(tmp_path / "val", count=2, seed=9000, height=64, width=64, k=3,
                                 blur_per_step=2.0, noise=False)
    assert [p.name for p in paths] == ["stack_0000", "stack_0001"]
    assert find_stacks(tmp_path / "val") == paths
    stack = load_eval_stack(paths[0])
    original = generate_validation_stack(9000, height=64, width=64, k=3, blur_per_step=2.0, noise=False)
    assert np.array_equal(stack.gt, original.gt) and np.array_equal(stack.depth, original.depth)
    assert all(np.array_equal(a, b) for a, b in zip(stack.frames, original.frames))
    assert stack.focus_positions == [0.0, 1.0, 2.0] and stack.has_oracle
    with pytest.raises(FileExistsError):
        write_validation_stack(original, paths[0])


def test_shares_no_code_with_the_training_generator():
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                assert "synth" not in module, f"{path.name} imports {module}"
            elif isinstance(node, ast.Import):
                assert not any("synth" in a.name for a in node.names), f"{path.name} imports synth"


def test_bad_options_are_refused():
    from surgifuse.errors import InputError

    with pytest.raises(InputError):
        small(9000, k=1)
    with pytest.raises(InputError):
        small(9000, jpeg_quality=0)
    with pytest.raises(InputError):
        small(9000, texture="fundus")
    with pytest.raises(InputError):
        small(-1)


def test_make_validation_set_script(tmp_path, capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "make_validation_set.py"
    spec = importlib.util.spec_from_file_location("make_validation_set", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "val"
    assert script.main([str(out), "--count", "2", "--size", "48x32", "--k", "3", "--no-noise", "--jpeg", "80"]) == 0
    meta = json.loads((out / "stack_0001" / "meta.json").read_text())
    assert (meta["seed"], meta["width"], meta["height"], meta["k"]) == (9001, 48, 32, 3)
    assert meta["noise"] is False and meta["jpeg_quality"] == 80
    assert script.main([str(out), "--count", "1"]) == 2  # exists: refused without --overwrite
    assert "already exists" in capsys.readouterr().err


def test_docstring_examples():
    import doctest

    from surgifuse.validation import optics, render, stack

    for module in (optics, render, stack):
        assert doctest.testmod(module).failed == 0
