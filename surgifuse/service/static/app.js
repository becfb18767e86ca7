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
  // The depth view's colour maps (the header's depth_scale.colormap names one), as the server draws
  // them: OpenCV's COLORMAP_TURBO at entries 0, 5, 10, ..., 255 (linear between, off by at most
  // 1.2 levels from the full map). tests/test_depth_legend.py checks them against the publisher.
  const COLORMAPS = {
    turbo: "30123b 36215f 3b2f80 3f3e9c 424bb5 4559cb 4666dd 4773eb 4680f6 458cfd 4099ff 38a5fb 2fb2f4 " +
      "27bee9 1fc9dd 1ad4d0 18ddc2 1ae4b6 22ebaa 2ff19b 3ff68a 52fa7a 65fd69 79fe59 8bff4b 9cfe40 a9fb39 " +
      "b7f735 c3f134 d0ea34 dbe236 e5d938 eecf3a f5c53a faba39 fdae35 fea130 fe932a fc8423 f9751d f46617 " +
      "ef5811 e84b0c e14109 d83706 ce2d04 c32503 b71d02 a91601 9b0f01 8b0902 7a0403",
  };
  // What the depth colours stand for (docs/api.md, header field depth_scale).
  const DEPTH_QUANTITIES = {
    focus: { title: "depth · focus position", lo: "near", hi: "far" },
    stack: { title: "depth · frame in the stack (capture order)", lo: "oldest", hi: "newest" },
  };

  // Exposed for tests and for the curious: what the page measured.
  const stats = window.surgifuse = {
    state: "connecting", view: params.get("view") || "fused", framesShown: 0, framesReceived: 0,
    lastHeader: null, warnings: [], latencyMs: null, fps: null, clockOffsetMs: 0, rttMs: null, reconnects: 0,
    instrument: null,
  };
  // The instrument read-out (header field instrument, docs/api.md) is measured only on frames whose
  // stack spans the whole focus sweep; between them the last reading stays up this long.
  const INSTRUMENT_HOLD_MS = 1000;
  let instrumentAt = 0;
  if (!VIEWS.includes(stats.view)) stats.view = "fused";

  let ws = null;
  let retryMs = 500;
  let pending = null;      // newest frame waiting for the decoder (older ones are dropped)
  let decoding = false;
  const shownTimes = [];   // display times (ms) over the last second, for fps
  const latencies = [];    // last 30 capture-to-display latencies, for a steady read-out
  let bestRtt = Infinity;
  let pingTimer = null;
  let connectedAt = 0;

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

  // The colour bar of the depth view: shown while the picture is a depth map, labelled from the
  // header's depth_scale (its colour map, what the colours stand for and the values at both ends).
  let legendKey = null;
  function legend(header) {
    const scale = header && header.view === "depth" ? header.depth_scale : null;
    const stops = scale && COLORMAPS[scale.colormap];
    const quantity = scale && DEPTH_QUANTITIES[scale.quantity];
    el("legend").classList.toggle("hidden", !(stops && quantity));
    if (!(stops && quantity)) return;
    const key = JSON.stringify(scale);
    if (key === legendKey) return;
    legendKey = key;
    const colours = stops.split(" ");
    el("legend-bar").style.background = "linear-gradient(to right, " +
      colours.map((c, i) => `#${c} ${(100 * i / (colours.length - 1)).toFixed(3)}%`).join(", ") + ")";
    el("legend-title").textContent = quantity.title;
    el("legend-lo").textContent = `${scale.range[0]} ${quantity.lo}`;
    el("legend-hi").textContent = `${scale.range[1]} ${quantity.hi}`;
  }

  // The tip's height above the retina: a line in the read-out and a marker on the picture, both in
  // the warning colour while the tip is closer than the server's instrument_warning_steps.
  function instrumentReadout(header, now) {
    if (header.instrument) { stats.instrument = header.instrument; instrumentAt = now; }
    else if (header.fused === false || now - instrumentAt > INSTRUMENT_HOLD_MS) stats.instrument = null;
    const r = stats.instrument, row = el("instrument");
    row.classList.toggle("hidden", !r);
    if (!r) return;
    row.classList.toggle("warning-on", !!r.warning);
    if (!r.present) { el("instrument-text").textContent = "no instrument in view"; return; }
    if (r.height_steps == null) { el("instrument-text").textContent = "tip found, height not measured"; return; }
    const mm = r.height_mm == null ? "" : ` (${r.height_mm.toFixed(2)} mm)`;
    const where = r.height_steps >= 0 ? "above" : "below";
    el("instrument-text").textContent = `tip ${Math.abs(r.height_steps).toFixed(1)} steps${mm} ${where} retina`;
  }

  function drawTipMarker() {
    const r = stats.instrument;
    if (!r || !r.present || !r.tip_xy) return;
    const [x, y] = r.tip_xy, size = Math.max(10, canvas.width / 60);
    ctx.save();
    ctx.lineWidth = Math.max(2, canvas.width / 400);
    ctx.strokeStyle = r.warning ? "#ff3b30" : "#3ddc84";
    ctx.beginPath();
    ctx.arc(x, y, size, 0, 2 * Math.PI);
    for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
      ctx.moveTo(x + dx * size * 0.6, y + dy * size * 0.6);
      ctx.lineTo(x + dx * size * 1.6, y + dy * size * 1.6);
    }
    ctx.stroke();
    ctx.restore();
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
    ws.onopen = () => {
      retryMs = 500; connectedAt = Date.now(); setState("live"); banner(""); ping(); pingTimer = setInterval(ping, 5000);
    };
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

  // Lines for the operator from the server (an engine too slow for the live budget, say): shown in
  // the read-out until the server stops sending them.
  function showWarnings(lines) {
    stats.warnings = lines;
    const w = el("warnings");
    w.textContent = lines.join("\n");
    w.classList.toggle("hidden", !lines.length);
  }

  function onControl(msg) {
    if (msg.type === "pong" && typeof msg.t === "number") {
      // Offset of the server clock against ours from the round trip with the smallest delay.
      const now = Date.now(), rtt = now - msg.t;
      stats.rttMs = rtt;
      if (rtt <= bestRtt) { bestRtt = rtt; stats.clockOffsetMs = msg.server_ms - (msg.t + now) / 2; }
    } else if (msg.type === "hello" || msg.type === "status") {
      showWarnings(msg.warnings || []);
      const src = msg.source || {};
      if (src.state && src.state !== "running") {
        setState("source-down", "source " + src.state);
        const why = `source ${src.state}${src.error ? ": " + src.error : ""}`;
        // Only a picture that was shown can be "the last frame": before the first one the screen is black.
        banner(stats.framesShown ? `${why} – showing the last frame` : `no signal – ${why}`);
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
        drawTipMarker();
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
    legend(header);
    instrumentReadout(header, now);
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
    } else if (!h && stats.state === "live" && Date.now() - connectedAt > 2000) {
      banner("no signal – no frame received yet");
    }
  }

  function setView(view) {
    if (!VIEWS.includes(view)) return;
    stats.view = view;
    if (view !== "depth") legend(null);  // at once: the next frame may take a moment
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
