"""``surgifuse.stitch.stitch`` and ``surgifuse stitch``: overlapping crops of a known image stitched back
into that image (its geometry and its content), and the errors for what cannot be stitched."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from surgifuse.cli import main
from surgifuse.errors import InputError, InputTypeError
from surgifuse.imageio import read_image, write_image
from surgifuse.stitch import stitch

NOT_OVERLAPPING = "the images do not overlap enough to be stitched"


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[100:400, 16:496])  # (300, 480, 3)


@pytest.fixture(scope="module")
def fundus() -> np.ndarray:
    # skimage's fundus photograph at 600 px; the region lies across the optic disc and the vessels.
    retina = cv2.resize(skimage.data.retina(), (600, 600), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(retina[120:480, 40:560])  # (360, 520, 3)


def _strips(scene: np.ndarray, n: int, overlap: float) -> list[np.ndarray]:
    """n side-by-side crops of scene's full height, each overlapping the next by ``overlap`` of its width."""
    w = scene.shape[1]
    width = round(w / (n - (n - 1) * overlap))
    starts = np.linspace(0, w - width, n).round().astype(int)
    return [np.ascontiguousarray(scene[:, x:x + width]) for x in starts]


def _grid(scene: np.ndarray, overlap: float) -> list[np.ndarray]:
    """2x2 crops, each overlapping its neighbours by ``overlap`` of its width and height."""
    h, w = scene.shape[:2]
    ch, cw = round(h / (2 - overlap)), round(w / (2 - overlap))
    return [np.ascontiguousarray(scene[y:y + ch, x:x + cw]) for y in (0, h - ch) for x in (0, w - cw)]


def _match(scene: np.ndarray, panorama: np.ndarray) -> dict:
    """Where the panorama lies on the scene (its central half located by cv2.matchTemplate), and how
    well it reproduces the scene there: PSNR and normalised correlation over the pixels it covers."""
    ph, pw = panorama.shape[:2]
    patch = panorama[ph // 4: ph // 4 + ph // 2, pw // 4: pw // 4 + pw // 2]
    _, _, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(scene, patch, cv2.TM_CCOEFF_NORMED))
    dx, dy = x - pw // 4, y - ph // 4  # panorama pixel (r, c) shows scene pixel (r + dy, c + dx)
    h, w = scene.shape[:2]
    x0, y0, x1, y1 = max(0, dx), max(0, dy), min(w, dx + pw), min(h, dy + ph)
    truth = scene[y0:y1, x0:x1].astype(np.float64)
    got = panorama[y0 - dy:y1 - dy, x0 - dx:x1 - dx].astype(np.float64)
    covered = (got.reshape(got.shape[0], got.shape[1], -1) > 0).any(axis=2)
    a, b = truth[covered], got[covered]
    psnr = 10 * np.log10(255.0 ** 2 / np.mean((a - b) ** 2))
    ncc = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    return {"offset": (dx, dy), "psnr": psnr, "ncc": ncc, "covered": covered.mean()}


def _assert_reproduces(scene: np.ndarray, panorama: np.ndarray, *, tolerance_px: int = 4) -> None:
    assert panorama.dtype == np.uint8
    assert abs(panorama.shape[0] - scene.shape[0]) <= tolerance_px, (panorama.shape, scene.shape)
    assert abs(panorama.shape[1] - scene.shape[1]) <= tolerance_px, (panorama.shape, scene.shape)
    found = _match(scene, panorama)
    assert max(map(abs, found["offset"])) <= tolerance_px, found
    assert found["covered"] > 0.95, found
    assert found["psnr"] > 25 and found["ncc"] > 0.95, found


# ------------------------------------------------------------------------------------ the library


# The fundus at 600 px is smooth (few features): it needs half of each frame to overlap; at its full
# 1411 px, 30-40 % is enough (docs/cli.md).
@pytest.mark.parametrize(("scene_name", "overlap"), [("astronaut", 0.4), ("fundus", 0.5)])
def test_two_overlapping_crops_stitch_back_into_the_scene(scene_name, overlap, request):
    scene = request.getfixturevalue(scene_name)
    panorama = stitch(_strips(scene, 2, overlap))
    assert panorama.ndim == 3 and panorama.shape[2] == 3
    _assert_reproduces(scene, panorama)


def test_three_strips_of_the_fundus_stitch_back_into_it(fundus):
    _assert_reproduces(fundus, stitch(_strips(fundus, 3, 0.5)))


def test_a_2x2_grid_given_in_any_order_stitches_back(fundus):
    crops = _grid(fundus, 0.5)
    _assert_reproduces(fundus, stitch([crops[3], crops[0], crops[2], crops[1]]))


def test_panorama_mode_stitches_too(astronaut):
    panorama = stitch(_strips(astronaut, 2, 0.4), mode="panorama")
    # A spherical projection of a flat scene bends it slightly: the size, not the pixels, is the promise.
    assert panorama.shape[2] == 3
    assert abs(panorama.shape[0] - astronaut.shape[0]) <= 0.03 * astronaut.shape[0]
    assert abs(panorama.shape[1] - astronaut.shape[1]) <= 0.03 * astronaut.shape[1]


def test_grey_in_grey_out_and_rgba_in_rgb_out(astronaut):
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    panorama = stitch(_strips(grey, 2, 0.4))
    assert panorama.ndim == 2
    _assert_reproduces(grey, panorama)

    rgba = [np.dstack([c, np.full(c.shape[:2], 7, np.uint8)]) for c in _strips(astronaut, 2, 0.4)]
    _assert_reproduces(astronaut, stitch(rgba))

    left, right = _strips(astronaut, 2, 0.4)
    mixed = stitch([cv2.cvtColor(left, cv2.COLOR_RGB2GRAY), right])  # grey and colour: colour out
    assert mixed.ndim == 3 and mixed.shape[2] == 3


@pytest.mark.parametrize("count", [0, 1])
def test_fewer_than_two_images_is_refused(astronaut, count):
    with pytest.raises(InputError, match=f"need at least 2 images, got {count}"):
        stitch([astronaut] * count)


def test_images_that_do_not_overlap_are_refused(astronaut, fundus):
    left, right = astronaut[:, :200], astronaut[:, 280:]  # 80 px apart
    with pytest.raises(InputError, match=NOT_OVERLAPPING):
        stitch([np.ascontiguousarray(left), np.ascontiguousarray(right)])
    noise = np.random.default_rng(0).integers(0, 256, (300, 288, 3), dtype=np.uint8)
    with pytest.raises(InputError, match=NOT_OVERLAPPING):
        stitch([_strips(fundus, 2, 0.5)[0], noise])
    with pytest.raises(InputError, match=NOT_OVERLAPPING):
        stitch([np.full((100, 100, 3), 128, np.uint8)] * 2)  # nothing to match at all


def test_an_image_that_overlaps_none_of_the_others_is_named_not_left_out(astronaut):
    noise = np.random.default_rng(1).integers(0, 256, (300, 288, 3), dtype=np.uint8)
    with pytest.raises(InputError, match="noise.png does not overlap the other images enough") as caught:
        stitch([*_strips(astronaut, 2, 0.4), noise], names=["a.png", "b.png", "noise.png"])
    assert caught.value.file == "noise.png"


def test_wrong_types_shapes_and_modes_are_named(astronaut):
    left, right = _strips(astronaut, 2, 0.4)
    with pytest.raises(InputError, match="uint16"):
        stitch([left.astype(np.uint16) * 257, right.astype(np.uint16) * 257])
    with pytest.raises(InputTypeError, match="float64"):
        stitch([left / 255.0, right / 255.0])
    with pytest.raises(InputError, match=r"image 2: expected HxW grey, HxWx3 RGB or HxWx4 RGBA, got shape \(3, 4, 5, 6\)"):
        stitch([left, np.zeros((3, 4, 5, 6), np.uint8)])
    with pytest.raises(InputTypeError, match="list of arrays"):
        stitch(np.stack([left, right]))
    with pytest.raises(InputError, match="unknown stitching mode 'spherical'"):
        stitch([left, right], mode="spherical")


# ------------------------------------------------------------------------------------ the command


@pytest.fixture
def crops_on_disk(tmp_path, astronaut):
    paths = []
    for i, crop in enumerate(_strips(astronaut, 2, 0.4)):
        paths.append(tmp_path / f"crop_{i}.png")
        write_image(paths[-1], crop)
    return [str(p) for p in paths]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("surgifuse stitch: error: ")
    return err[0]


def test_cli_writes_the_panorama_and_says_its_size(tmp_path, crops_on_disk, astronaut, capsys):
    out = tmp_path / "panorama.png"
    assert main(["stitch", *crops_on_disk, "-o", str(out)]) == 0
    panorama = read_image(out)
    _assert_reproduces(astronaut, panorama)
    h, w = panorama.shape[:2]
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1
    assert summary[0].startswith(f"stitched 2 images {w}x{h} mode=scans: ") and summary[0].endswith(f"-> {out}")


def test_cli_reads_a_folder_in_natural_order(tmp_path, fundus, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, crop in zip((10, 2, 1), _strips(fundus, 3, 0.5)[::-1]):  # frame_1, frame_2, frame_10: left to right
        write_image(folder / f"frame_{i}.png", crop)
    out = tmp_path / "panorama.jpg"
    assert main(["stitch", str(folder), "-o", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    _assert_reproduces(fundus, read_image(out))


def test_cli_refuses_to_replace_an_existing_panorama_without_overwrite(tmp_path, crops_on_disk, capsys):
    out = tmp_path / "panorama.png"
    out.write_bytes(b"an earlier panorama")
    assert main(["stitch", *crops_on_disk, "-o", str(out)]) == 2
    line = _one_error_line(capsys)
    assert f"{out}: exists; pass --overwrite" in line
    assert out.read_bytes() == b"an earlier panorama"

    assert main(["stitch", *crops_on_disk, "-o", str(out), "--overwrite", "--quiet"]) == 0
    assert read_image(out).shape[2] == 3


def test_cli_exits_2_with_one_line_for_what_cannot_be_stitched(tmp_path, crops_on_disk, capsys):
    out = tmp_path / "panorama.png"
    assert main(["stitch", crops_on_disk[0], "-o", str(out)]) == 2
    assert "need at least 2 images, got 1" in _one_error_line(capsys)

    noise = tmp_path / "noise.png"
    write_image(noise, np.random.default_rng(0).integers(0, 256, (300, 288, 3), dtype=np.uint8))
    assert main(["stitch", crops_on_disk[0], str(noise), "-o", str(out)]) == 2
    assert NOT_OVERLAPPING in _one_error_line(capsys)

    assert main(["stitch", *crops_on_disk, "-o", str(tmp_path / "panorama.bmp")]) == 2
    assert "cannot tell the output format" in _one_error_line(capsys)
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))
