"""``/ws/stream``: the live picture. Binary messages carry frames (see ``surgifuse.live.publisher``),
text messages carry JSON control: ``hello`` and ``status`` from the server; ``view``, ``ping`` and
``ack`` from the client (``pong`` answers with the server clock, for a remote display's clock
offset; ``ack`` acknowledges a frame when the client connected with ``?ack=1``)."""

from __future__ import annotations

import asyncio
import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from surgifuse.live.frames import wall_ms
from surgifuse.live.publisher import VIEWS

from ..auth import websocket_token_ok

router = APIRouter()
log = logging.getLogger("surgifuse.service.stream")

#: A status message goes out at least this often, so a display knows the source is down even
#: when no frame arrives.
STATUS_INTERVAL_S = 1.0


#: With ``ack=1`` at most this many frames are sent and not yet acknowledged.
ACK_WINDOW = 2
#: An acknowledgement that does not come within this time is forgiven (a client bug must not freeze it).
ACK_TIMEOUT_S = 2.0


@router.websocket("/ws/stream")
async def stream(websocket: WebSocket, view: str = "fused", ack: bool = False) -> None:
    app = websocket.app
    if not websocket_token_ok(websocket):
        await websocket.close(code=1008, reason="missing or wrong token")  # before accept: HTTP 403
        return
    if view not in VIEWS:
        await websocket.close(code=1008, reason=f"view must be one of {', '.join(VIEWS)}")
        return
    await websocket.accept()
    publisher, pipeline = app.state.publisher, app.state.pipeline
    client = publisher.subscribe(view)
    send_lock = asyncio.Lock()
    # Flow control (ack=1, the display page uses it): the kernel's socket buffers can hold seconds
    # of video for a client on a slow link; with at most ACK_WINDOW frames unacknowledged, such a
    # client skips frames in its latest-only slot instead of watching the past.
    in_flight = 0
    acked = asyncio.Event()

    async def send_text(payload: dict) -> None:
        async with send_lock:
            await websocket.send_text(json.dumps(payload))

    def status_message(kind: str) -> dict:
        status = pipeline.status()
        return {"type": kind, "server_ms": wall_ms(), "view": client.view, "source": status,
                "settings": pipeline.config.model_dump(), "warnings": status["warnings"],
                "clients": publisher.client_count}

    async def sender() -> None:
        await send_text({**status_message("hello"), "views": list(VIEWS),
                         "framing": "binary: 4-byte big-endian header length, JSON header, JPEG"})
        loop = asyncio.get_running_loop()
        next_status = loop.time() + STATUS_INTERVAL_S
        nonlocal in_flight
        while True:
            if ack:
                window_deadline = loop.time() + ACK_TIMEOUT_S
                while in_flight >= ACK_WINDOW and loop.time() < window_deadline:
                    acked.clear()
                    try:
                        await asyncio.wait_for(acked.wait(), timeout=window_deadline - loop.time())
                    except asyncio.TimeoutError:
                        pass
                if in_flight >= ACK_WINDOW:
                    in_flight = 0
            try:
                packet = await asyncio.wait_for(client.next(), timeout=max(0.01, next_status - loop.time()))
            except asyncio.TimeoutError:
                packet = b""
            if packet is None:
                return
            if packet:
                t0 = loop.time()
                async with send_lock:
                    await websocket.send_bytes(packet)
                client.sent += 1
                in_flight += 1
                app.state.metrics.observe_ms("send", (loop.time() - t0) * 1000.0)
            if loop.time() >= next_status:
                await send_text(status_message("status"))
                next_status = loop.time() + STATUS_INTERVAL_S

    async def receiver() -> None:
        nonlocal in_flight
        while True:
            text = await websocket.receive_text()
            try:
                message = json.loads(text)
                kind = message.get("type")
            except (ValueError, AttributeError):
                await send_text({"type": "error", "detail": "control messages are JSON objects with a 'type'"})
                continue
            if kind == "ack":
                in_flight = max(0, in_flight - 1)
                acked.set()
            elif kind == "view":
                try:
                    publisher.set_view(client, message.get("view"))
                except ValueError as exc:
                    await send_text({"type": "error", "detail": str(exc)})
            elif kind == "ping":
                await send_text({"type": "pong", "t": message.get("t"), "server_ms": wall_ms()})
            else:
                await send_text({"type": "error", "detail": f"unknown control message type {kind!r}"})

    tasks = [asyncio.create_task(sender()), asyncio.create_task(receiver())]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, (WebSocketDisconnect, RuntimeError, ConnectionError)):
                log.warning("stream client ended with %r", exc)
    finally:
        for task in tasks:
            task.cancel()
        publisher.unsubscribe(client)
        await asyncio.gather(*tasks, return_exceptions=True)
