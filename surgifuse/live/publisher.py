"""The publisher: each processed frame is encoded once per view and shared by every client.

Framing (one binary websocket message per frame, documented in docs/api.md):

    4-byte big-endian unsigned header length N | N bytes of UTF-8 JSON metadata | JPEG bytes

An encoder thread takes the newest processed frame (latest-only slot: publishing never blocks
processing), encodes the views that have at least one client (fused, raw, depth), and hands the
packets to the event loop, where each client has a latest-only slot: a slow client skips frames, it
never delays the others and never makes memory grow (one pending packet per client at most).
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import threading
import time

import cv2
import numpy as np

from surgifuse.errors import InputError

from .frames import LatestSlot, ProcessedFrame, wall_ms
from .metrics import LiveMetrics

log = logging.getLogger("surgifuse.live.publisher")

VIEWS = ("fused", "raw", "depth")

#: A packet older than this is not offered to a client that just connected (nobody watched for a
#: while, so nothing newer was encoded): the display waits one frame rather than show a stale one.
FRESH_MS = 500.0
_HEADER_LENGTH = struct.Struct(">I")


def pack_frame(header: dict, jpeg: bytes) -> bytes:
    """One stream message: length of the JSON header, the header, the JPEG."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return _HEADER_LENGTH.pack(len(head)) + head + jpeg


def unpack_frame(message: bytes) -> tuple[dict, bytes]:
    """Inverse of ``pack_frame``; ``ValueError`` for a message that is not one."""
    if len(message) < 4:
        raise InputError(f"stream message too short: {len(message)} bytes")
    (n,) = _HEADER_LENGTH.unpack_from(message)
    if 4 + n > len(message):
        raise InputError(f"header length {n} exceeds message of {len(message)} bytes")
    return json.loads(message[4:4 + n]), bytes(message[4 + n:])


#: The depth view's colour map: OpenCV's turbo (blue at 0 .. red at 255). Its name travels in the
#: header (``depth_scale``) and the display page draws its legend from the same stops.
DEPTH_COLORMAP = "turbo"


def _focus_known(k: int, focus) -> bool:
    return focus is not None and len(focus) == k and k > 1 and all(f is not None for f in focus)


def depth_scale(k: int, focus=None) -> dict:
    """What the colours of ``colourize_depth(depth, k, focus)`` mean, for a legend.

    ``{"colormap": "turbo", "quantity": "focus", "range": [0, 1]}`` when every stack frame has a
    focus position (the colour is the focus position: 0 nearest the microscope .. 1 farthest), else
    ``{"colormap": "turbo", "quantity": "stack", "range": [0, K-1]}`` (the colour is the index into
    the rolling stack: 0 the oldest frame .. K-1 the newest). The colour map spans ``range``
    linearly, its first colour at ``range[0]``, its last at ``range[1]``.
    """
    if _focus_known(k, focus):
        return {"colormap": DEPTH_COLORMAP, "quantity": "focus", "range": [0, 1]}
    return {"colormap": DEPTH_COLORMAP, "quantity": "stack", "range": [0, max(1, k - 1)]}


def colourize_depth(depth: np.ndarray, k: int, focus=None) -> np.ndarray:
    """Depth index (0..k-1, into the stack) as a BGR turbo colour map, ready for JPEG.

    ``focus``: per stack frame, its focus position (0 nearest the microscope .. 1 farthest), when
    the source knows it. A rolling stack is in capture order, not focus order (a sweep goes back and
    forth), so the index is mapped through the frames' focus positions (piecewise linear, as the
    engine's sub-frame index is) before colouring: blue = near, red = far. Without focus positions
    the colour shows the stack order (blue = oldest frame, red = newest). ``depth_scale`` says which.
    """
    scale = 255.0 / max(1, k - 1)
    index = cv2.convertScaleAbs(depth, alpha=scale)
    if _focus_known(k, focus):
        slots = np.arange(256, dtype=np.float32) / scale
        lut = np.interp(slots, np.arange(k), np.clip(np.asarray(focus, np.float32), 0, 1)) * 255.0
        index = cv2.LUT(index, np.round(lut).astype(np.uint8))
    return cv2.applyColorMap(index, cv2.COLORMAP_TURBO)


def _bgr(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else np.clip(image * 255, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


class ClientSlot:
    """One client's latest-only mailbox, used on the event loop thread only."""

    def __init__(self, view: str = "fused") -> None:
        self.view = view
        self.sent = 0
        self.skipped = 0
        self._packet: bytes | None = None
        self._event = asyncio.Event()
        self._closed = False

    def offer(self, packet: bytes) -> bool:
        """Store the newest packet; True when it replaced one never sent (a skipped frame)."""
        replaced = self._packet is not None
        if replaced:
            self.skipped += 1
        self._packet = packet
        self._event.set()
        return replaced

    async def next(self) -> bytes | None:
        """Wait for the next packet; None once closed."""
        while True:
            if self._closed:
                return None
            if self._packet is not None:
                packet, self._packet = self._packet, None
                self._event.clear()
                return packet
            self._event.clear()
            await self._event.wait()

    def close(self) -> None:
        self._closed = True
        self._event.set()


class FramePublisher:
    """Encode once, fan out to latest-only client slots.

    Parameters
    ----------
    jpeg_quality : int
        1..100; can be changed at run time through ``jpeg_quality``.
    metrics : LiveMetrics, optional
    status : callable, optional
        Returns the source status dict; its ``state`` goes into each header.
    settings : callable, optional
        Returns the current ``LiveSettings``: the instrument read-out's warning distance and focus
        step in mm (defaults without it).
    """

    def __init__(self, *, jpeg_quality: int = 80, metrics: LiveMetrics | None = None, status=None,
                 settings=None) -> None:
        self.jpeg_quality = jpeg_quality
        self.metrics = metrics or LiveMetrics()
        self.status = status
        self.settings = settings
        self._slot: LatestSlot[ProcessedFrame] = LatestSlot()
        self._clients: set[ClientSlot] = set()
        self._latest: dict[str, bytes] = {}
        self._latest_ms = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[str, bytes] | None = None
        self._pending_lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._encode_loop, name="surgifuse-encoder", daemon=True)
        self.encoded = 0

    @property
    def jpeg_quality(self) -> int:
        return self._jpeg_quality

    @jpeg_quality.setter
    def jpeg_quality(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100:
            raise InputError(f"jpeg_quality must be an int in 1..100, got {value!r}")
        self._jpeg_quality = value

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread.start()

    def stop(self) -> None:
        self._stop_event.set()
        self._slot.close()
        self._thread.join(5.0)
        for client in list(self._clients):
            client.close()

    # -- producer side (processing thread) -----------------------------------------------------------
    def submit(self, processed: ProcessedFrame) -> None:
        """Never blocks: replaces a processed frame the encoder has not taken yet."""
        if self._slot.put(processed):
            self.metrics.frames_dropped.labels("encoder").inc()

    # -- clients (event loop) ----------------------------------------------------------------------
    @property
    def client_count(self) -> int:
        return len(self._clients)

    def subscribe(self, view: str = "fused") -> ClientSlot:
        client = ClientSlot(self._check_view(view))
        self._clients.add(client)
        self.metrics.clients.set(len(self._clients))
        self._offer_latest(client)  # a new display shows the current picture at once, never a blank
        return client

    def set_view(self, client: ClientSlot, view: str) -> None:
        client.view = self._check_view(view)
        self._offer_latest(client)

    def _offer_latest(self, client: ClientSlot) -> None:
        latest = self._latest.get(client.view)
        if latest is not None and wall_ms() - self._latest_ms < FRESH_MS:
            client.offer(latest)

    def unsubscribe(self, client: ClientSlot) -> None:
        client.close()
        self._clients.discard(client)
        self.metrics.clients.set(len(self._clients))

    @staticmethod
    def _check_view(view: str) -> str:
        if view not in VIEWS:
            raise InputError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
        return view

    # -- encoder thread ----------------------------------------------------------------------------
    def _wanted_views(self) -> set[str]:
        return {c.view for c in list(self._clients)}

    def _encode_loop(self) -> None:
        while not self._stop_event.is_set():
            processed = self._slot.get(timeout=0.25)
            if processed is None:
                continue
            try:
                packets = self.encode(processed, self._wanted_views())
            except Exception:
                log.exception("encoding frame %d failed", processed.seq)
                continue
            if packets:
                self._hand_over(packets)

    def encode(self, processed: ProcessedFrame, views) -> dict[str, bytes]:
        """Packets for ``views`` of one processed frame (each view encoded once; the instrument
        read-out measured once for all of them)."""
        packets = {}
        instrument, instrument_ms = None, None
        if views:
            t0 = time.perf_counter()
            instrument = self._instrument(processed)
            instrument_ms = (time.perf_counter() - t0) * 1000.0
            self.metrics.observe_ms("instrument", instrument_ms)
        for view in views:
            t0 = time.perf_counter()
            image, shown = self._view_image(processed, view)
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self._jpeg_quality])
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for frame {processed.seq}")
            encode_ms = (time.perf_counter() - t0) * 1000.0
            self.metrics.observe_ms("encode", encode_ms)
            publish_ms = wall_ms()
            self.metrics.observe_ms("capture_to_publish", publish_ms - processed.capture_ms)
            header = {
                "seq": processed.seq,
                "capture_ms": processed.capture_ms,
                "publish_ms": publish_ms,
                "view": shown,
                "requested_view": view,
                "fused": processed.fused,
                "reason": processed.reason,
                "engine": processed.engine,
                "k": processed.k,
                "frames": processed.frame_seqs,
                "focus": processed.frame_focus if any(f is not None for f in processed.frame_focus) else None,
                "width": int(image.shape[1]),
                "height": int(image.shape[0]),
                "timings": {**{k: round(v, 3) for k, v in processed.timings.items()}, "encode": round(encode_ms, 3),
                            **({"instrument": round(instrument_ms, 3)} if instrument_ms is not None else {})},
                "guard_fraction": round(processed.guard_fraction, 5),
                "source_state": (self.status() or {}).get("state") if self.status else None,
                "depth_scale": depth_scale(processed.k, processed.frame_focus) if shown == "depth" else None,
                "instrument": instrument,
            }
            packets[view] = pack_frame(header, jpeg.tobytes())
        self.encoded += 1
        return packets

    def _instrument(self, processed: ProcessedFrame) -> dict | None:
        """The header's instrument read-out (``surgifuse.live.instrument_readout``); None when there
        is nothing to measure, and on a failure (logged once: the picture must go out regardless)."""
        from .instrument_readout import instrument_header
        from .settings import LiveSettings

        config = self.settings() if self.settings is not None else None
        defaults = LiveSettings.model_fields
        warning = config.instrument_warning_steps if config is not None else defaults["instrument_warning_steps"].default
        step_mm = config.focus_step_mm if config is not None else None
        try:
            return instrument_header(processed, warning_steps=warning, focus_step_mm=step_mm)
        except Exception:
            if not getattr(self, "_instrument_failed", False):
                log.exception("instrument read-out failed on frame %d (reported once)", processed.seq)
                self._instrument_failed = True
            return None

    @staticmethod
    def _view_image(processed: ProcessedFrame, view: str) -> tuple[np.ndarray, str]:
        if view == "raw":
            return _bgr(processed.raw), "raw"
        if view == "depth" and processed.depth is not None:
            return colourize_depth(processed.depth_map(), processed.k, processed.frame_focus), "depth"
        if view == "depth":
            return _bgr(processed.raw), "raw"  # unfused frame: no depth; the picture must still move
        return _bgr(processed.image), "fused"

    def _hand_over(self, packets: dict[str, bytes]) -> None:
        # At most one hand-over waits on the loop; a newer one replaces it (latest wins here too).
        with self._pending_lock:
            scheduled = self._pending is not None
            self._pending = packets
        if not scheduled and self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # loop closed during shutdown
                pass

    def _deliver(self) -> None:
        with self._pending_lock:
            packets, self._pending = self._pending, None
        if not packets:
            return
        self._latest = packets  # only the newest round: a view nobody watched has no stale packet to offer
        self._latest_ms = wall_ms()
        for client in list(self._clients):
            packet = packets.get(client.view)
            if packet is not None and client.offer(packet):
                self.metrics.frames_dropped.labels("client").inc()
