"""The websocket stream against a real uvicorn server on loopback (320x240 frames)."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest
from live_support import make_app, receive_frames, running_server, ws_url
from websockets.sync.client import connect


@pytest.fixture(scope="module")
def server():
    with running_server(make_app()) as base:
        yield base


def _decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def test_frames_arrive_with_sane_metadata(server):
    with connect(ws_url(server)) as ws:
        hello = json.loads(ws.recv(timeout=10))
        frames, _ = receive_frames(ws, 10)
        received_ms = time.time() * 1000
    assert hello["type"] == "hello" and hello["views"] == ["fused", "raw", "depth"]
    assert hello["source"]["state"] in ("starting", "running")
    seqs = [h["seq"] for h, _ in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for header, jpeg in frames:
        assert header["view"] == "fused" and header["requested_view"] == "fused"
        assert header["capture_ms"] <= header["publish_ms"] <= received_ms
        assert received_ms - header["capture_ms"] < 60_000  # server wall clock, ms since epoch
        assert header["engine"] == "maxfocus"
        assert header["width"] == 320 and header["height"] == 240
        assert set(header["timings"]) >= {"read", "wait", "encode"}
        assert _decode(jpeg).shape == (240, 320, 3)
    fused = [h for h, _ in frames if h["fused"]]
    assert fused, "no fused frame among 10"
    last = fused[-1]
    assert 1 <= last["k"] <= 5 and max(last["frames"]) == last["seq"] and len(last["frames"]) == last["k"]
    assert {"prepare", "fuse", "guard"} <= set(last["timings"])


@pytest.mark.parametrize("view", ["raw", "depth"])
def test_query_selects_the_view(server, view):
    with connect(ws_url(server, view=view)) as ws:
        frames, _ = receive_frames(ws, 6)
    shown = {h["view"] for h, _ in frames}
    assert shown <= {view, "raw"} and view in shown
    if view == "depth":
        header, jpeg = next((h, j) for h, j in frames if h["view"] == "depth")
        image = _decode(jpeg)
        # the colour-mapped depth of a five-band sweep shows several distinct hues left to right
        columns = image[120, ::64].astype(int)
        assert len({tuple(c // 40) for c in columns}) >= 3


def test_depth_frames_say_what_their_colours_mean(server):
    # The test source knows no focus positions: the colours are the stack index, 0 .. k-1.
    with connect(ws_url(server, view="depth")) as ws:
        frames, _ = receive_frames(ws, 10)
    depth = [h for h, _ in frames if h["view"] == "depth"]
    assert depth, [h["view"] for h, _ in frames]
    for header in depth:  # (one frame in a stack still filling: k-1 = 0, and the map spans 0..1)
        assert header["depth_scale"] == {"colormap": "turbo", "quantity": "stack", "range": [0, max(1, header["k"] - 1)]}
    assert depth[-1]["k"] == 5 and depth[-1]["depth_scale"]["range"] == [0, 4]
    with connect(ws_url(server, view="fused")) as ws:
        frames, _ = receive_frames(ws, 3)
    assert all(h["depth_scale"] is None for h, _ in frames)


def test_view_switch_and_ping_over_control_messages(server):
    with connect(ws_url(server)) as ws:
        receive_frames(ws, 1)
        t = time.time() * 1000
        ws.send(json.dumps({"type": "ping", "t": t}))
        ws.send(json.dumps({"type": "view", "view": "raw"}))
        ws.send(json.dumps({"type": "view", "view": "infrared"}))
        deadline = time.monotonic() + 10
        pong = error = None
        raw_seen = False
        while time.monotonic() < deadline and not (pong and error and raw_seen):
            frames, controls = receive_frames(ws, 1)
            raw_seen |= frames[0][0]["requested_view"] == "raw"
            for c in controls:
                pong = c if c["type"] == "pong" else pong
                error = c if c["type"] == "error" else error
    assert pong["t"] == t and pong["server_ms"] >= t
    assert "infrared" in error["detail"]
    assert raw_seen


def test_unknown_view_is_refused(server):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus):
        with connect(ws_url(server, view="thermal")) as ws:
            ws.recv(timeout=5)


def test_two_clients_share_the_stream_and_a_stalled_one_does_not_block(server):
    with connect(ws_url(server), max_queue=1, close_timeout=0.5) as stalled:  # connected, never reads
        with connect(ws_url(server)) as ws:
            frames, _ = receive_frames(ws, 30)
        assert stalled.protocol.state.name == "OPEN"
    seqs = [h["seq"] for h, _ in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == 30


def test_status_messages_keep_coming(server):
    with connect(ws_url(server)) as ws:
        deadline = time.monotonic() + 10
        statuses = []
        while len(statuses) < 2 and time.monotonic() < deadline:
            _, controls = receive_frames(ws, 1)
            statuses += [c for c in controls if c["type"] == "status"]
    assert len(statuses) >= 2
    assert statuses[-1]["source"]["state"] == "running"
    assert statuses[-1]["settings"]["k"] == 5


def test_ack_mode_keeps_at_most_two_frames_in_flight_and_skips_to_the_newest(server):
    with connect(ws_url(server, ack="1")) as ws:
        first, _ = receive_frames(ws, 2)
        # no ack yet: nothing more may come for a while (status text messages still do)
        extra = []
        try:
            while True:
                message = ws.recv(timeout=0.8)
                if isinstance(message, bytes):
                    extra.append(message)
        except TimeoutError:
            pass
        assert extra == []
        for header, _ in first:
            ws.send(json.dumps({"type": "ack", "seq": header["seq"]}))
        after, _ = receive_frames(ws, 1)
    # 0.8 s at 30 fps passed: the next frame is the newest, not the one after the last sent
    assert after[0][0]["seq"] > first[-1][0]["seq"] + 5
