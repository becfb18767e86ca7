"""``surgifuse fuse`` end to end: inputs, alignment on/off, outputs, errors, nothing partial on failure."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

import surgifuse.engines
from surgifuse.cli import main
from surgifuse.engines.base import Engine, FusionResult
from surgifuse.engines.spec import EngineLimits, EngineSpec
from surgifuse.imageio import read_image, write_image


class TinyEngine(Engine):
    """Per pixel, the frame with the largest |Laplacian| (a minimal real fusion); records its input."""

    name = "tiny"
    spec = EngineSpec("tiny", "test engine", (), EngineLimits(max_k=None))
    last_frames: list[np.ndarray] = []

    def prepare_frame(self, frame):
        grey = frame.astype(np.float32).mean(axis=2) if frame.ndim == 3 else frame.astype(np.float32)
        return cv2.GaussianBlur(np.abs(cv2.Laplacian(grey, cv2.CV_32F)), (0, 0), 2)

    def fuse_prepared(self, frames, prepared):
        TinyEngine.last_frames = [f.copy() for f in frames]
        index = np.argmax(np.stack(prepared), axis=0)
        stack = np.stack(frames)
        rows, cols = np.indices(index.shape)
        return FusionResult(
            image=stack[index, rows, cols],
            depth_index=index.astype(np.float32),
            confidence=np.full(index.shape, 0.5, np.float32),
        )


class BrokenEngine(TinyEngine):
    def fuse_prepared(self, frames, prepared):
        raise ValueError("engine exploded on purpose")


@pytest.fixture
def tiny_engine(monkeypatch):
    # Registered as the real engines are: the CLI finds them, and their declarations, by name.
    monkeypatch.setitem(surgifuse.engines._ENGINES, "tiny", f"{__name__}:TinyEngine")
    monkeypatch.setitem(surgifuse.engines._ENGINES, "broken", f"{__name__}:BrokenEngine")
    monkeypatch.setitem(surgifuse.engines._ENGINES, "unbuilt", "surgifuse.engines.unbuilt:UnbuiltEngine")


def _texture(rng, h=96, w=128):
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 1.5)


def _write_stack(folder, frames, ext=".png"):
    folder.mkdir(exist_ok=True)
    for i, f in enumerate(frames):
        write_image(folder / f"frame_{i}{ext}", f)
    return folder


def _shifted(image, dx, dy):
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    return cv2.warpAffine(image, m, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_fuse_writes_image_depth_and_confidence(tmp_path, rng, tiny_engine, capsys):
    base = _texture(rng)
    blurred, soft = cv2.GaussianBlur(base, (0, 0), 3.0), cv2.GaussianBlur(base, (0, 0), 1.5)
    frames = [blurred.copy(), soft, blurred.copy()]
    frames[0][:, :48] = base[:, :48]  # the left in focus in frame 0, the right in frame 2
    frames[2][:, 80:] = base[:, 80:]
    stack = _write_stack(tmp_path / "stack", frames)
    out, depth, conf = tmp_path / "fused.png", tmp_path / "depth.png", tmp_path / "conf.tif"
    rc = main(["fuse", str(stack), "-o", str(out), "--engine", "tiny", "--depth", str(depth),
               "--confidence", str(conf), "--no-align"])
    assert rc == 0
    fused = read_image(out)
    assert fused.shape == base.shape and fused.dtype == np.uint8
    d = read_image(depth)
    assert d.dtype == np.uint16 and d.shape == base.shape[:2]
    steps = d.astype(np.float64) / 65535 * 2  # K=3: 0..65535 is frame index 0..2
    assert np.median(steps[:, 5:35]) < 0.3 and np.median(steps[:, 95:123]) > 1.7
    c = read_image(conf)
    assert c.dtype == np.uint16 and np.all(c == 32768)  # 0.5 -> 32768
    line = capsys.readouterr().out.strip()
    assert "K=3" in line and "128x96" in line and "engine=tiny" in line and "align off" in line


def test_fuse_keeps_16_bit(tmp_path, rng, tiny_engine):
    frames = [(_texture(rng).astype(np.uint16) * 257) for _ in range(2)]
    stack = _write_stack(tmp_path / "s", frames, ext=".tif")
    out = tmp_path / "fused.tif"
    assert main(["fuse", str(stack), "-o", str(out), "--engine", "tiny", "--quiet"]) == 0
    fused = read_image(out)
    assert fused.dtype == np.uint16 and fused.max() > 255


def test_depth_jpeg_is_a_colour_preview(tmp_path, rng, tiny_engine):
    stack = _write_stack(tmp_path / "s", [_texture(rng) for _ in range(3)])
    depth = tmp_path / "depth.jpg"
    assert main(["fuse", str(stack), "-o", str(tmp_path / "f.png"), "--engine", "tiny", "--depth", str(depth),
                 "--quiet", "--no-align"]) == 0
    preview = read_image(depth)
    assert preview.dtype == np.uint8 and preview.shape == (96, 128, 3)


def test_no_align_passes_frames_untouched(tmp_path, rng, tiny_engine):
    base = _texture(rng, 128, 160)
    frames = [_shifted(base, -3, 2), base, _shifted(base, 4, -1)]
    stack = _write_stack(tmp_path / "s", frames)
    assert main(["fuse", str(stack), "-o", str(tmp_path / "f.png"), "--engine", "tiny", "--no-align", "--quiet"]) == 0
    for got, sent in zip(TinyEngine.last_frames, frames):
        np.testing.assert_array_equal(got, sent)


def test_alignment_registers_shifted_frames(tmp_path, rng, tiny_engine, capsys):
    base = _texture(rng, 128, 160)
    frames = [_shifted(base, -3, 2), base, _shifted(base, 4, -1)]
    stack = _write_stack(tmp_path / "s", frames)
    assert main(["fuse", str(stack), "-o", str(tmp_path / "f.png"), "--engine", "tiny"]) == 0
    inner = (slice(10, -10), slice(10, -10))
    for got, sent in zip(TinyEngine.last_frames, frames):
        before = np.abs(sent[inner].astype(float) - base[inner]).mean()
        after = np.abs(got[inner].astype(float) - base[inner]).mean()
        assert after <= 0.25 * before + 1.0
    assert "2 of 2 frames moved, the most by 4." in capsys.readouterr().out


def test_explicit_files_and_reference_index(tmp_path, rng, tiny_engine):
    frames = [_texture(rng) for _ in range(2)]
    paths = [tmp_path / "b.png", tmp_path / "a.png"]
    for p, f in zip(paths, frames):
        write_image(p, f)
    assert main(["fuse", *map(str, paths), "-o", str(tmp_path / "f.png"), "--engine", "tiny", "--quiet",
                 "--no-align"]) == 0
    np.testing.assert_array_equal(TinyEngine.last_frames[0], frames[0])  # order as given
    assert main(["fuse", *map(str, paths), "-o", str(tmp_path / "f.png"), "--engine", "tiny", "--quiet",
                 "--reference", "7"]) == 2


# ------------------------------------------------------------------------------------ failures


def _assert_failed_cleanly(rc, capsys, folder, *expected):
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("surgifuse fuse: error:") and err.count("\n") == 1
    for text in expected:
        assert text in err
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith((".", "fused"))]
    assert leftovers == []


def test_mismatched_sizes_fail_without_output(tmp_path, rng, tiny_engine, capsys):
    write_image(tmp_path / "a.png", _texture(rng, 64, 64))
    write_image(tmp_path / "b.png", _texture(rng, 64, 80))
    rc = main(["fuse", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "fused.png"),
               "--engine", "tiny"])
    _assert_failed_cleanly(rc, capsys, tmp_path, "b.png is 80x64", "a.png is 64x64")


def test_unreadable_file_is_named(tmp_path, rng, tiny_engine, capsys):
    write_image(tmp_path / "a.png", _texture(rng))
    (tmp_path / "b.png").write_text("garbage")
    rc = main(["fuse", str(tmp_path), "-o", str(tmp_path / "fused.png"), "--engine", "tiny"])
    _assert_failed_cleanly(rc, capsys, tmp_path, "b.png", "not a PNG, JPEG, TIFF or camera RAW")


def test_missing_input_and_empty_folder(tmp_path, tiny_engine, capsys):
    rc = main(["fuse", str(tmp_path / "nothing.png"), "-o", str(tmp_path / "fused.png"), "--engine", "tiny"])
    _assert_failed_cleanly(rc, capsys, tmp_path, "nothing.png")
    (tmp_path / "empty").mkdir()
    rc = main(["fuse", str(tmp_path / "empty"), "-o", str(tmp_path / "fused.png"), "--engine", "tiny"])
    _assert_failed_cleanly(rc, capsys, tmp_path, "no image files")


def test_engine_failure_is_a_traceback_and_leaves_no_output(tmp_path, rng, tiny_engine):
    # An engine that raises on valid input is a bug: the traceback stays (no one-line "error"),
    # and nothing half-written is left behind.
    stack = _write_stack(tmp_path / "s", [_texture(rng) for _ in range(2)])
    with pytest.raises(ValueError, match="exploded"):
        main(["fuse", str(stack), "-o", str(tmp_path / "fused.png"), "--engine", "broken",
              "--depth", str(tmp_path / "fused_depth.png")])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".", "fused"))] == []


def test_unknown_engine(tmp_path, rng, capsys):
    stack = _write_stack(tmp_path / "s", [_texture(rng) for _ in range(2)])
    rc = main(["fuse", str(stack), "-o", str(tmp_path / "fused.png"), "--engine", "nonesuch"])
    _assert_failed_cleanly(rc, capsys, tmp_path, "unknown engine 'nonesuch'")


def test_engine_missing_from_build(tmp_path, rng, tiny_engine, capsys):
    stack = _write_stack(tmp_path / "s", [_texture(rng) for _ in range(2)])
    rc = main(["fuse", str(stack), "-o", str(tmp_path / "fused.png"), "--engine", "unbuilt"])
    _assert_failed_cleanly(rc, capsys, tmp_path, "'unbuilt' is not available in this build")


def test_folder_with_non_frames_hints_at_pattern(tmp_path, rng, tiny_engine, capsys):
    stack = _write_stack(tmp_path / "s", [_texture(rng) for _ in range(2)])
    write_image(stack / "mask.png", np.zeros((96, 128), np.uint8))
    rc = main(["fuse", str(stack), "-o", str(tmp_path / "fused.png"), "--engine", "tiny"])
    _assert_failed_cleanly(rc, capsys, tmp_path, "mask.png has 1 channel", "--pattern")
    assert main(["fuse", str(stack), "-o", str(tmp_path / "fused.png"), "--engine", "tiny", "--quiet",
                 "--pattern", "frame_*"]) == 0


def test_bad_outputs_fail_before_reading(tmp_path, rng, tiny_engine, capsys):
    stack = _write_stack(tmp_path / "s", [_texture(rng) for _ in range(2)])
    rc = main(["fuse", str(stack), "-o", str(tmp_path / "no_folder" / "fused.png"), "--engine", "tiny"])
    _assert_failed_cleanly(rc, capsys, tmp_path, "does not exist")
    rc = main(["fuse", str(stack), "-o", str(tmp_path / "fused.bmp"), "--engine", "tiny"])
    _assert_failed_cleanly(rc, capsys, tmp_path, ".bmp")
    rc = main(["fuse", str(stack), "-o", str(tmp_path / "fused.png"), "--depth", str(tmp_path / "fused.png"),
               "--engine", "tiny"])
    _assert_failed_cleanly(rc, capsys, tmp_path, "both the output and the depth")


def test_sixteen_bit_to_jpeg_is_refused(tmp_path, rng, tiny_engine, capsys):
    stack = _write_stack(tmp_path / "s", [_texture(rng).astype(np.uint16) * 257 for _ in range(2)])
    rc = main(["fuse", str(stack), "-o", str(tmp_path / "fused.jpg"), "--engine", "tiny"])
    _assert_failed_cleanly(rc, capsys, tmp_path, "16-bit", "JPEG")


def test_unwritable_output_folder(tmp_path, rng, tiny_engine, capsys, monkeypatch):
    import surgifuse.commands.fuse as fuse_command

    stack = _write_stack(tmp_path / "s", [_texture(rng) for _ in range(2)])
    locked = tmp_path / "locked"
    locked.mkdir()
    # Folder permissions do not bind root (CI containers): simulate a read-only folder instead.
    real_access = fuse_command.os.access
    monkeypatch.setattr(fuse_command.os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    rc = main(["fuse", str(stack), "-o", str(locked / "fused.png"), "--engine", "tiny"])
    _assert_failed_cleanly(rc, capsys, locked, "not writable")


def test_write_failure_leaves_no_output(tmp_path, rng, tiny_engine, capsys, monkeypatch):
    import surgifuse.imageio as imageio

    stack = _write_stack(tmp_path / "s", [_texture(rng) for _ in range(2)])
    calls = []
    real_replace = imageio.os.replace

    def replace_then_fail(src, dst):
        calls.append(dst)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imageio.os, "replace", replace_then_fail)
    rc = main(["fuse", str(stack), "-o", str(tmp_path / "fused.png"), "--engine", "tiny"])
    monkeypatch.setattr(imageio.os, "replace", real_replace)
    _assert_failed_cleanly(rc, capsys, tmp_path, "No space left")
    assert calls


def test_subprocess_with_classical_engine(tmp_path, rng):
    base = _texture(rng)
    frames = [cv2.GaussianBlur(base, (0, 0), s) if s else base for s in (2.0, 0, 2.0)]
    stack = _write_stack(tmp_path / "s", frames)
    out = tmp_path / "fused.png"
    proc = subprocess.run([sys.executable, "-m", "surgifuse.cli", "fuse", str(stack), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "engine=classical" in proc.stdout
    fused = read_image(out)
    assert fused.shape == base.shape
    # The sharp middle frame dominates: the fused image is closer to it than to a blurred one.
    assert np.abs(fused.astype(float) - base).mean() < np.abs(frames[0].astype(float) - base).mean()


def test_a_one_frame_stack_is_an_error_not_a_copy(tmp_path, rng, capsys):
    # It used to exit 0 and write the input as the "fused" image.
    stack = _write_stack(tmp_path / "s", [_texture(rng)])
    rc = main(["fuse", str(stack), "-o", str(tmp_path / "fused.png")])
    _assert_failed_cleanly(rc, capsys, tmp_path, "at least 2 frames", "frame_0.png")


def test_engine_options_are_checked_against_the_engine(tmp_path, rng, capsys):
    stack = _write_stack(tmp_path / "s", [_texture(rng) for _ in range(3)])
    rc = main(["fuse", str(stack), "-o", str(tmp_path / "fused.png"), "--engine-option", "threshold=-1"])
    _assert_failed_cleanly(rc, capsys, tmp_path, "--engine-option", "threshold", "[0, 1048576]")
    rc = main(["fuse", str(stack), "-o", str(tmp_path / "fused.png"), "--engine", "msmfm",
               "--engine-option", "threshold=9"])
    _assert_failed_cleanly(rc, capsys, tmp_path, "'msmfm' has no option 'threshold'")
    frames16 = [(_texture(rng).astype(np.uint16) * 257) for _ in range(3)]
    stack16 = _write_stack(tmp_path / "s16", frames16, ext=".tif")
    rc = main(["fuse", str(stack16), "-o", str(tmp_path / "fused.tif"), "--engine", "fn"])
    _assert_failed_cleanly(rc, capsys, tmp_path, "'fn' takes uint8", "uint16")
    out = tmp_path / "fused.png"
    assert main(["fuse", str(stack), "-o", str(out), "--engine-option", "threshold=0", "--quiet"]) == 0
    assert read_image(out).shape == (96, 128, 3)


def test_a_still_stack_fuses_bit_equal_to_no_align(tmp_path):
    # Alignment may not touch what did not move: the default path equals --no-align to the bit.
    from surgifuse import synth

    stack = synth.generate_stack(502, height=256, width=320, k=5, scene="mixed", instrument=True, noise=True,
                                 jpeg_quality=90, numerical_aperture=0.13)
    folder = _write_stack(tmp_path / "s", list(stack.frames))
    aligned, plain = tmp_path / "fused_aligned.png", tmp_path / "fused_plain.png"
    assert main(["fuse", str(folder), "-o", str(aligned), "--depth", str(tmp_path / "d1.png"), "--quiet"]) == 0
    assert main(["fuse", str(folder), "-o", str(plain), "--depth", str(tmp_path / "d2.png"), "--no-align",
                 "--quiet"]) == 0
    np.testing.assert_array_equal(read_image(aligned), read_image(plain))
    np.testing.assert_array_equal(read_image(tmp_path / "d1.png"), read_image(tmp_path / "d2.png"))


# ------------------------------------------------------------------ source map, 16 bits end to end


def _banded_stack(base, k, band, sigma=3.0):
    """K frames of ``base``: frame i sharp in vertical band i (columns i*band..), blurred elsewhere."""
    frames = []
    for i in range(k):
        frame = cv2.GaussianBlur(base, (0, 0), sigma)
        frame[:, i * band:(i + 1) * band] = base[:, i * band:(i + 1) * band]
        frames.append(frame)
    return frames


def test_source_map_names_the_sharp_frame(tmp_path, rng, capsys):
    k, band = 4, 32
    frames = _banded_stack(_texture(rng, 64, k * band), k, band)
    stack = _write_stack(tmp_path / "s", frames)
    source, depth = tmp_path / "source.png", tmp_path / "depth.png"
    assert main(["fuse", str(stack), "-o", str(tmp_path / "fused.png"), "--source-map", str(source),
                 "--depth", str(depth), "--no-align"]) == 0
    assert str(source) in capsys.readouterr().out
    index = read_image(source)
    assert index.dtype == np.uint8 and index.shape == (64, k * band)
    assert set(np.unique(index)) <= set(range(k))
    for i in range(k):
        assert np.mean(index[:, i * band:(i + 1) * band] == i) > 0.9, i
    # The depth map (measured from the focus curve, not the decision) puts each band at its frame,
    # in the display scale frame i -> i / (K-1) * 65535, away from the bands' edges.
    d = read_image(depth).astype(np.float64) / 65535 * (k - 1)
    truth = np.repeat(np.arange(k), band)[None, :].repeat(64, axis=0)
    inner = np.ones(k * band, bool)
    for edge in range(band, k * band, band):
        inner[edge - 4:edge + 4] = False
    assert np.mean(np.abs(d - truth)[:, inner] < 0.5) > 0.99


def test_source_map_values_and_types():
    from surgifuse.commands.fuse import source_map_image

    depth = np.array([[0.0, 0.49, 0.5, 0.51, 1.5, 2.9, 7.0, -1.0]], np.float32)
    assert source_map_image(depth, 3).tolist() == [[0, 0, 0, 1, 1, 2, 2, 0]]  # nearest frame, clipped
    assert source_map_image(depth, 3).dtype == np.uint8 and source_map_image(depth, 256).dtype == np.uint8
    wide = source_map_image(np.array([[0.0, 255.4, 299.0]], np.float32), 300)
    assert wide.dtype == np.uint16 and wide.tolist() == [[0, 255, 299]]


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_source_map_survives_the_file_round_trip(tmp_path, rng, ext):
    from surgifuse.commands.fuse import source_map_image

    for k in (7, 300):
        index = source_map_image(rng.uniform(0, k - 1, (12, 20)).astype(np.float32), k)
        write_image(tmp_path / f"map{ext}", index)
        back = read_image(tmp_path / f"map{ext}")
        assert back.dtype == index.dtype
        np.testing.assert_array_equal(back, index)


def test_source_map_jpeg_is_refused_before_work(tmp_path, rng, tiny_engine, capsys):
    stack = _write_stack(tmp_path / "s", [_texture(rng) for _ in range(2)])
    rc = main(["fuse", str(stack), "-o", str(tmp_path / "fused.png"), "--source-map", str(tmp_path / "fused_src.jpg"),
               "--engine", "tiny"])
    _assert_failed_cleanly(rc, capsys, tmp_path, "fused_src.jpg", "frame indices", ".png or .tif")
    rc = main(["fuse", str(stack), "-o", str(tmp_path / "fused.png"), "--source-map", str(tmp_path / "fused.png"),
               "--engine", "tiny"])
    _assert_failed_cleanly(rc, capsys, tmp_path, "both the output and the source map")


def test_sixteen_bit_tiff_stack_stays_16_bit_end_to_end(tmp_path, rng):
    # Values that use the low byte: a conversion to 8 bits anywhere on the way (and back) would lose
    # it; the classical engine copies the sharp frame's pixels, so they must come out bit-exact.
    k, band = 3, 32
    base = cv2.GaussianBlur(rng.integers(0, 65536, (64, k * band, 3)).astype(np.float32), (0, 0), 1.0)
    base = np.round((base - base.min()) / np.ptp(base) * 60000 + 2000).astype(np.uint16)
    assert len(np.unique(base & 0xFF)) == 256
    stack = _write_stack(tmp_path / "s", _banded_stack(base, k, band), ext=".tif")
    out, depth = tmp_path / "fused.tif", tmp_path / "depth.tif"
    assert main(["fuse", str(stack), "-o", str(out), "--depth", str(depth), "--no-align", "--quiet"]) == 0
    fused, d = read_image(out), read_image(depth)
    assert fused.dtype == np.uint16 and fused.shape == base.shape and d.dtype == np.uint16
    assert len(np.unique(fused)) > 256 and len(np.unique(fused & 0xFF)) == 256
    for i in range(k):
        inner = np.s_[8:-8, i * band + 8:(i + 1) * band - 8]
        np.testing.assert_array_equal(fused[inner], base[inner])
    assert d.min() == 0 and d.max() == 65535 and len(np.unique(d)) > k  # sub-frame depth kept in 16 bits
