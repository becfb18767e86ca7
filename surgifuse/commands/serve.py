"""``surgifuse serve``: the live service (display page, websocket stream, upload, metrics).

Options override ``SURGIFUSE_*`` environment variables, which override the defaults (one settings
class: ``surgifuse.service.settings.ServiceSettings``). The token is read from ``SURGIFUSE_TOKEN``
only, never from the command line (it would show in the process list).
"""

from __future__ import annotations

import argparse

from surgifuse.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="demo (default) | camera:INDEX | file:PATH | URL | gst:PIPELINE")
    parser.add_argument("--engine", help="fusion engine (default classical)")
    parser.add_argument("--k", type=int, help="frames in the rolling focal stack (default 5)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1; others need SURGIFUSE_TOKEN)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--insecure", action="store_true", default=None,
                        help="allow a non-loopback bind without a token (anyone on the network can watch)")
    parser.add_argument("--jpeg-quality", type=int, help="stream JPEG quality 1..100 (default 80)")
    parser.add_argument("--threshold", type=int, help="focus-measure threshold T (default: the engine's)")
    parser.add_argument("--budget-ms", type=float, help="fusion budget per frame (default one frame interval)")
    parser.add_argument("--no-align", dest="align", action="store_false", default=None,
                        help="do not align the stack to the newest frame")
    parser.add_argument("--no-motion-guard", dest="motion_guard", action="store_false", default=None,
                        help="turn the motion guard off (ghosts of moving instruments may appear)")
    parser.add_argument("--width", type=int, help="demo source width (default 640)")
    parser.add_argument("--height", type=int, help="demo source height (default 480)")
    parser.add_argument("--fps", type=float, help="demo source frame rate (default 30)")
    parser.add_argument("--demo-cache-frames", type=int,
                        help="demo: pre-render this many frames and loop them (0: render live; default: one seamless 120-frame loop when it fits in 256 MB)")
    parser.add_argument("--no-loop", dest="loop", action="store_false", default=None,
                        help="file source: re-open at the end instead of looping in place")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


_SETTINGS_OPTIONS = ("source", "engine", "k", "host", "port", "insecure", "jpeg_quality", "threshold", "budget_ms",
                     "align", "motion_guard", "width", "height", "fps", "demo_cache_frames", "loop")


def run(args: argparse.Namespace) -> int:
    import logging

    import uvicorn
    from pydantic import ValidationError

    from surgifuse.service.app import UVICORN_OPTIONS, create_app
    from surgifuse.service.settings import ServiceSettings

    given = {name: getattr(args, name) for name in _SETTINGS_OPTIONS if getattr(args, name, None) is not None}
    try:
        settings = ServiceSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InputError(f"invalid setting: {problems}") from None
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    print(f"SurgiFuse live: http://{settings.host}:{settings.port}/  (source: {app.state.pipeline.source.description}, "
          f"engine: {settings.engine}, K={settings.k})", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, **UVICORN_OPTIONS)
    return 0
