"""POST /v1/fuse against a real uvicorn server: round trips, depth, limits, bad uploads, busy workers."""

from __future__ import annotations

import base64
import io
import threading

import httpx
import numpy as np
import pytest
import tifffile
from live_support import MaxFocusEngine, focus_sweep, make_app, running_server

from surgifuse import imageio


@pytest.fixture(scope="module")
def server():
    app = make_app(upload_max_files=8, upload_max_pixels=320 * 240, upload_max_bytes=1_000_000)
    with running_server(app) as base:
        yield base


def _pngs(frames, prefix="f"):
    return [("files", (f"{prefix}{i}.png", imageio.encode_image(f, "png"), "image/png")) for i, f in enumerate(frames)]


def test_round_trip_png_equals_the_engine_result(server):
    frames = focus_sweep(96, 128, k=4, seed=5)
    r = httpx.post(f"{server}/v1/fuse", files=_pngs(frames), data={"engine": "classical"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["x-surgifuse-frames"] == "4"
    expected = MaxFocusEngine().fuse(frames).image
    assert np.array_equal(imageio.decode_image(r.content, "answer"), expected)


def test_round_trip_16bit_multipage_tiff_to_tiff(server):
    frames = [(f.astype(np.uint16) * 257) for f in focus_sweep(64, 80, k=3, seed=6)]
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.stack(frames), photometric="rgb")
    r = httpx.post(f"{server}/v1/fuse", files=[("files", ("stack.tif", buf.getvalue(), "image/tiff"))],
                   data={"output": "tiff"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/tiff" and r.headers["x-surgifuse-frames"] == "3"
    answer = tifffile.imread(io.BytesIO(r.content))
    assert answer.dtype == np.uint16
    assert np.array_equal(answer, MaxFocusEngine().fuse(frames).image)


def test_depth_answer_is_json_with_image_and_float_depth(server):
    frames = focus_sweep(48, 64, k=3, seed=7)
    r = httpx.post(f"{server}/v1/fuse", files=_pngs(frames), data={"depth": "true"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["frames"] == 3 and body["names"] == ["f0.png", "f1.png", "f2.png"]
    assert body["image"]["format"] == "png" and body["depth"]["dtype"] == "float32"
    image = imageio.decode_image(base64.b64decode(body["image"]["data"]), "image")
    depth = tifffile.imread(io.BytesIO(base64.b64decode(body["depth"]["data"])))
    expected = MaxFocusEngine().fuse(frames)
    assert np.array_equal(image, expected.image)
    # the depth `surgifuse fuse --depth` writes: the focus curve's, refined on the fused image
    assert depth.dtype == np.float32 and np.allclose(depth, _measured_depth(frames, expected.image), atol=1e-5)


def _measured_depth(frames, image):
    from surgifuse.depth import refine_depth
    from surgifuse.focus_curve import depth_from_focus_curve

    return refine_depth(*depth_from_focus_curve(frames), image)[0]


def _error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    return r.json()


def test_unreadable_file_gets_422_naming_it(server):
    files = _pngs(focus_sweep(48, 64, k=2)) + [("files", ("notes.txt", b"hello, not an image", "text/plain"))]
    body = _error(httpx.post(f"{server}/v1/fuse", files=files), 422)
    assert body["file"] == "notes.txt" and "notes.txt" in body["detail"]


def test_truncated_png_gets_422_naming_it(server):
    good = imageio.encode_image(focus_sweep(48, 64, k=1)[0], "png")
    files = _pngs(focus_sweep(48, 64, k=1)) + [("files", ("cut.png", good[: len(good) // 2], "image/png"))]
    body = _error(httpx.post(f"{server}/v1/fuse", files=files), 422)
    assert "cut.png" in body["detail"]


def test_mismatched_sizes_get_422_naming_the_file(server):
    files = _pngs(focus_sweep(48, 64, k=2)) + _pngs(focus_sweep(40, 64, k=1), prefix="small")
    body = _error(httpx.post(f"{server}/v1/fuse", files=files), 422)
    assert body["file"] == "small0.png" and "small0.png" in body["detail"]


def test_too_many_files_gets_413(server):
    body = _error(httpx.post(f"{server}/v1/fuse", files=_pngs(focus_sweep(16, 16, k=9))), 413)
    assert "9" in body["detail"] and "8" in body["detail"]


def test_too_many_pixels_gets_413_naming_the_file(server):
    files = _pngs(focus_sweep(48, 64, k=1)) + _pngs(focus_sweep(256, 320, k=1), prefix="huge")
    body = _error(httpx.post(f"{server}/v1/fuse", files=files), 413)
    assert body["file"] == "huge0.png" and "huge0.png" in body["detail"]


def test_too_many_bytes_gets_413(server):
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    blob = imageio.encode_image(noise, "tiff")  # ~230 kB each, incompressible
    files = [("files", (f"n{i}.tif", blob, "image/tiff")) for i in range(8)]
    assert len(blob) * 8 > 1_000_000
    body = _error(httpx.post(f"{server}/v1/fuse", files=files), 413)
    assert "too large" in body["detail"]


def test_no_files_and_bad_options_get_422(server):
    assert httpx.post(f"{server}/v1/fuse", data={"engine": "classical"}).status_code == 422
    files = _pngs(focus_sweep(48, 64, k=2))
    body = _error(httpx.post(f"{server}/v1/fuse", files=files, data={"engine": "nope"}), 422)
    assert "nope" in body["detail"]
    r = httpx.post(f"{server}/v1/fuse", files=files, data={"output": "gif"})
    assert r.status_code == 422 and "output" in str(r.json()["detail"])


def test_busy_workers_answer_503_with_retry_after():
    gate = threading.Event()

    class Blocking(MaxFocusEngine):
        def fuse_prepared(self, frames, prepared):
            gate.wait(10)
            return super().fuse_prepared(frames, prepared)

    factory = lambda name, **options: Blocking()  # noqa: E731
    app = make_app(engine_factory=factory, upload_workers=1, upload_queue=0)
    files = _pngs(focus_sweep(32, 32, k=2))
    with running_server(app) as base:
        first = {}
        t = threading.Thread(target=lambda: first.update(r=httpx.post(f"{base}/v1/fuse", files=files, timeout=20)))
        t.start()
        try:
            for _ in range(100):  # wait until the first upload holds the only worker
                if app.state.uploads.in_use == 1:
                    break
                threading.Event().wait(0.05)
            busy = httpx.post(f"{base}/v1/fuse", files=files)
        finally:
            gate.set()
            t.join(20)
    assert busy.status_code == 503 and int(busy.headers["retry-after"]) > 0
    assert first["r"].status_code == 200


def test_upload_leaves_the_live_stream_alone(server):
    from live_support import receive_frames, ws_url
    from websockets.sync.client import connect

    with connect(ws_url(server)) as ws:
        before, _ = receive_frames(ws, 2)
        httpx.post(f"{server}/v1/fuse", files=_pngs(focus_sweep(48, 64, k=3, seed=9)))
        after, _ = receive_frames(ws, 5)
    assert all(h["width"] == 320 and h["height"] == 240 for h, _ in before + after)
    assert after[-1][0]["seq"] > before[-1][0]["seq"]


def test_check_limits_counts_bytes_and_pages_without_decoding():
    from surgifuse.service.upload import UploadError, UploadLimits, check_limits, image_size

    png = imageio.encode_image(np.zeros((30, 40, 3), np.uint8), "png")
    jpeg = imageio.encode_image(np.zeros((30, 40, 3), np.uint8), "jpeg")
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((3, 30, 40), np.uint8), photometric="minisblack")
    assert image_size(png) == [(40, 30)] and image_size(jpeg) == [(40, 30)]
    assert image_size(buf.getvalue()) == [(40, 30)] * 3
    assert image_size(b"garbage") is None
    check_limits([("a.png", png)], UploadLimits(max_files=1, max_pixels=1200, max_bytes=10**6))
    with pytest.raises(UploadError, match="b.png") as info:
        check_limits([("a.png", png), ("b.png", png)], UploadLimits(max_files=2, max_pixels=1200, max_bytes=len(png) + 1))
    assert info.value.status == 413 and info.value.file == "b.png"
    with pytest.raises(UploadError, match="too many frames") as info:
        check_limits([("s.tif", buf.getvalue())], UploadLimits(max_files=2))
    assert info.value.status == 413
    with pytest.raises(UploadError, match="1200") as info:
        check_limits([("a.png", png)], UploadLimits(max_pixels=1199))
    with pytest.raises(UploadError) as info:
        check_limits([], UploadLimits())
    assert info.value.status == 422


def test_round_trip_with_the_real_classical_engine():
    from surgifuse.engines import create_engine

    frames = focus_sweep(120, 160, k=5, seed=11)
    with running_server(make_app(engine_factory=None)) as base:
        r = httpx.post(f"{base}/v1/fuse", files=_pngs(frames), data={"engine": "classical", "depth": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = create_engine("classical").fuse(frames)
    image = imageio.decode_image(base64.b64decode(body["image"]["data"]), "image")
    depth = tifffile.imread(io.BytesIO(base64.b64decode(body["depth"]["data"])))
    assert body["engine"] == "classical"
    assert np.array_equal(image, expected.image)
    assert np.allclose(depth, _measured_depth(frames, expected.image), atol=1e-5)


def test_a_single_frame_is_not_a_stack(server):
    r = httpx.post(f"{server}/v1/fuse", files=_pngs(focus_sweep(48, 64, k=1)))
    assert r.status_code == 422 and "at least 2 frames" in r.json()["detail"] and r.json()["file"] == "f0.png"


def test_a_stack_the_engine_cannot_take_is_refused_before_fusing():
    from surgifuse.live.pipeline import default_engine_factory

    with running_server(make_app(engine_factory=default_engine_factory)) as base:
        frames16 = [(f.astype(np.uint16) * 257) for f in focus_sweep(32, 40, k=3)]
        buf = io.BytesIO()
        tifffile.imwrite(buf, np.stack(frames16), photometric="rgb")
        r = httpx.post(f"{base}/v1/fuse", files=[("files", ("stack.tif", buf.getvalue(), "image/tiff"))],
                       data={"engine": "fn"})
        assert r.status_code == 422 and "'fn' takes uint8" in r.json()["detail"]
        many = [focus_sweep(16, 16, k=1, seed=s)[0] for s in range(32)]
        r = httpx.post(f"{base}/v1/fuse", files=_pngs(many), data={"engine": "fn"})
        assert r.status_code == 422 and "1..31" in r.json()["detail"]
        r = httpx.post(f"{base}/v1/fuse", files=_pngs(many), data={"engine": "classical"})  # streamed
        assert r.status_code == 200, r.text
        r = httpx.post(f"{base}/v1/fuse", files=_pngs(many), data={"engine": "msmfm"})  # any K
        assert r.status_code == 200, r.text


def test_upload_registers_frames_that_moved_as_fuse_does():
    # POST /v1/fuse takes the offline path of `surgifuse fuse`: frames that moved are registered
    # (it did not align at all before), frames that did not are left alone.
    import cv2

    from surgifuse.engines import create_engine
    from surgifuse.fusion import fuse_focal_stack
    from surgifuse.live.pipeline import default_engine_factory

    rng = np.random.default_rng(3)
    scene = cv2.GaussianBlur(rng.integers(0, 256, (200, 260, 3), dtype=np.uint8), (0, 0), 1.2)
    frames = [scene[10 + dy:170 + dy, 10 + dx:230 + dx].copy() for dy, dx in ((0, 0), (3, -4), (-2, 5))]
    with running_server(make_app(engine_factory=default_engine_factory)) as base:
        moved = httpx.post(f"{base}/v1/fuse", files=_pngs(frames), data={"engine": "classical"})
        plain = httpx.post(f"{base}/v1/fuse", files=_pngs(frames), data={"engine": "classical", "align": "false"})
    assert moved.status_code == 200 and plain.status_code == 200
    assert moved.headers["x-surgifuse-moved"] == "2" and plain.headers["x-surgifuse-moved"] == "0"
    expected = fuse_focal_stack(create_engine("classical"), frames).result.image
    assert np.array_equal(imageio.decode_image(moved.content, "answer"), expected)
    assert not np.array_equal(imageio.decode_image(plain.content, "answer"), expected)
