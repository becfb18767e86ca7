"""Camera RAW input: sniffing, development by LibRaw (rawpy) into 16-bit sRGB, errors, and a RAW stack
through ``surgifuse fuse``. The DNG files are written here: a Bayer mosaic of a known scene with the
tags a DNG reader needs (DNG specification 1.4, chapter 4)."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
import tifffile
from optional import optional_import

from surgifuse.cli import main
from surgifuse.errors import InputError
from surgifuse.imageio import read_image, read_stack, sniff_format, write_image

# Linear sRGB -> CIE XYZ (D65). Its inverse as ColorMatrix1 (XYZ -> camera) makes the "camera" an
# sRGB one, so that the developed image can be checked against the sRGB curve.
SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
BLACK, WHITE = 64, 4095  # a 12-bit sensor with a black offset


@pytest.fixture
def rawpy():
    return optional_import("rawpy")


def _rationals(values, denominator=10000):
    return [v for x in values for v in (round(float(x) * denominator), denominator)]


def write_dng(path, linear_rgb: np.ndarray, *, as_shot_neutral=(1.0, 1.0, 1.0)) -> None:
    """A DNG of ``linear_rgb`` (HxWx3 in [0, 1], even H and W) as an RGGB Bayer mosaic, 12-bit, as
    the camera records it under a light whose white it sees as ``as_shot_neutral``."""
    h, w, _ = linear_rgb.shape
    seen = np.clip(linear_rgb * np.asarray(as_shot_neutral), 0, 1)
    sensor = np.round(BLACK + seen * (WHITE - BLACK)).astype(np.uint16)
    cfa = np.empty((h, w), np.uint16)
    cfa[0::2, 0::2] = sensor[0::2, 0::2, 0]  # R
    cfa[0::2, 1::2] = sensor[0::2, 1::2, 1]  # G
    cfa[1::2, 0::2] = sensor[1::2, 0::2, 1]  # G
    cfa[1::2, 1::2] = sensor[1::2, 1::2, 2]  # B
    tags = [  # (code, TIFF type, count, value, write once); types: 1 BYTE, 2 ASCII, 3 SHORT, 4 LONG, 5/10 (S)RATIONAL
        (254, 4, 1, 0, True),  # NewSubfileType: the main image
        (271, 2, None, "SurgiFuse", True),  # Make
        (272, 2, None, "Test CFA", True),  # Model
        (274, 3, 1, 1, True),  # Orientation: as stored
        (33421, 3, 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, 1, 4, (0, 1, 1, 2), True),  # CFAPattern: R G / G B
        (50706, 1, 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, 1, 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, 2, None, "SurgiFuse Test CFA", True),  # UniqueCameraModel
        (50713, 3, 2, (1, 1), True),  # BlackLevelRepeatDim
        (50714, 4, 1, BLACK, True),  # BlackLevel
        (50717, 4, 1, WHITE, True),  # WhiteLevel
        (50721, 10, 9, _rationals(np.linalg.inv(SRGB_TO_XYZ).ravel()), True),  # ColorMatrix1
        (50728, 5, 3, _rationals(as_shot_neutral), True),  # AsShotNeutral: the camera white balance
        (50778, 3, 1, 21, True),  # CalibrationIlluminant1: D65
    ]
    tifffile.imwrite(path, cfa, photometric=32803, extratags=tags, metadata=None, software=None)  # 32803: CFA


def _srgb16(linear: float) -> float:
    encoded = 12.92 * linear if linear <= 0.0031308 else 1.055 * linear ** (1 / 2.4) - 0.055
    return 65535 * encoded


# Four patches (top left red, top right green, bottom left blue, bottom right white) on a 32x48 frame.
PATCHES = {"red": (0.8, 0.05, 0.05), "green": (0.05, 0.8, 0.05), "blue": (0.05, 0.05, 0.8), "white": (0.8, 0.8, 0.8)}
INNER = {"red": np.s_[4:12, 4:20], "green": np.s_[4:12, 28:44],
         "blue": np.s_[20:28, 4:20], "white": np.s_[20:28, 28:44]}


def _patch_scene() -> np.ndarray:
    scene = np.zeros((32, 48, 3))
    scene[:16, :24], scene[:16, 24:] = PATCHES["red"], PATCHES["green"]
    scene[16:, :24], scene[16:, 24:] = PATCHES["blue"], PATCHES["white"]
    return scene


def test_raw_files_are_sniffed_by_content(tmp_path):
    write_dng(tmp_path / "a.dng", _patch_scene())
    dng = (tmp_path / "a.dng").read_bytes()
    assert sniff_format(dng) == "raw"
    assert sniff_format(dng, "named.tif") == "raw"  # DNGVersion, whatever the name
    write_image(tmp_path / "plain.tif", np.zeros((8, 8), np.uint16))
    plain = (tmp_path / "plain.tif").read_bytes()
    assert sniff_format(plain) == "tiff"
    assert sniff_format(plain, "shot.NEF") == "raw"  # NEF/ARW: plain TIFF structure, known by the name
    assert sniff_format(b"FUJIFILMCCD-RAW 0201FF383501" + bytes(64)) == "raw"
    assert sniff_format(b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01" + bytes(64)) == "raw"  # CR3
    assert sniff_format(b"IIRO\x08\x00\x00\x00" + bytes(64)) == "raw"  # ORF
    assert sniff_format(b"IIU\x00\x08\x00\x00\x00" + bytes(64)) == "raw"  # RW2
    assert sniff_format(b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(64)) == "raw"  # CR2


def test_dng_is_developed_to_16_bit_srgb(tmp_path, rawpy):
    write_dng(tmp_path / "a.dng", _patch_scene())
    image = read_image(tmp_path / "a.dng")
    assert image.shape == (32, 48, 3) and image.dtype == np.uint16
    means = {name: image[INNER[name]].reshape(-1, 3).mean(axis=0) for name in PATCHES}
    for name, channel in (("red", 0), ("green", 1), ("blue", 2)):
        others = [c for c in range(3) if c != channel]
        assert means[name][channel] > 3 * means[name][others].max(), (name, means[name])
    assert np.ptp(means["white"]) < 0.01 * 65535  # camera white balance: the white patch is neutral
    # No auto-brightening, no moved white point: linear 0.8 and 0.05 land on the sRGB curve.
    for name, linear in PATCHES.items():
        np.testing.assert_allclose(means[name], [_srgb16(v) for v in linear], atol=0.01 * 65535)


def test_camera_white_balance_is_applied(tmp_path, rawpy):
    # Under a warm light the sensor sees white as (0.5, 1, 0.8); the colour matrix's own daylight
    # balance would leave it tinted, the white balance the camera recorded makes it neutral again.
    write_dng(tmp_path / "warm.dng", _patch_scene(), as_shot_neutral=(0.5, 1.0, 0.8))
    white = read_image(tmp_path / "warm.dng")[INNER["white"]].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(white, [_srgb16(0.8)] * 3, atol=0.01 * 65535)


def test_dng_development_is_deterministic_and_frame_independent(tmp_path, rawpy):
    scene = _patch_scene()
    write_dng(tmp_path / "a.dng", scene)
    write_dng(tmp_path / "dim.dng", scene * 0.5)
    first, second = read_image(tmp_path / "a.dng"), read_image(tmp_path / "a.dng")
    np.testing.assert_array_equal(first, second)
    # One fixed tone curve, not one per frame: half the light is darker (an auto-brightened or
    # auto-white-pointed development would stretch both frames alike).
    dim = read_image(tmp_path / "dim.dng")
    white = INNER["white"]
    assert dim[white].mean() == pytest.approx(_srgb16(0.4), abs=0.01 * 65535)
    assert first[white].mean() - dim[white].mean() > 0.1 * 65535


def test_folder_of_dng_files_is_a_stack(tmp_path, rawpy):
    for i in range(3):
        write_dng(tmp_path / f"IMG_{i}.dng", _patch_scene())
    frames, names = read_stack(tmp_path)
    assert len(frames) == 3 and all(f.dtype == np.uint16 and f.shape == (32, 48, 3) for f in frames)
    assert [n.rsplit("/", 1)[-1] for n in names] == ["IMG_0.dng", "IMG_1.dng", "IMG_2.dng"]


def test_truncated_raw_is_an_input_error_naming_the_file(tmp_path, rawpy):
    write_dng(tmp_path / "a.dng", _patch_scene())
    data = (tmp_path / "a.dng").read_bytes()
    (tmp_path / "cut.dng").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.dng: corrupt, truncated or unsupported camera RAW") as info:
        read_stack([tmp_path / "a.dng", tmp_path / "cut.dng"])
    assert info.value.file.endswith("cut.dng")
    (tmp_path / "junk.nef").write_bytes(b"MM\x00*" + bytes(60))  # a TIFF header, then nothing
    with pytest.raises(InputError, match="junk.nef: corrupt"):
        read_image(tmp_path / "junk.nef")


def test_raw_without_rawpy_names_the_file_and_the_extra(tmp_path, monkeypatch):
    write_dng(tmp_path / "a.dng", _patch_scene())
    monkeypatch.setitem(sys.modules, "rawpy", None)  # import rawpy now raises ImportError
    with pytest.raises(InputError, match=r"a.dng: a camera RAW file; reading it needs rawpy, the 'raw' extra") as info:
        read_stack([tmp_path / "a.dng"])
    assert info.value.file.endswith("a.dng")


def _textured_scene(rng, h=48, w=64) -> np.ndarray:
    texture = cv2.GaussianBlur(rng.random((h, w)), (0, 0), 0.7)
    texture = (texture - texture.min()) / np.ptp(texture)
    return np.dstack([0.1 + 0.7 * texture, 0.05 + 0.4 * texture, 0.05 + 0.2 * texture[::-1]])


def test_a_raw_stack_fuses_to_16_bit(tmp_path, rng, rawpy, capsys):
    scene = _textured_scene(rng)
    stack = tmp_path / "raw"
    stack.mkdir()
    for i in range(3):  # frame i sharp in band i, blurred elsewhere
        frame = cv2.GaussianBlur(scene, (0, 0), 2.5)
        frame[:, 20 * i:20 * i + 24] = scene[:, 20 * i:20 * i + 24]
        write_dng(stack / f"DSC_{i}.dng", frame)
    out, depth = tmp_path / "fused.tif", tmp_path / "depth.png"
    assert main(["fuse", str(stack), "-o", str(out), "--depth", str(depth), "--no-align"]) == 0
    assert "K=3 64x48 uint16" in capsys.readouterr().out
    fused = read_image(out)
    assert fused.shape == (48, 64, 3) and fused.dtype == np.uint16
    assert len(np.unique(fused)) > 256
    assert read_image(depth).dtype == np.uint16


def test_fuse_names_a_corrupt_raw_frame(tmp_path, rawpy, capsys):
    for i in range(2):
        write_dng(tmp_path / f"f{i}.dng", _patch_scene())
    data = (tmp_path / "f1.dng").read_bytes()
    (tmp_path / "f1.dng").write_bytes(data[: len(data) // 3])
    rc = main(["fuse", str(tmp_path / "f0.dng"), str(tmp_path / "f1.dng"), "-o", str(tmp_path / "fused.tif")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("surgifuse fuse: error:") and err.count("\n") == 1 and "f1.dng" in err
    assert not (tmp_path / "fused.tif").exists()
