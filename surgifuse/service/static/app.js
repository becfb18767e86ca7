// SurgiFuse display: one websocket, newest frame wins, capture-to-display latency measured here.
// Framing (docs/api.md): binary message = 4-byte big-endian header length | JSON header | JPEG.
// Text messages are JSON control: hello/status/pong/error from the server, view/ping from us.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const canvas = document.getElementById("view");
  const ctx = canvas.getContext("2d");
  const el = (id) => document.getElementById(id);
  const VIEWS = ["fused", "raw", "depth"];

  // Exposed for tests and for the curious: what the page measured.
  const stats = window.surgifuse = {
    state: "connecting", view: params.get("view") || "fused", framesShown: 0, framesReceived: 0,
    lastHeader: null, latencyMs: null, fps: null, clockOffsetMs: 0, rttMs: null, reconnects: 0,
  };
  if (!VIEWS.includes(stats.view)) stats.view = "fused";

  let ws = null;
  let retryMs = 500;
  let pending = null;      // newest frame waiting for the decoder (older ones are dropped)
  let decoding = false;
  const shownTimes = [];   // display times (ms) over the last second, for fps
  const latencies = [];    // last 30 capture-to-display latencies, for a steady read-out
  let bestRtt = Infinity;
  let pingTimer = null;

  function setState(state, text) {
    stats.state = state;
    const s = el("state");
    s.className = "state " + state;
    s.textContent = text || state;
  }

  function banner(text) {
    const b = el("banner");
    b.textContent = text || "";
    b.classList.toggle("hidden", !text);
  }

  function streamUrl() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = new URLSearchParams({ view: stats.view, ack: "1" });
    if (token) q.set("token", token);
    return `${proto}//${location.host}/ws/stream?${q}`;
  }

  function connect() {
    setState(stats.reconnects ? "reconnecting" : "connecting");
    ws = new WebSocket(streamUrl());
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { retryMs = 500; setState("live"); banner(""); ping(); pingTimer = setInterval(ping, 5000); };
    ws.onmessage = (ev) => (typeof ev.data === "string" ? onControl(JSON.parse(ev.data)) : onFrame(ev.data));
    ws.onclose = (ev) => {
      clearInterval(pingTimer);
      stats.reconnects += 1;
      setState("closed", "disconnected");
      // The last picture stays on screen (never blank); the banner says it is not live.
      banner(ev.code === 1008 || ev.code === 1006 && !stats.framesReceived
        ? "stream refused or unreachable (token?) – retrying" : "connection lost – reconnecting");
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    };
  }

  function ping() {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ping", t: Date.now() }));
  }

  function onControl(msg) {
    if (msg.type === "pong" && typeof msg.t === "number") {
      // Offset of the server clock against ours from the round trip with the smallest delay.
      const now = Date.now(), rtt = now - msg.t;
      stats.rttMs = rtt;
      if (rtt <= bestRtt) { bestRtt = rtt; stats.clockOffsetMs = msg.server_ms - (msg.t + now) / 2; }
    } else if (msg.type === "hello" || msg.type === "status") {
      const src = msg.source || {};
      if (src.state && src.state !== "running") {
        setState("source-down", "source " + src.state);
        banner(`source ${src.state}${src.error ? ": " + src.error : ""} – showing the last frame`);
      } else if (stats.state === "source-down") {
        setState("live"); banner("");
      }
    } else if (msg.type === "error") {
      console.warn("server:", msg.detail);
    }
  }

  function onFrame(buffer) {
    const view = new DataView(buffer);
    const n = view.getUint32(0, false);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, n)));
    const jpeg = new Blob([new Uint8Array(buffer, 4 + n)], { type: "image/jpeg" });
    stats.framesReceived += 1;
    // Acknowledge on receipt (ack=1): the server keeps at most two frames in flight to us, so a
    // slow link skips frames instead of queueing seconds of video in socket buffers.
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ack", seq: header.seq }));
    pending = { header, jpeg };
    if (!decoding) drawNext();
  }

  async function drawNext() {
    decoding = true;
    while (pending) {
      const { header, jpeg } = pending;
      pending = null;
      try {
        const bitmap = await createImageBitmap(jpeg);
        if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
          canvas.width = bitmap.width; canvas.height = bitmap.height;
        }
        ctx.drawImage(bitmap, 0, 0);
        bitmap.close();
        shown(header);
      } catch (err) {
        console.warn("frame decode failed", err);
      }
    }
    decoding = false;
  }

  function shown(header) {
    const now = Date.now();
    stats.framesShown += 1;
    stats.lastHeader = header;
    latencies.push(now + stats.clockOffsetMs - header.capture_ms);
    if (latencies.length > 30) latencies.shift();
    shownTimes.push(now);
    while (shownTimes.length && now - shownTimes[0] > 1000) shownTimes.shift();
    const sorted = latencies.slice().sort((a, b) => a - b);
    stats.latencyMs = sorted[Math.floor(sorted.length / 2)];
    stats.fps = shownTimes.length;
    if (stats.state === "live") banner("");
    el("fused-badge").classList.toggle("hidden", header.fused !== false);
    if (header.fused === false) el("fused-badge").textContent = `RAW (fail-safe: ${header.reason || "unfused"})`;
  }

  function refreshReadout() {
    el("latency").textContent = stats.latencyMs == null ? "–" : Math.round(stats.latencyMs);
    el("fps").textContent = stats.fps == null ? "–" : stats.fps;
    const h = stats.lastHeader;
    const offset = Math.abs(stats.clockOffsetMs) > 5 ? ` · clock offset ${Math.round(stats.clockOffsetMs)} ms` : "";
    el("details").textContent = h
      ? `${h.engine} · K=${h.k} · ${h.width}×${h.height} · #${h.seq} · ${h.view}${offset}` : "waiting for frames";
    // A stalled stream must not look live: the latency read-out grows while nothing arrives.
    if (h && stats.state === "live" && Date.now() - shownTimes[shownTimes.length - 1] > 1000) {
      banner("no new frame for over 1 s");
    }
  }

  function setView(view) {
    if (!VIEWS.includes(view)) return;
    stats.view = view;
    document.querySelectorAll("#toggles button").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "view", view }));
    const q = new URLSearchParams(location.search);
    q.set("view", view);
    history.replaceState(null, "", `${location.pathname}?${q}`);
  }

  document.querySelectorAll("#toggles button").forEach((b) => b.addEventListener("click", () => setView(b.dataset.view)));
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const key = ev.key.toLowerCase();
    if (ev.shiftKey && key === "f") {
      if (document.fullscreenElement) document.exitFullscreen(); else document.documentElement.requestFullscreen();
    } else if (key === "f" || key === "1") setView("fused");
    else if (key === "r" || key === "2") setView("raw");
    else if (key === "d" || key === "3") setView("depth");
    else if (key === "h") el("hud").classList.toggle("hidden");
    else if (key === "?") el("help").classList.toggle("hidden");
    else if (key === "escape") el("help").classList.add("hidden");
  });

  setView(stats.view);
  setInterval(refreshReadout, 250);
  connect();
})();
