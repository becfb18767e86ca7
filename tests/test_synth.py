"""Synthetic focal stacks: determinism, the defocus physics, the truth, disk round trips, each
degradation switch, the sweep video and live renderer, the CLI."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from surgifuse.synth import disc_kernel, generate_dataset, generate_stack, load_stack, write_stack
from surgifuse.synth.degradations import jpeg_roundtrip
from surgifuse.synth.optics import Optics, defocus_scene, layered_defocus
from surgifuse.synth.scenes import available_textures, make_scene

SMALL = dict(height=96, width=128)


def laplacian_energy(image: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.mean(cv2.Laplacian(grey, cv2.CV_32F) ** 2))


# ---------------------------------------------------------------------------------------------
# Determinism, shapes


def test_same_seed_gives_identical_stack():
    a = generate_stack(7, **SMALL, k=4, instrument=True, breathing=0.01, motion=1.0, jpeg_quality=80)
    b = generate_stack(7, **SMALL, k=4, instrument=True, breathing=0.01, motion=1.0, jpeg_quality=80)
    for fa, fb in zip(a.frames, b.frames):
        np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(a.gt, b.gt)
    np.testing.assert_array_equal(a.depth, b.depth)
    assert a.meta == b.meta


def test_different_seed_gives_different_stack():
    a = generate_stack(1, **SMALL, k=3)
    b = generate_stack(2, **SMALL, k=3)
    assert not np.array_equal(a.gt, b.gt)
    assert not np.array_equal(a.depth, b.depth)


def test_shapes_dtypes_and_focus_positions():
    s = generate_stack(3, height=80, width=112, k=5, instrument=True)
    assert len(s.frames) == 5
    for f in s.frames:
        assert f.shape == (80, 112, 3) and f.dtype == np.uint8
    assert s.gt.shape == (80, 112, 3) and s.gt.dtype == np.uint8
    assert s.depth.shape == (80, 112) and s.depth.dtype == np.float32
    assert s.instrument_mask.shape == (80, 112) and s.instrument_mask.dtype == bool
    fp = s.focus_positions
    assert len(fp) == 5 and all(b > a for a, b in zip(fp, fp[1:]))
    assert s.depth.min() < fp[0] and fp[-1] < s.depth.max()
    # Evenly spread: centres of five equal slabs of the depth range.
    steps = np.diff(fp)
    np.testing.assert_allclose(steps, (s.depth.max() - s.depth.min()) / 5, rtol=1e-4)


def test_mixed_scene_and_random_instrument_vary_with_seed():
    metas = [generate_stack(seed, height=32, width=32, k=2, scene="mixed").meta for seed in range(12)]
    assert {m["scene_kind"] for m in metas} == {"fundus", "texture"}
    assert {m["instrument"] for m in metas} == {True, False}


def test_forced_scene_and_instrument_are_honoured():
    s = generate_stack(4, height=32, width=32, k=2, scene="texture", instrument=False)
    assert s.meta["scene_kind"] == "texture" and s.instrument_mask is None
    s = generate_stack(4, height=64, width=64, k=2, scene="fundus", instrument=True)
    assert s.meta["scene_kind"] == "fundus" and s.instrument_mask.any()


def test_bundled_textures_load_offline():
    names = available_textures()
    assert "astronaut" in names and "coffee" in names
    assert len(names) >= 5


# ---------------------------------------------------------------------------------------------
# Optics


@pytest.mark.parametrize("radius", [0.0, 0.3, 1.0, 2.5, 7.0])
def test_disc_kernel_sums_to_one_and_is_round(radius):
    k = disc_kernel(radius)
    assert k.dtype == np.float32 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert math.isclose(float(k.sum()), 1.0, rel_tol=1e-5)
    np.testing.assert_allclose(k, k.T, atol=1e-7)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7)
    if radius >= 1:
        # Area of the disc: nonzero support close to pi r^2 (within the anti-aliased rim).
        support = float((k > 0).sum())
        assert math.pi * (radius - 1) ** 2 <= support <= math.pi * (radius + 1.5) ** 2


def test_disc_kernel_rejects_negative_radius():
    with pytest.raises(ValueError, match="radius"):
        disc_kernel(-1.0)


def test_optics_depth_of_field_is_realistic():
    optics = Optics()
    # 0.56-0.87 mm at 20x-16x in the Fusion Network paper's microscope.
    assert 0.4 < optics.depth_of_field_mm(512) < 0.9
    assert optics.blur_px_per_mm(1024) == pytest.approx(2 * optics.blur_px_per_mm(512))


def test_scene_at_the_focus_plane_renders_exactly_sharp():
    rng = np.random.default_rng(0)
    scene = make_scene(rng, 64, 64, 8 / 64, kind="fundus", instrument=True)
    flat = np.full_like(scene.depth, 22.0)
    scene.instrument.depth[:] = 22.0
    layer = (scene.instrument.premultiplied, scene.instrument.alpha, scene.instrument.depth)
    out = defocus_scene(scene.radiance, flat, 22.0, 5.0, instrument=layer)
    np.testing.assert_allclose(out, scene.all_in_focus(), atol=1e-5)


def test_uniform_layer_blur_is_the_disc_convolution():
    rng = np.random.default_rng(1)
    image = rng.uniform(size=(40, 40, 3)).astype(np.float32)
    radius = np.full((40, 40), 3.0, np.float32)
    coverage = np.zeros((40, 40), np.float32)
    coverage[10:30, 10:30] = 1
    colour, alpha = layered_defocus(image * coverage[..., None], coverage, radius, normalise=False)
    expected = cv2.filter2D(image * coverage[..., None], -1, disc_kernel(3.0), borderType=cv2.BORDER_CONSTANT)
    np.testing.assert_allclose(colour, expected, atol=1e-5)
    np.testing.assert_allclose(alpha, cv2.filter2D(coverage, -1, disc_kernel(3.0), borderType=cv2.BORDER_CONSTANT), atol=1e-5)


def test_zero_aperture_gives_frames_equal_to_truth():
    s = generate_stack(5, **SMALL, k=3, instrument=True, noise=False, numerical_aperture=0.0)
    for f in s.frames:
        np.testing.assert_array_equal(f, s.gt)


def test_each_region_is_sharpest_in_the_frame_focused_nearest_to_it():
    # Known physics: the blur grows with |depth - focus|, so a textured patch is sharpest in the
    # frame whose focus is nearest its depth.
    s = generate_stack(11, height=128, width=128, k=4, scene="texture", instrument=False, noise=False, numerical_aperture=0.2)
    tile = 16
    agree = total = 0
    for y in range(0, 128, tile):
        for x in range(0, 128, tile):
            d = s.depth[y : y + tile, x : x + tile]
            if laplacian_energy(s.gt[y : y + tile, x : x + tile]) < 20:
                continue  # no texture there: no focus information either
            nearest = int(np.argmin([abs(float(d.mean()) - f) for f in s.focus_positions]))
            energies = [laplacian_energy(f[y : y + tile, x : x + tile]) for f in s.frames]
            agree += int(np.argmax(energies) == nearest)
            total += 1
    assert total >= 20
    assert agree / total >= 0.85, f"{agree}/{total} patches sharpest in the nearest-focus frame"


def test_blur_grows_with_defocus():
    s = generate_stack(2, height=128, width=128, k=5, scene="texture", instrument=False, noise=False, numerical_aperture=0.2)
    # The gt is sharper than every frame; the frames farthest from the middle of the range are
    # blurrier in total than the middle one only where the scene is near the middle: compare
    # sharpness against the truth (mean abs error grows with the mean defocus).
    errors = [float(np.abs(f.astype(float) - s.gt).mean()) for f in s.frames]
    defocus = [float(np.abs(s.depth - f).mean()) for f in s.focus_positions]
    assert np.argsort(errors).tolist() == np.argsort(defocus).tolist()


def test_instrument_is_in_front_of_the_retina():
    rng = np.random.default_rng(3)
    for _ in range(3):
        scene = make_scene(rng, 96, 96, 8 / 96, kind="fundus", instrument=True)
        inside = scene.instrument.alpha > 0
        assert (scene.instrument.depth[inside] < scene.depth[inside]).all()
    s = generate_stack(6, **SMALL, k=3, instrument=True)
    assert s.instrument_mask.any()
    # Where the instrument is, the truth depth is nearer than the retina's nearest point elsewhere
    # is not guaranteed, but it must be nearer than the retina right beside it.
    assert s.depth[s.instrument_mask].mean() < s.depth[~s.instrument_mask].mean()


# ---------------------------------------------------------------------------------------------
# Degradations: each switch changes exactly what it should


def test_noise_switch_changes_only_the_frames_by_the_sensor_model():
    clean = generate_stack(8, **SMALL, k=3, noise=False)
    noisy = generate_stack(8, **SMALL, k=3, noise=True)
    np.testing.assert_array_equal(clean.gt, noisy.gt)
    np.testing.assert_array_equal(clean.depth, noisy.depth)
    assert clean.focus_positions == noisy.focus_positions
    for c, n in zip(clean.frames, noisy.frames):
        diff = n.astype(np.float64) - c
        assert abs(diff.mean()) < 0.3
        x = c.astype(np.float64) / 255
        expected = np.sqrt(np.mean(x / noisy.meta["sensor"]["photons_at_white"] + (noisy.meta["sensor"]["read_noise_dn"] / 255) ** 2)) * 255
        assert diff.std() == pytest.approx(expected, rel=0.1)


def test_noise_free_frames_are_a_deterministic_blur_of_the_truth():
    a = generate_stack(9, **SMALL, k=3, noise=False)
    # The in-focus content is the truth blurred: every frame differs from gt, but not by much.
    for f in a.frames:
        err = np.abs(f.astype(float) - a.gt).mean()
        assert 0 < err < 40


def test_jpeg_switch_compresses_frames_only():
    plain = generate_stack(10, **SMALL, k=3)
    jpeg = generate_stack(10, **SMALL, k=3, jpeg_quality=50)
    np.testing.assert_array_equal(plain.gt, jpeg.gt)
    for p, j in zip(plain.frames, jpeg.frames):
        np.testing.assert_array_equal(j, jpeg_roundtrip(p, 50))
        assert not np.array_equal(p, j)
    assert jpeg.meta["switched_on"]["jpeg"] and not plain.meta["switched_on"]["jpeg"]


def _estimate_affine(reference: np.ndarray, moved: np.ndarray) -> np.ndarray:
    ref = cv2.cvtColor(reference, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mov = cv2.cvtColor(moved, cv2.COLOR_RGB2GRAY).astype(np.float32)
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
    _, warp = cv2.findTransformECC(ref, mov, warp, cv2.MOTION_AFFINE, criteria, None, 5)
    return warp  # maps reference coordinates to moved coordinates


def test_breathing_scales_frames_about_the_centre_by_the_stated_amount():
    s = generate_stack(12, height=128, width=128, k=3, scene="texture", instrument=False, noise=False, numerical_aperture=0.0, breathing=0.06)
    np.testing.assert_array_equal(s.frames[1], s.gt)  # the middle frame is the reference
    scales = s.meta["breathing_scales"]
    assert scales == pytest.approx([0.97, 1.0, 1.03])
    for i in (0, 2):
        warp = _estimate_affine(s.gt, s.frames[i])
        measured = math.sqrt(abs(np.linalg.det(warp[:, :2])))
        assert measured == pytest.approx(scales[i], abs=0.004)


def test_motion_shifts_frames_by_the_stated_transform():
    s = generate_stack(13, height=128, width=128, k=3, scene="texture", instrument=False, noise=False, numerical_aperture=0.0, motion=3.0)
    np.testing.assert_array_equal(s.frames[1], s.gt)
    for i in (0, 2):
        stated = np.asarray(s.meta["frame_transforms"][i])
        shift = math.hypot(stated[0, 2] - 0, stated[1, 2] - 0)
        assert 0 < shift  # something moved
        warp = _estimate_affine(s.gt, s.frames[i])
        np.testing.assert_allclose(warp, stated, atol=0.15)
    # Breathing off: the frames' scale stays 1.
    for m in s.meta["frame_transforms"]:
        assert math.sqrt(abs(np.linalg.det(np.asarray(m)[:, :2]))) == pytest.approx(1.0, abs=1e-9)


def test_motion_and_breathing_leave_the_truth_unchanged():
    still = generate_stack(14, **SMALL, k=3, instrument=True)
    moving = generate_stack(14, **SMALL, k=3, instrument=True, motion=1.0, breathing=0.01)
    np.testing.assert_array_equal(still.depth, moving.depth)
    np.testing.assert_array_equal(still.gt, moving.gt)
    assert moving.meta["reference_frame"] == 1


# ---------------------------------------------------------------------------------------------
# Disk


def test_write_load_round_trip(tmp_path):
    s = generate_stack(15, **SMALL, k=4, instrument=True)
    out = write_stack(s, tmp_path / "one")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["depth.npy", "frame_0.png", "frame_1.png", "frame_2.png", "frame_3.png", "gt.png", "instrument_mask.png", "meta.json"]
    back = load_stack(out)
    for a, b in zip(s.frames, back.frames):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.gt, s.gt)
    np.testing.assert_array_equal(back.depth, s.depth)
    np.testing.assert_array_equal(back.instrument_mask, s.instrument_mask)
    assert back.focus_positions == s.focus_positions
    # PNG channel order: the file on disk is BGR, the arrays RGB.
    on_disk = cv2.imread(str(out / "gt.png"))
    np.testing.assert_array_equal(on_disk[..., ::-1], s.gt)


def test_meta_json_content(tmp_path):
    s = generate_stack(16, **SMALL, k=3, jpeg_quality=90, breathing=0.01)
    meta = json.loads((write_stack(s, tmp_path / "m") / "meta.json").read_text())
    assert meta["seed"] == 16 and meta["k"] == 3
    assert meta["units"]["depth"] == "mm"
    assert meta["focus_positions"] == s.focus_positions
    assert meta["switched_on"] == {"instrument": s.meta["instrument"], "noise": True, "jpeg": True, "breathing": True, "motion": False}
    assert meta["reference_frame"] == 1
    assert len(meta["frame_transforms"]) == 3
    lo, hi = meta["depth_range_mm"]
    assert lo == pytest.approx(float(s.depth.min())) and hi == pytest.approx(float(s.depth.max()))


def test_write_refuses_to_overwrite_and_leaves_no_temp(tmp_path):
    s = generate_stack(17, height=32, width=32, k=2)
    write_stack(s, tmp_path / "x")
    with pytest.raises(FileExistsError):
        write_stack(s, tmp_path / "x")
    write_stack(s, tmp_path / "x", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_load_real_folder_without_truth(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("img_10.jpg", "img_2.jpg", "img_1.jpg"):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    s = load_stack(tmp_path)
    assert len(s.frames) == 3 and s.gt is None and s.depth is None and s.focus_positions is None
    assert s.meta == {}


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_stack(tmp_path / "missing")
    with pytest.raises(ValueError, match="no frames"):
        load_stack(tmp_path)


def test_generate_dataset_uses_seed_plus_index(tmp_path):
    paths = generate_dataset(tmp_path / "ds", count=2, seed=20, height=32, width=32, k=2)
    assert [p.name for p in paths] == ["stack_0000", "stack_0001"]
    second = load_stack(paths[1])
    np.testing.assert_array_equal(second.gt, generate_stack(21, height=32, width=32, k=2).gt)
    assert second.meta["seed"] == 21


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(k=1), "k must be"),
        (dict(height=8), "height must be"),
        (dict(scene="moon"), "scene must be"),
        (dict(jpeg_quality=0), "jpeg_quality"),
        (dict(breathing=0.5), "breathing"),
        (dict(motion=-1.0), "motion"),
        (dict(numerical_aperture=1.5), "numerical_aperture"),
        (dict(focus_positions=[1.0]), "focus_positions"),
    ],
)
def test_generate_rejects_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        generate_stack(0, **{"height": 32, "width": 32, "k": 3, **options})


def test_generate_rejects_bad_types():
    with pytest.raises(TypeError, match="k must be an integer"):
        generate_stack(0, height=32, width=32, k=2.5)
    with pytest.raises(ValueError, match="seed"):
        generate_stack(-1)


# ---------------------------------------------------------------------------------------------
# Live renderer and sweep video

from surgifuse.synth.video import FocusSweepRenderer, load_sweep_truth, triangle_index, write_sweep_video  # noqa: E402

RSMALL = dict(height=96, width=128, k=5)


@pytest.fixture(scope="module")
def renderer():
    return FocusSweepRenderer(3, **RSMALL)


def test_renderer_frame_shapes_and_dtypes(renderer):
    f = renderer.render(0)
    assert f.image.shape == f.aif.shape == (96, 128, 3)
    assert f.image.dtype == f.aif.dtype == np.uint8
    assert f.depth.shape == (96, 128) and f.depth.dtype == np.float32
    assert f.instrument_mask.shape == (96, 128) and f.instrument_mask.dtype == bool
    assert f.focus_index == 0 and f.focus_position == renderer.focus_positions[0]


def test_renderer_focus_sweeps_back_and_forth(renderer):
    assert [triangle_index(t, 5) for t in range(10)] == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1]
    idx = [renderer.render(t).focus_index for t in range(9)]
    assert idx == [0, 1, 2, 3, 4, 3, 2, 1, 0]
    positions = renderer.focus_positions
    assert all(b > a for a, b in zip(positions, positions[1:]))


def test_renderer_is_a_pure_function_of_seed_and_t(renderer):
    again = FocusSweepRenderer(3, **RSMALL)
    for t in (0, 7, 31):
        a, b = renderer.render(t), again.render(t)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.aif, b.aif)
        np.testing.assert_array_equal(a.depth, b.depth)


def test_renderer_instrument_moves_only_when_asked(renderer):
    m0, m60 = renderer.render(0).instrument_mask, renderer.render(60).instrument_mask
    assert m0.any() and m60.any()
    assert (m0 != m60).sum() > 0.2 * m0.sum()
    still = FocusSweepRenderer(3, **RSMALL, instrument_motion=False)
    np.testing.assert_array_equal(still.render(0).instrument_mask, still.render(60).instrument_mask)


def test_renderer_truth_is_consistent(renderer):
    f = renderer.render(10)
    # The instrument is in front of the retina, the depth stays inside the swept range.
    assert f.depth[f.instrument_mask].max() < f.depth[~f.instrument_mask].min() + 2.0
    step = renderer.focus_positions[1] - renderer.focus_positions[0]
    assert f.depth.min() >= renderer.focus_positions[0] - step / 2 - 1e-3
    assert f.depth.max() <= renderer.focus_positions[-1] + step / 2 + 1e-3
    # The aif is the same in every frame where the instrument has not moved.
    still = FocusSweepRenderer(3, **RSMALL, instrument_motion=False)
    np.testing.assert_array_equal(still.render(0).aif, still.render(3).aif)


def test_renderer_without_blur_or_noise_shows_the_truth():
    r = FocusSweepRenderer(4, **RSMALL, numerical_aperture=0.0, noise=False)
    for t in (0, 2, 45):
        f = r.render(t)
        assert np.abs(f.image.astype(int) - f.aif).max() <= 1


def test_renderer_noise_is_zero_mean_and_fresh_per_frame():
    clean = FocusSweepRenderer(5, **RSMALL, noise=False, instrument_motion=False)
    noisy = FocusSweepRenderer(5, **RSMALL, noise=True, instrument_motion=False)
    d0 = noisy.render(0).image.astype(float) - clean.render(0).image
    d8 = noisy.render(8).image.astype(float) - clean.render(8).image  # same focus index 0
    assert abs(d0.mean()) < 0.3 and 1.0 < d0.std() < 6.0
    assert not np.array_equal(d0, d8)


def test_renderer_rejects_bad_options():
    with pytest.raises(ValueError, match="k must be"):
        FocusSweepRenderer(0, height=32, width=32, k=1)
    with pytest.raises(ValueError, match="scene"):
        FocusSweepRenderer(0, height=32, width=32, scene="moon")
    r = FocusSweepRenderer(0, height=32, width=32, k=2)
    with pytest.raises(ValueError, match="t must be"):
        r.render(-1)


def test_sweep_video_is_readable_with_its_truth(tmp_path):
    video, truth_file = write_sweep_video(tmp_path / "sweep.mp4", seed=2, height=64, width=96, k=3, frames=12)
    assert truth_file.name == "sweep.truth.npz"
    cap = cv2.VideoCapture(str(video))
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (64, 96, 3)
        n += 1
    cap.release()
    assert n == 12
    truth = load_sweep_truth(video)
    assert len(truth) == 12
    assert truth.focus_index.tolist() == [triangle_index(t, 3) for t in range(12)]
    again = truth.renderer().render(5)
    np.testing.assert_array_equal(truth.instrument_mask(5), again.instrument_mask)
    assert truth.focus_position[5] == again.focus_position
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.mp4", "sweep.truth.npz"]


def test_sweep_video_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="mp4"):
        write_sweep_video(tmp_path / "x.avi", seed=0, height=32, width=32, frames=2)
    with pytest.raises(ValueError, match="frames"):
        write_sweep_video(tmp_path / "x.mp4", seed=0, height=32, width=32, frames=0)


# ---------------------------------------------------------------------------------------------
# CLI

from surgifuse.cli import main as cli_main  # noqa: E402


def test_cli_writes_stacks(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(["synth", str(out), "--count", "2", "--seed", "4", "--size", "64x48", "--k", "3", "--no-noise", "--instrument"]) == 0
    s = load_stack(out / "stack_0001")
    assert len(s.frames) == 3 and s.frames[0].shape == (48, 64, 3)
    assert s.meta["seed"] == 5 and s.meta["noise"] is False and s.meta["instrument"] is True
    np.testing.assert_array_equal(s.gt, generate_stack(5, height=48, width=64, k=3, noise=False, instrument=True).gt)


def test_cli_writes_a_sweep_video(tmp_path):
    assert cli_main(["synth", str(tmp_path), "--count", "0", "--size", "64", "--video", "6"]) == 0
    assert (tmp_path / "sweep.mp4").is_file() and (tmp_path / "sweep.truth.npz").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "12"], "--size"),
        (["--size", "abc"], "--size"),
        (["--k", "1"], "--k"),
        (["--jpeg", "0"], "--jpeg"),
        (["--count", "-1"], "--count"),
        (["--breathing", "0.9"], "breathing"),
        (["--motion", "-2"], "motion"),
    ],
)
def test_cli_rejects_bad_values(tmp_path, capsys, args, message):
    assert cli_main(["synth", str(tmp_path / "o"), "--size", "32", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "error" in err
    assert not (tmp_path / "o").exists()


def test_cli_refuses_to_overwrite(tmp_path, capsys):
    assert cli_main(["synth", str(tmp_path), "--size", "32", "--k", "2"]) == 0
    assert cli_main(["synth", str(tmp_path), "--size", "32", "--k", "2"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main(["synth", str(tmp_path), "--size", "32", "--k", "2", "--overwrite"]) == 0


@pytest.mark.parametrize("radius", [10.0, 20.0])
def test_wide_blur_on_reduced_images_matches_the_disc_convolution(radius):
    # Radii above 6 px are blurred on 2x/4x reduced copies: check against the direct convolution
    # on a natural image (errors from the reduction and from the level interpolation).
    import skimage.data

    image = skimage.data.astronaut()[:192, :192].astype(np.float32) / 255
    ones = np.ones((192, 192), np.float32)
    colour, _ = layered_defocus(image, ones, np.full((192, 192), radius, np.float32), normalise=True)
    k = disc_kernel(radius)
    ref = cv2.filter2D(image, -1, k, borderType=cv2.BORDER_CONSTANT) / cv2.filter2D(ones, -1, k, borderType=cv2.BORDER_CONSTANT)[..., None]
    inner = (slice(32, 160), slice(32, 160))
    assert np.abs(colour - ref)[inner].mean() * 255 < 1.5
