"""Health, metrics, OpenAPI, run-time settings and token enforcement against a real uvicorn server."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from urllib.parse import urlsplit

import httpx
import pytest
from live_support import make_app, receive_frames, running_server, ws_url
from PIL import Image
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from surgifuse.service.settings import ServiceSettings, is_loopback


@pytest.fixture(scope="module")
def server():
    with running_server(make_app()) as base:
        yield base


def test_health_and_readiness(server):
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    deadline = time.monotonic() + 10
    while (r := httpx.get(f"{server}/readyz")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert r.status_code == 200
    body = r.json()
    assert body["ready"] is True and body["state"] == "running" and body["published"] > 0


def test_metrics_expose_the_pipeline(server):
    with connect(ws_url(server)) as ws:
        receive_frames(ws, 5)
        text = httpx.get(f"{server}/metrics").text
    for family in ("surgifuse_stage_latency_seconds_bucket", "surgifuse_frames_captured_total",
                   "surgifuse_frames_published_total", "surgifuse_frame_rate", "surgifuse_clients",
                   "surgifuse_frames_unfused", "surgifuse_frames_dropped"):
        assert family in text, family
    assert 'stage="encode"' in text and 'stage="fuse"' in text and 'stage="send"' in text
    clients = [line for line in text.splitlines() if line.startswith("surgifuse_clients ")]
    assert float(clients[0].split()[1]) >= 1.0


def test_openapi_lists_the_routes(server):
    assert httpx.get(f"{server}/docs").status_code == 200
    paths = httpx.get(f"{server}/openapi.json").json()["paths"]
    for path in ("/v1/fuse", "/v1/settings", "/healthz", "/readyz", "/metrics", "/v1/engines", "/v1/status"):
        assert path in paths, path
    assert {"get", "put"} <= set(paths["/v1/settings"])


def _asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_pages_load_their_assets_from_this_server(server, page):
    # Operating-room networks are often offline: a page that needs a CDN is a blank page there.
    html = httpx.get(f"{server}{page}").text
    urls = _asset_urls(html) + re.findall(r"""url:\s*["']([^"']+)["']""", html)
    assert any(u.endswith(".js") for u in urls), urls
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{page} loads {url} from another host"
        r = httpx.get(f"{server}{url}")
        assert r.status_code == 200 and len(r.content) > 200, (url, r.status_code, len(r.content))
    assert "://" not in html, "an absolute URL: another host"


def test_favicon_is_a_real_icon(server):
    r = httpx.get(f"{server}/favicon.ico")
    assert r.status_code == 200
    assert r.headers["content-type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    icon = Image.open(io.BytesIO(r.content))
    assert icon.format == "ICO" and {(16, 16), (32, 32)} <= set(icon.info["sizes"])
    icon.load()
    assert icon.convert("RGB").getextrema() != ((0, 0),) * 3  # not a blank square
    assert "/favicon.ico" in _asset_urls(httpx.get(f"{server}/").text)


def test_page_and_static_files_are_served(server):
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and "app.js" in page.text and "<canvas" in page.text
    js = httpx.get(f"{server}/static/app.js")
    assert js.status_code == 200 and "/ws/stream" in js.text


def test_settings_change_takes_effect_on_the_stream(server):
    before = httpx.get(f"{server}/v1/settings").json()
    assert before["k"] == 5 and before["jpeg_quality"] == 80
    r = httpx.put(f"{server}/v1/settings", json={"k": 2, "jpeg_quality": 30})
    assert r.status_code == 200, r.text
    assert r.json()["k"] == 2 and r.json()["jpeg_quality"] == 30
    try:
        with connect(ws_url(server)) as ws:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                (header, jpeg), = receive_frames(ws, 1)[0]
                if header["fused"] and header["k"] == 2:
                    break
        assert header["k"] == 2 and len(header["frames"]) == 2
        small_jpeg = len(jpeg)
    finally:
        httpx.put(f"{server}/v1/settings", json={"k": 5, "jpeg_quality": 95})
    with connect(ws_url(server)) as ws:
        frames, _ = receive_frames(ws, 8)
    assert len(frames[-1][1]) > small_jpeg  # quality 95 makes larger JPEGs than 30
    httpx.put(f"{server}/v1/settings", json={"jpeg_quality": 80})


@pytest.mark.parametrize("body, field", [({"k": 0}, "k"), ({"jpeg_quality": 101}, "jpeg_quality"),
                                         ({"engine": "nope"}, "engine"), ({"k": None}, "k"),
                                         ({"engine_options": {"threshold": -3}}, "threshold"),
                                         ({"engine_options": {"thresh": 3}}, "thresh"), ({"k": 40}, "k"),
                                         ({"colour": "red"}, "colour")])
def test_bad_settings_get_422_naming_the_field(server, body, field):
    r = httpx.put(f"{server}/v1/settings", json=body)
    assert r.status_code == 422
    locs = [e["loc"] for e in r.json()["detail"]]
    assert any(field in loc for loc in locs), locs
    assert httpx.get(f"{server}/v1/settings").json()["k"] == 5  # nothing changed


def test_a_k_the_engine_cannot_take_is_refused_with_the_allowed_range(server):
    # The decision core takes at most 31 frames: 40 used to answer 200, then every frame went out raw.
    r = httpx.put(f"{server}/v1/settings", json={"k": 40})
    assert r.status_code == 422
    body = r.json()
    assert body["field"] == "k" and body["allowed"] == "1..31" and "'classical'" in body["detail"][0]["msg"]
    r = httpx.put(f"{server}/v1/settings", json={"engine": "msmfm", "k": 40})  # msmfm takes any K
    assert r.status_code == 200 and r.json()["k"] == 40
    r = httpx.put(f"{server}/v1/settings", json={"engine": "classical"})  # ... and classical not 40
    assert r.status_code == 422 and r.json()["field"] == "k"
    assert httpx.put(f"{server}/v1/settings", json={"engine": "classical", "k": 5}).status_code == 200


def test_switching_engine_keeps_accepted_options_and_reports_dropped(server):
    r = httpx.put(f"{server}/v1/settings", json={"engine_options": {"threshold": 9, "filter_radius": 2}})
    assert r.status_code == 200 and r.json()["engine_options"] == {"threshold": 9, "filter_radius": 2}
    for engine in ("msmfm", "fn", "autoencoder"):
        r = httpx.put(f"{server}/v1/settings", json={"engine": "classical", "engine_options":
                                                     {"threshold": 9, "filter_radius": 2}})
        assert r.status_code == 200
        r = httpx.put(f"{server}/v1/settings", json={"engine": engine})
        assert r.status_code == 200, r.text  # it used to be a 422 with a Python TypeError text
        body = r.json()
        assert body["engine"] == engine and "threshold" in body["dropped_options"]
        if engine == "autoencoder":  # it has a filter_radius of its own
            assert body["engine_options"] == {"filter_radius": 2}
        else:
            assert set(body["dropped_options"]) == {"threshold", "filter_radius"} and body["engine_options"] == {}
    httpx.put(f"{server}/v1/settings", json={"engine": "classical", "engine_options": None})


def test_engines_lists_what_each_accepts(server):
    body = httpx.get(f"{server}/v1/engines").json()
    specs = {spec["name"]: spec for spec in body["specs"]}
    assert set(specs) == set(body["engines"]) >= {"classical", "fn", "autoencoder", "msmfm"}
    threshold = next(o for o in specs["classical"]["options"] if o["name"] == "threshold")
    from surgifuse.engines import create_engine

    # the default listed is the one an engine built without options uses
    assert threshold["default"] == create_engine("classical").threshold == 0
    assert threshold["minimum"] == 0 and threshold["type"] == "int"
    assert specs["classical"]["limits"]["max_k"] == 31 and specs["msmfm"]["limits"]["max_k"] is None
    assert specs["fn"]["limits"]["dtypes"] == ["uint8"]


def test_a_too_slow_engine_answers_with_a_warning_the_stream_carries():
    from live_support import MaxFocusEngine

    def factory(name, **options):
        return MaxFocusEngine(delay_s=0.2 if name == "msmfm" else 0.0)

    with running_server(make_app(engine_factory=factory, budget_ms=50.0)) as base:
        with connect(ws_url(base)) as ws:
            receive_frames(ws, 2)
        r = httpx.put(f"{base}/v1/settings", json={"engine": "msmfm"})
        assert r.status_code == 200
        warnings = r.json()["warnings"]
        assert len(warnings) == 1 and "'msmfm'" in warnings[0] and "50 ms budget" in warnings[0]
        with connect(ws_url(base)) as ws:
            hello = json.loads(ws.recv(timeout=10))
        assert hello["type"] == "hello" and hello["warnings"] == warnings
        r = httpx.put(f"{base}/v1/settings", json={"engine": "classical"})
        assert r.json()["warnings"] == []


# ----------------------------------------------------------------------------------------- security
def test_token_is_required_on_stream_upload_and_settings():
    with running_server(make_app(token="s3cret")) as base:
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/").status_code == 200  # the page holds no video
        assert httpx.get(f"{base}/v1/settings").status_code == 401
        assert httpx.get(f"{base}/v1/settings", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{base}/v1/settings", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.put(f"{base}/v1/settings", json={"k": 3}).status_code == 401
        files = [("files", ("a.png", b"\x89PNG\r\n\x1a\n", "image/png"))]
        assert httpx.post(f"{base}/v1/fuse", files=files).status_code == 401
        with pytest.raises(InvalidStatus):
            with connect(ws_url(base)) as ws:
                ws.recv(timeout=5)
        with pytest.raises(InvalidStatus):
            with connect(ws_url(base, token="wrong")) as ws:
                ws.recv(timeout=5)
        with connect(ws_url(base, token="s3cret")) as ws:
            frames, _ = receive_frames(ws, 2)
        assert len(frames) == 2


def test_non_loopback_bind_needs_a_token_or_insecure():
    with pytest.raises(ValueError, match="SURGIFUSE_TOKEN"):
        ServiceSettings(_env_file=None, host="0.0.0.0").check_security()
    ServiceSettings(_env_file=None, host="0.0.0.0", token="t").check_security()
    ServiceSettings(_env_file=None, host="0.0.0.0", insecure=True).check_security()
    ServiceSettings(_env_file=None, host="127.0.0.1").check_security()
    with pytest.raises(ValueError, match="refusing"):
        make_app(host="192.168.1.20")
    assert is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("SURGIFUSE_K", "7")
    monkeypatch.setenv("SURGIFUSE_TOKEN", "abc")
    monkeypatch.setenv("SURGIFUSE_JPEG_QUALITY", "55")
    s = ServiceSettings(_env_file=None)
    assert s.k == 7 and s.token_value() == "abc" and s.jpeg_quality == 55
    assert ServiceSettings(_env_file=None, k=3).k == 3  # explicit (command line) beats the environment
    monkeypatch.setenv("SURGIFUSE_K", "0")
    with pytest.raises(ValueError):
        ServiceSettings(_env_file=None)


def test_serve_command_refuses_insecure_bind(monkeypatch):
    from surgifuse.cli import main

    monkeypatch.delenv("SURGIFUSE_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert main(["serve", "--k", "0"]) == 2


def test_the_service_never_imports_torch():
    import subprocess
    import sys

    code = ("import sys; from surgifuse.service.app import create_app; import surgifuse.live.motion_guard; "
            "from surgifuse.cli import build_parser; build_parser(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_dead_source_is_reported_and_the_service_stays_up():
    import json as _json

    from live_support import DeadCamera, maxfocus_factory

    from surgifuse.service.app import create_app

    app = create_app(ServiceSettings(_env_file=None, align=False), source=DeadCamera(), engine_factory=maxfocus_factory)
    with running_server(app) as base:
        assert httpx.get(f"{base}/healthz").status_code == 200
        r = httpx.get(f"{base}/readyz")
        assert r.status_code == 503 and r.json()["ready"] is False
        with connect(ws_url(base)) as ws:
            hello = _json.loads(ws.recv(timeout=10))
            status = _json.loads(ws.recv(timeout=10))  # status messages flow with no frame at all
        assert status["type"] == "status"
        assert status["source"]["state"] == "reconnecting" and "no camera" in status["source"]["error"]
        assert hello["source"]["source"] == "camera:9"


def test_the_token_never_reaches_the_access_log(caplog):
    # The display page sends its token in the websocket's query; uvicorn logs every request line
    # (as its access logger formats it: client, method, path with query, version, status).
    make_app(token="s3cret-value")
    access = logging.getLogger("uvicorn.access")
    propagate = access.propagate
    access.propagate = True
    try:
        with caplog.at_level(logging.INFO, logger="uvicorn.access"):
            for path in ("/ws/stream?view=fused&token=s3cret-value&ack=1", "/v1/settings?token=s3cret-value"):
                access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", path, "1.1", 200)
    finally:
        access.propagate = propagate
    lines = {r.getMessage() for r in caplog.records if r.name == "uvicorn.access"}
    assert lines == {'127.0.0.1:5 - "GET /ws/stream?view=fused&token=***&ack=1 HTTP/1.1" 200',
                     '127.0.0.1:5 - "GET /v1/settings?token=*** HTTP/1.1" 200'}
