"""Image I/O: sniffed decoding, stacks from files/folders/multi-page TIFF, atomic writes, errors."""

from __future__ import annotations

import os
import warnings

import cv2
import numpy as np
import pytest
import tifffile

from surgifuse import imageio
from surgifuse.imageio import (
    decode_image,
    decode_stack_from_bytes,
    encode_image,
    natural_sort_key,
    read_image,
    read_stack,
    sniff_format,
    write_image,
)


@pytest.fixture
def rgb8(rng):
    return rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)


@pytest.fixture
def rgb16(rng):
    return rng.integers(0, 65536, (24, 32, 3), dtype=np.uint16)


@pytest.mark.parametrize("ext", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("kind", ["rgb8", "rgb16", "grey8", "grey16"])
def test_lossless_round_trip(tmp_path, rng, ext, kind):
    dtype = np.uint16 if kind.endswith("16") else np.uint8
    shape = (24, 32, 3) if kind.startswith("rgb") else (24, 32)
    image = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    path = tmp_path / f"img{ext}"
    write_image(path, image)
    back = read_image(path)
    assert back.dtype == dtype and back.shape == shape
    np.testing.assert_array_equal(back, image)


def test_png_keeps_rgb_channel_order(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = 255  # pure red
    write_image(tmp_path / "red.png", image)
    bgr = cv2.imread(str(tmp_path / "red.png"), cv2.IMREAD_UNCHANGED)
    assert bgr[0, 0].tolist() == [0, 0, 255]  # OpenCV sees red in its last channel
    assert read_image(tmp_path / "red.png")[0, 0].tolist() == [255, 0, 0]


def test_jpeg_round_trip_is_close(tmp_path, rng):
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), (0, 0), 3)
    write_image(tmp_path / "a.jpg", smooth, jpeg_quality=95)
    back = read_image(tmp_path / "a.jpg")
    assert back.shape == smooth.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - smooth).mean() < 3


def test_jpeg_named_png_is_sniffed(tmp_path, rgb8):
    data = encode_image(rgb8, "jpeg")
    (tmp_path / "liar.png").write_bytes(data)
    assert sniff_format(data) == "jpeg"
    back = read_image(tmp_path / "liar.png")
    assert back.shape == rgb8.shape and back.dtype == np.uint8


def test_sniff_formats(rgb8):
    assert sniff_format(encode_image(rgb8, "png")) == "png"
    assert sniff_format(encode_image(rgb8, "tiff")) == "tiff"
    assert sniff_format(b"hello world") is None


def test_alpha_is_dropped_with_a_warning(tmp_path, rgb8):
    rgba = np.dstack([rgb8, np.full(rgb8.shape[:2], 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    with pytest.warns(UserWarning, match="alpha"):
        back = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(back, rgb8)


def test_natural_sort_key():
    names = ["frame_10.png", "frame_2.png", "frame_1.png", "Frame_3.png"]
    assert sorted(names, key=natural_sort_key) == ["frame_1.png", "frame_2.png", "Frame_3.png", "frame_10.png"]


def test_read_stack_from_folder_is_naturally_sorted(tmp_path, rng):
    for i in (10, 2, 1):
        write_image(tmp_path / f"frame_{i}.png", np.full((8, 8), i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    frames, names = read_stack(tmp_path)
    assert [os.path.basename(n) for n in names] == ["frame_1.png", "frame_2.png", "frame_10.png"]
    assert [int(f[0, 0]) for f in frames] == [1, 2, 10]


def test_read_stack_folder_pattern_leaves_other_images_out(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"frame_{i}.png", np.full((8, 8), i, np.uint8))
    write_image(tmp_path / "gt.png", np.zeros((8, 8), np.uint8))
    assert len(read_stack(tmp_path)[0]) == 4
    frames, names = read_stack(tmp_path, pattern="frame_*")
    assert len(frames) == 3 and not any("gt" in n for n in names)


def test_synthetic_stack_folder_reads_frames_only(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"frame_{i}.png", np.full((8, 8, 3), i, np.uint8))
    write_image(tmp_path / "gt.png", np.zeros((8, 8, 3), np.uint8))
    write_image(tmp_path / "instrument_mask.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "meta.json").write_text("{}")
    frames, names = read_stack(tmp_path)
    assert [os.path.basename(n) for n in names] == ["frame_0.png", "frame_1.png", "frame_2.png"]
    with pytest.raises(ValueError, match="instrument_mask.png has 1 channel"):
        read_stack(tmp_path, pattern="*")


def test_read_stack_files_keep_given_order(tmp_path):
    paths = []
    for i in (3, 1, 2):
        paths.append(tmp_path / f"f{i}.png")
        write_image(paths[-1], np.full((8, 8), i, np.uint8))
    frames, _ = read_stack(paths)
    assert [int(f[0, 0]) for f in frames] == [3, 1, 2]


def test_multipage_tiff_is_a_stack(tmp_path, rng):
    pages = rng.integers(0, 65536, (4, 16, 20, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", pages, photometric="rgb")
    frames, names = read_stack(tmp_path / "stack.tif")
    assert len(frames) == 4 and names[2].endswith("[page 2]")
    np.testing.assert_array_equal(np.stack(frames), pages)
    with pytest.raises(ValueError, match="4 pages"):
        read_image(tmp_path / "stack.tif")


def test_multipage_grey_tiff(tmp_path, rng):
    pages = rng.integers(0, 256, (3, 16, 20), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "grey.tiff", pages, photometric="minisblack")
    frames, _ = read_stack([tmp_path / "grey.tiff"])
    np.testing.assert_array_equal(np.stack(frames), pages)


def test_decode_stack_from_bytes_matches_files(rgb8):
    items = [("a.png", encode_image(rgb8, "png")), ("b.tif", encode_image(rgb8[::-1].copy(), "tiff"))]
    frames, names = decode_stack_from_bytes(items)
    assert names == ["a.png", "b.tif"]
    np.testing.assert_array_equal(frames[1], rgb8[::-1])


def test_decode_image_bytes_type_error():
    with pytest.raises(TypeError, match="bytes"):
        decode_image("not bytes", "x.png")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ error paths


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(tmp_path / "nope.png")


def test_non_image_file_is_named(tmp_path):
    (tmp_path / "fake.png").write_bytes(b"this is text, not pixels")
    with pytest.raises(ValueError, match=r"fake\.png.*not a PNG, JPEG, TIFF or camera RAW"):
        read_stack([tmp_path / "fake.png"])


def test_empty_file_is_named(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.jpg.*empty"):
        read_image(tmp_path / "empty.jpg")


def test_truncated_png_is_named(tmp_path, rgb8):
    data = encode_image(rgb8, "png")
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.png"):
        read_image(tmp_path / "cut.png")


def test_float_tiff_is_rejected(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match=r"f\.tif.*float32"):
        read_image(tmp_path / "f.tif")


def test_mismatched_sizes_name_both_files(tmp_path):
    write_image(tmp_path / "a.png", np.zeros((8, 10, 3), np.uint8))
    write_image(tmp_path / "b.png", np.zeros((9, 10, 3), np.uint8))
    with pytest.raises(ValueError, match=r"b\.png is 10x9 but .*a\.png is 10x8"):
        read_stack(tmp_path)


def test_mismatched_channels_are_named(tmp_path):
    write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    write_image(tmp_path / "b.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"b\.png has 1 channel.*a\.png has 3 channels"):
        read_stack(tmp_path)


def test_mismatched_bit_depth_is_named(tmp_path):
    write_image(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    write_image(tmp_path / "b.png", np.zeros((8, 8), np.uint16))
    with pytest.raises(ValueError, match=r"b\.png is 16-bit but .*a\.png is 8-bit"):
        read_stack(tmp_path)


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no image files"):
        read_stack(tmp_path)


def test_no_inputs():
    with pytest.raises(ValueError, match="no input images"):
        read_stack([])
    with pytest.raises(ValueError, match="at least one frame"):
        decode_stack_from_bytes([])


# ------------------------------------------------------------------------------------ writing


def test_write_is_atomic_on_encode_failure(tmp_path, rgb16):
    target = tmp_path / "out.jpg"
    with pytest.raises(ValueError, match="8-bit"):
        write_image(target, rgb16)  # JPEG cannot hold 16 bits
    assert list(tmp_path.iterdir()) == []


def test_write_failure_keeps_previous_file_and_leaves_no_temp(tmp_path, rgb8, monkeypatch):
    target = tmp_path / "out.png"
    write_image(target, rgb8)
    before = target.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(imageio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_image(target, rgb8[::-1].copy())
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_write_unknown_extension_and_missing_folder(tmp_path, rgb8):
    with pytest.raises(ValueError, match=r"\.bmp"):
        write_image(tmp_path / "x.bmp", rgb8)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_image(tmp_path / "no" / "x.png", rgb8)


def test_write_rejects_bad_arrays(tmp_path):
    with pytest.raises(TypeError, match="float32"):
        write_image(tmp_path / "x.png", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="shape"):
        write_image(tmp_path / "x.png", np.zeros((4, 4, 2), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_encode_unknown_format(rgb8):
    with pytest.raises(ValueError, match="bmp"):
        encode_image(rgb8, "bmp")


def test_real_algae_png_names_hold_jpeg(shared_dir):
    path = shared_dir / "data" / "real" / "algae-microscope" / "img_1.png"
    with open(path, "rb") as fh:
        head = fh.read(16)
    assert sniff_format(head) == "jpeg"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(path)
    assert image.shape == (3648, 5440, 3) and image.dtype == np.uint8


def test_decode_all_gives_every_frame_in_order(tmp_path, rng):
    frames = [rng.integers(0, 256, (16, 20, 3), dtype=np.uint8) for _ in range(6)]
    for i, frame in enumerate(frames):
        write_image(tmp_path / f"f{i}.png", frame)
    stack = imageio.open_stack(tmp_path)
    got = stack.decode_all()
    assert len(got) == 6
    for a, b in zip(got, frames):
        np.testing.assert_array_equal(a, b)
    known = np.full((16, 20, 3), 7, np.uint8)  # frame 0 as the caller decoded it: not read again
    assert stack.decode_all(first=known)[0] is known


def test_decode_all_names_the_first_bad_file(tmp_path):
    for name, h in (("a.png", 8), ("b.png", 8), ("c.png", 9), ("d.png", 7)):
        write_image(tmp_path / name, np.zeros((h, 10, 3), np.uint8))
    with pytest.raises(ValueError, match=r"c\.png is 10x9 but .*a\.png is 10x8"):
        imageio.open_stack(tmp_path).decode_all()
    with pytest.raises(ValueError, match=r"c\.png is 10x9 but .*a\.png is 10x8"):  # frame 0 given: still named
        imageio.open_stack(tmp_path).decode_all(first=np.zeros((8, 10, 3), np.uint8))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match=r"b\.png"):
        imageio.open_stack(tmp_path).decode_all()


def test_decode_all_reads_tiff_pages(tmp_path, rng):
    pages = rng.integers(0, 256, (3, 16, 20, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", pages, photometric="rgb")
    np.testing.assert_array_equal(np.stack(imageio.open_stack(tmp_path / "stack.tif").decode_all()), pages)


def test_frames_decoded_ahead_come_in_the_order_asked(tmp_path, rng):
    frames = [rng.integers(0, 256, (16, 20, 3), dtype=np.uint8) for _ in range(7)]
    for i, frame in enumerate(frames):
        write_image(tmp_path / f"f{i}.png", frame)
    stack = imageio.open_stack(tmp_path)
    order = [5, 0, 3, 6]
    for got, i in zip(stack.iter_frames(order, ahead=3), order, strict=True):
        np.testing.assert_array_equal(got, frames[i])
    early = stack.iter_frames(ahead=2)
    next(early)
    early.close()  # a caller that stops early leaves no decoding behind


def test_a_bad_frame_decoded_ahead_is_named_when_its_turn_comes(tmp_path):
    for name, h in (("a.png", 8), ("b.png", 8), ("c.png", 9)):
        write_image(tmp_path / name, np.zeros((h, 10, 3), np.uint8))
    frames = imageio.open_stack(tmp_path).iter_frames(ahead=2)
    assert next(frames).shape == (8, 10, 3) and next(frames).shape == (8, 10, 3)
    with pytest.raises(ValueError, match=r"c\.png is 10x9"):
        next(frames)
