"""The benchmark's own arithmetic and outputs: percentiles, ratios, the JSON schema, the PNG, the
OpenCV FMB composition's equality with the core, the e2e client's clock handling, a CLI smoke run."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import numpy as np
import pytest
from conftest import cuda_device_available
from optional import optional_import

from surgifuse.bench import compare
from surgifuse.bench import report as bench_report
from surgifuse.bench.sizes import parse_size
from surgifuse.bench.stats import percentile, summarize, throughput_fps

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- stats ---------------------------------------------------------------------------------------------
def test_percentile_of_1_to_100_is_linear_interpolation():
    data = list(range(1, 101))
    assert percentile(data, 50) == 50.5
    assert percentile(data, 95) == pytest.approx(95.05)
    assert percentile(data, 99) == pytest.approx(99.01)
    assert percentile(data, 0) == 1 and percentile(data, 100) == 100


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
def test_percentile_matches_numpy_linear(rng, n):
    data = rng.exponential(3.0, size=n)
    for q in (0, 1, 25, 50, 90, 95, 99, 99.9, 100):
        assert percentile(data, q) == pytest.approx(np.percentile(data, q, method="linear"), rel=1e-12, abs=1e-12)


def test_percentile_ignores_order():
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert percentile([4.0, 1.0], 50) == 2.5


@pytest.mark.parametrize("bad, q, message", [([], 50, "at least one"), ([1.0, float("nan")], 50, "finite"),
                                             ([1.0], 101, "in \\[0, 100\\]"), ([1.0], -1, "in \\[0, 100\\]")])
def test_percentile_rejects_bad_input(bad, q, message):
    with pytest.raises(ValueError, match=message):
        percentile(bad, q)


def test_summarize_orders_and_counts(rng):
    values = rng.lognormal(0, 1, size=500)
    s = summarize(values)
    assert s["n"] == 500
    assert s["min"] <= s["p50"] <= s["p95"] <= s["p99"] <= s["max"]
    assert s["max"] == values.max() and s["mean"] == pytest.approx(values.mean())
    assert s["p99"] == pytest.approx(np.percentile(values, 99))


def test_throughput():
    assert throughput_fps(120, 4.0) == 30.0
    with pytest.raises(ValueError, match="wall_seconds"):
        throughput_fps(10, 0.0)


# -- sizes ---------------------------------------------------------------------------------------------
def test_parse_size():
    assert parse_size("1080p") == (1920, 1080)
    assert parse_size("4K") == (3840, 2160)
    assert parse_size("512") == (512, 512)
    assert parse_size("64x48") == (64, 48)
    with pytest.raises(ValueError, match="unknown size"):
        parse_size("huge")
    with pytest.raises(ValueError, match="at least 16"):
        parse_size("8x64")


# -- comparisons ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, step, threshold, window", [
    ((64, 80, 3), 1, 7, 1), ((50, 40), 2, 0, 2), ((33, 47, 3), 1, 30, 3), ((64, 64, 3), 3, 7, 0)])
def test_opencv_composition_equals_core(rng, shape, step, threshold, window):
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    check = compare.check_opencv_matches_core(img, step=step, threshold=threshold, window=window)
    assert check["equal"] and check["max_abs_diff"] == 0
    # window 3 sums 49 values of up to 1020: past int16, so the float32 path must be taken.
    expected_dtype = np.float32 if window == 3 else np.int16
    assert compare.opencv_focus_measure(img, step=step, threshold=threshold, window=window).dtype == expected_dtype


def test_opencv_composition_on_a_known_image():
    img = np.zeros((9, 9), np.uint8)
    img[4, 4] = 10  # ML at the centre 40, at its 4 neighbours 10 (>= 7): all kept
    fm = compare.opencv_focus_measure(img, threshold=7, window=1)
    assert fm[4, 4] == 40 + 4 * 10
    assert fm[3, 3] == 40 + 10 + 10  # the diagonal window holds the centre and two neighbours
    assert compare.opencv_focus_measure(img, threshold=11, window=1)[3, 3] == 40  # neighbours below T


def test_opencv_composition_rejects_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        compare.opencv_focus_measure(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="interior"):
        compare.interior((4, 4), step=1, window=1)


def test_comparison_ratio_is_baseline_over_candidate():
    c = compare.comparison("x", baseline="slow", candidate="fast", baseline_ms=[10, 20, 30], candidate_ms=[4, 5, 6])
    assert c["baseline_p50_ms"] == 20 and c["candidate_p50_ms"] == 5
    assert c["speedup"] == 4.0


def _fake_run(engine, totals):
    return {"engine": engine, "samples_ms": {"total": list(totals)}}


def test_engines_compared_to_classical():
    out = compare.compare_engines_to_classical([_fake_run("classical", [2, 2, 2]), _fake_run("fn", [10, 20, 30])])
    assert len(out) == 1 and out[0]["candidate"] == "fn"
    assert out[0]["speedup"] == pytest.approx(0.1)
    assert compare.compare_engines_to_classical([_fake_run("fn", [1.0])]) == []


def test_streaming_vs_whole_with_a_counting_engine():
    engine = _CountingEngine()
    frames = [np.full((16, 16), i, np.uint8) for i in range(4)]
    c = compare.compare_streaming_vs_whole(engine, frames, repeats=3)
    assert c["candidate"] == "streaming update" and c["speedup"] > 0
    # 4 to start, then per whole fuse 4 (2 warm-up + 3 timed), per streaming update 1 (5 calls)
    assert engine.prepared == 4 + 5 * 4 + 5


# -- runner --------------------------------------------------------------------------------------------
from surgifuse.engines.base import Engine, FusionResult  # noqa: E402


class _CountingEngine(Engine):
    """Picks, per pixel, the frame with the largest prepared value; counts prepare calls."""

    name = "counting"

    def __init__(self):
        self.prepared = 0

    def prepare_frame(self, frame):
        self.prepared += 1
        return float(frame.mean())

    def fuse_prepared(self, frames, prepared):
        best = int(np.argmax(prepared))
        h, w = frames[0].shape[:2]
        return FusionResult(frames[best], np.full((h, w), best, np.float32), np.ones((h, w), np.float32), {"pick": 0.01})


class _CountingSource:
    def __init__(self, shape=(24, 32, 3)):
        self.shape, self.count = shape, 0

    def next(self):
        self.count += 1
        return np.full(self.shape, self.count % 256, np.uint8)


def test_run_streaming_records_every_stage_per_frame():
    from surgifuse.bench.runner import BenchConfig, run_streaming

    config = BenchConfig(engine="counting", width=32, height=24, k=3, frames=7, warmup=2, align=False, clients=3)
    engine, source = _CountingEngine(), _CountingSource()
    ticks = []
    run = run_streaming(config, engine=engine, source=source, progress=ticks.append)
    assert list(run["stages"]) == ["decode", "fmb", "fusion", "guard", "encode", "publish", "total"]
    assert all(len(v) == 7 for v in run["samples_ms"].values())
    assert sum(ticks) == 7
    # warm-up is at least K frames: 3 untimed + 7 timed, one prepare each (streaming, not K per frame)
    assert source.count == 10 and engine.prepared == 10
    assert run["engine_timings"]["pick"]["n"] == 7
    for name, s in run["stages"].items():
        assert s["p50"] <= s["p95"] <= s["p99"] <= s["max"], name
    stage_sum = sum(np.array(run["samples_ms"][s]) for s in config.stages)
    assert np.all(stage_sum <= np.array(run["samples_ms"]["total"]) + 1e-6)
    assert "3 clients" in run["publisher"]


def test_publish_stage_hands_every_client_the_service_packet():
    import cv2

    from surgifuse.bench.runner import ServicePublishStage
    from surgifuse.live.frames import ProcessedFrame
    from surgifuse.live.publisher import unpack_frame

    stage = ServicePublishStage(3, jpeg_quality=90)
    image = np.zeros((16, 24, 3), np.uint8)
    image[:, :12, 0] = 255  # left half red (RGB)
    for seq in (7, 8):
        processed = ProcessedFrame(seq=seq, capture_ms=1.0, raw=image, image=image, depth=None, fused=True,
                                   engine="x", k=3, frame_seqs=[seq])
        stage.publish(stage.encode(processed))  # the second replaces the unsent first: latest wins
    for slot in stage._slots:
        assert slot.skipped == 1
        header, jpeg = unpack_frame(asyncio.run(slot.next()))
        assert header["seq"] == 8 and (header["width"], header["height"]) == (24, 16)
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert bgr[8, 3, 2] > 200 and bgr[8, 3, 0] < 50  # still red after the BGR conversion


def test_bench_config_rejects_bad_values():
    from surgifuse.bench.runner import BenchConfig

    with pytest.raises(ValueError, match="k must be"):
        BenchConfig(k=0)
    with pytest.raises(ValueError, match="source"):
        BenchConfig(source="camera")


# -- report --------------------------------------------------------------------------------------------
def _minimal_report():
    samples = {"decode": [1.0, 2.0, 3.0], "total": [5.0, 6.0, 9.0]}
    return {
        "schema": bench_report.SCHEMA, "mode": "pipeline", "created": "2025-01-01T00:00:00+00:00", "command": "surgifuse bench",
        "config": {"width": 64, "height": 64, "k": 3}, "machine": {"cpu_model": "x", "cpu_logical_cores": 2, "gpus": [], "libraries": {}},
        "runs": [{"engine": "classical", "device": "cpu", "stages": {k: summarize(v) for k, v in samples.items()},
                  "samples_ms": samples, "throughput_fps": 100.0, "cpu_percent": 95.0, "peak_rss_mb": 120.0}],
        "comparisons": [compare.comparison("c", baseline="a", candidate="b", baseline_ms=[2.0], candidate_ms=[1.0])],
        "skipped": [{"name": "FMB: CUDA vs CPU", "reason": "no CUDA device"}],
    }


def test_schema_accepts_a_valid_report():
    rep = _minimal_report()
    bench_report.validate_report(rep)
    bench_report.validate_report(json.loads(json.dumps(rep)))  # survives a JSON round trip


@pytest.mark.parametrize("breaker, message", [
    (lambda r: r.pop("machine"), "lacks 'machine'"),
    (lambda r: r["runs"][0].update(throughput_fps="fast"), "throughput_fps has type str"),
    (lambda r: r["runs"][0]["stages"]["decode"].update(p99=99.0), "p99"),
    (lambda r: r["runs"][0]["stages"].pop("total"), "lacks 'total'"),
    (lambda r: r["runs"][0]["samples_ms"]["decode"].pop(), "has 2 values"),
    (lambda r: r["comparisons"][0].update(speedup=-1.0), "positive"),
    (lambda r: r["skipped"].append({"name": 3}), "skipped\\[1\\]"),
])
def test_schema_names_what_is_wrong(breaker, message):
    rep = _minimal_report()
    breaker(rep)
    with pytest.raises(ValueError, match=message):
        bench_report.validate_report(rep)


def test_table_and_png(tmp_path):
    rep = _minimal_report()
    table = bench_report.format_table(rep)
    assert "classical on cpu" in table and "decode" in table and "x2.00" in table
    md = bench_report.format_markdown(rep)
    assert "| decode | 2.00 | 2.90 | 2.98 | 3.00 |" in md and "x2.00" in md and "no CUDA device" in md
    path = bench_report.plot_report(rep, tmp_path / "stages.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    import cv2

    assert cv2.imread(str(path)) is not None


# -- end-to-end client ---------------------------------------------------------------------------------
SERVER_CLOCK_AHEAD_MS = 10_000.0  # the fake server's clock runs 10 s ahead: the client must correct it
CAPTURE_AGE_MS = 30.0


class _FakeStreamServer:
    """A ``/ws/stream`` look-alike: frames whose capture stamp is 30 ms old on a clock 10 s ahead,
    every other sequence number (one skipped frame per frame), pongs on that clock, a token check."""

    def __init__(self, token=None):
        self.token = token
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self):
        import websockets

        async def start():
            return await websockets.serve(self._handler, "127.0.0.1", 0, process_request=self._check)

        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/ws/stream"
        return self

    def __exit__(self, *exc):
        async def close():
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def _check(self, connection, request):
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return connection.respond(403, "missing or wrong token\n")
        return None

    @staticmethod
    def _server_ms():
        return time.time() * 1000.0 + SERVER_CLOCK_AHEAD_MS

    async def _handler(self, ws):
        import websockets

        from surgifuse.live.publisher import pack_frame

        async def answer_pings():
            async for text in ws:
                body = json.loads(text)
                if body.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong", "t": body["t"], "server_ms": self._server_ms()}))

        pinger = asyncio.create_task(answer_pings())
        await ws.send(json.dumps({"type": "hello"}))
        seq = 0
        try:
            while True:
                now = self._server_ms()
                header = {"seq": seq, "capture_ms": now - CAPTURE_AGE_MS, "publish_ms": now - 5.0, "fused": seq % 4 != 2,
                          "reason": None if seq % 4 != 2 else "over budget",
                          "engine": "fake", "width": 8, "height": 8, "timings": {"fuse": 1.5}}
                await ws.send(pack_frame(header, b"\xff\xd8not-a-real-jpeg"))
                seq += 2
                await asyncio.sleep(0.01)
        except websockets.ConnectionClosed:
            pass
        finally:
            pinger.cancel()


def test_e2e_client_measures_capture_to_receipt_across_clocks():
    from surgifuse.bench.e2e import run_e2e

    with _FakeStreamServer() as server:
        rep = run_e2e(server.url, duration=0.6)
    bench_report.validate_report(rep)
    run = rep["runs"][0]
    n = run["frames_received"]
    assert n >= 3 and run["engine"] == "fake"
    assert run["clock_offset_ms"] == pytest.approx(SERVER_CLOCK_AHEAD_MS, abs=run["clock_rtt_ms"] / 2 + 1.0)
    # capture -> receipt is at least the stamp's age; uncorrected it would be about 10 s more.
    total = run["stages"]["total"]
    slack = run["clock_rtt_ms"] / 2 + 1.0
    assert total["min"] >= CAPTURE_AGE_MS - slack and total["p50"] < 2000.0
    assert run["stages"]["capture_to_publish"]["p50"] == pytest.approx(CAPTURE_AGE_MS - 5.0, abs=1e-6)
    assert run["frames_skipped"] == n - 1  # every other sequence number never arrived
    assert run["frames_unfused"] in (n // 2, (n + 1) // 2)
    assert run["total_fused_only"]["n"] == n - run["frames_unfused"]
    assert run["unfused_reasons"] == {"over budget": run["frames_unfused"]}
    assert run["server_timings"]["fuse"]["p50"] == 1.5


def test_e2e_client_sends_the_token_and_reports_a_refusal():
    from surgifuse.bench.e2e import run_e2e

    with _FakeStreamServer(token="s3cret") as server:
        assert run_e2e(server.url, duration=0.3, token="s3cret")["runs"][0]["frames_received"] > 0
        with pytest.raises(ValueError, match="403"):
            run_e2e(server.url, duration=0.3, token="wrong")


def test_e2e_rejects_a_non_websocket_url():
    from surgifuse.bench.e2e import run_e2e

    with pytest.raises(ValueError, match="ws://"):
        run_e2e("http://127.0.0.1:1/ws/stream", duration=1)


# -- CLI -----------------------------------------------------------------------------------------------
def test_cli_smoke_writes_a_valid_json_and_png(tmp_path, capsys):
    from surgifuse.cli import main

    out, png, md = tmp_path / "bench.json", tmp_path / "bench.png", tmp_path / "bench.md"
    code = main(["bench", "--size", "64x64", "--k", "3", "--frames", "5", "--warmup", "3", "--repeats", "2",
                 "--json", str(out), "--plot", str(png), "--markdown", str(md), "--no-progress"])
    assert code == 0
    rep = json.loads(out.read_text())
    bench_report.validate_report(rep)
    run = rep["runs"][0]
    assert run["engine"] == "classical"
    assert set(run["stages"]) == {"decode", "align", "fmb", "fusion", "guard", "encode", "publish", "total"}
    for name, s in run["stages"].items():
        assert s["n"] == 5 and s["p50"] <= s["p95"] <= s["p99"] <= s["max"], name
    names = [c["name"] for c in rep["comparisons"]]
    assert any("OpenCV" in n for n in names) and any("streaming" in n for n in names)
    fmb = next(c for c in rep["comparisons"] if "OpenCV" in c["name"])
    assert fmb["outputs_equal"] is True
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert "| fusion |" in md.read_text()
    assert "fusion" in capsys.readouterr().out


def test_cli_bad_size_is_one_line_error(capsys):
    from surgifuse.cli import main

    assert main(["bench", "--size", "huge", "--no-progress"]) == 2
    assert "unknown size" in capsys.readouterr().err


@pytest.mark.skipif(cuda_device_available(), reason="checks the no-GPU error path")
def test_cli_cuda_without_a_device_says_so(capsys):
    from surgifuse.cli import main

    assert main(["bench", "--device", "cuda", "--size", "64x64", "--frames", "2", "--no-progress"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.fixture
def stderr_is_a_terminal(monkeypatch):
    """Progress as on a terminal (a tqdm bar), so that a bar drawn too early shows in stderr."""
    import surgifuse.progress

    monkeypatch.setattr(surgifuse.progress, "_is_terminal", lambda stream: True)


def _one_error_line(err: str) -> str:
    assert "\r" not in err and err.count("\n") == 1, f"more than the error on stderr: {err!r}"
    assert err.startswith("surgifuse bench: error: ")
    return err


@pytest.mark.skipif(cuda_device_available(), reason="checks the no-GPU error path")
def test_cli_cuda_without_a_device_fails_before_any_progress(capsys, stderr_is_a_terminal):
    from surgifuse.cli import main

    assert main(["bench", "--device", "cuda", "--size", "64x64", "--frames", "2"]) == 2
    assert "no CUDA device" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("argv, message", [
    (["--e2e", "http://127.0.0.1:1/ws/stream"], "ws://"),
    (["--e2e", "ws://127.0.0.1:1/ws/stream", "--duration", "-1"], "--duration"),
    (["--k", "5", "--warmup", "3"], "--warmup"),
    (["--repeats", "0"], "--repeats"),
    (["--frames", "0"], "frames"),
])
def test_cli_bad_arguments_fail_before_any_progress(argv, message, capsys, stderr_is_a_terminal):
    from surgifuse.cli import main

    assert main(["bench", "--size", "64x64", *argv]) == 2
    assert message in _one_error_line(capsys.readouterr().err)


def test_cli_warmup_below_k_names_option_k_and_value(capsys):
    from surgifuse.cli import main

    assert main(["bench", "--size", "64x64", "--k", "5", "--warmup", "3", "--frames", "2", "--no-compare",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--warmup" in err and "5" in err and "got 3" in err


def test_cli_progress_writes_no_carriage_returns_into_a_log(capsys):
    from surgifuse.cli import main

    # stderr is captured here, as in a log file: progress without the bar's redraws.
    assert main(["bench", "--size", "64x64", "--k", "3", "--frames", "3", "--no-compare"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "bench 64x64: 3/3 frame" in err


def test_require_cuda_says_what_was_probed(monkeypatch):
    from surgifuse.bench import cuda

    monkeypatch.delitem(__import__("sys").modules, "torch", raising=False)
    monkeypatch.setattr(cuda, "cuda_device_count", lambda: 0)
    assert cuda.gpu_available() is False
    with pytest.raises(cuda.CudaUnavailableError, match="no CUDA device: the C\\+\\+ core .*ONNX Runtime"):
        cuda.require_cuda()
    monkeypatch.setattr(cuda, "cuda_device_count", lambda: 1)
    assert cuda.gpu_available() is True
    cuda.require_cuda()  # a device: no error


def test_cuda_device_count_is_zero_when_the_probe_fails(monkeypatch):
    from surgifuse import _core as core
    from surgifuse.bench import cuda

    def failing_probe():
        raise RuntimeError("CUDA driver version is insufficient")

    monkeypatch.setattr(core, "cuda_device_count", failing_probe, raising=False)
    assert cuda.cuda_device_count() == 0
    monkeypatch.setattr(core, "cuda_device_count", lambda: 2, raising=False)
    assert cuda.cuda_device_count() == 2


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_device_available(), reason="needs a CUDA device")
def test_cuda_fmb_is_bit_exact_and_compared(rng):
    img = rng.integers(0, 256, (270, 480, 3), dtype=np.uint8)
    c = compare.compare_fmb_gpu_vs_cpu(img, repeats=3)
    assert c["outputs_equal"] is True and c["speedup"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_device_available(), reason="needs a CUDA device")
def test_torch_fmb_on_the_device_equals_the_core(rng):
    torch = optional_import("torch")
    from surgifuse import _core
    from surgifuse.learning.torch_focus_measure import focus_measure_torch

    img = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    t = torch.from_numpy(img).cuda().permute(2, 0, 1)[None].float()
    got = focus_measure_torch(t)[0].permute(1, 2, 0).cpu().numpy()
    np.testing.assert_array_equal(got.astype(np.int64), _core.focus_measure(img).astype(np.int64))


def test_e2e_against_the_real_service():
    import live_support

    from surgifuse.bench.e2e import run_e2e

    with live_support.running_server(live_support.make_app(token="tok")) as base:
        rep = run_e2e(live_support.ws_url(base), duration=1.0, token="tok")
    bench_report.validate_report(rep)
    run = rep["runs"][0]
    assert run["frames_received"] >= 3 and run["frame_sizes"] == ["320x240"]
    s = run["stages"]
    # same machine, same clock: every frame arrives after it was captured and after it was published
    assert s["total"]["min"] > 0 and s["capture_to_publish"]["min"] >= 0
    assert abs(run["clock_offset_ms"]) <= run["clock_rtt_ms"] / 2 + 1.0


@pytest.mark.parametrize("argv, message", [
    (["--plot", "out.jpg"], "PNG"),
    (["--json", "/nonexistent-folder/x.json"], "does not exist"),
    (["--e2e", "ws://127.0.0.1:1/ws/stream", "--duration", "0"], "duration"),
])
def test_cli_rejects_bad_outputs_before_running(argv, message, capsys):
    from surgifuse.cli import main

    assert main(["bench", "--no-progress", *argv]) == 2
    assert message in capsys.readouterr().err
