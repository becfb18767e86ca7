"""The FastAPI application factory: wires source, pipeline, publisher, uploads and routes.

``create_app(settings)`` builds everything (a bad engine or source fails here, before listening);
the lifespan starts the live threads and stops them. Tests inject ``source`` and ``engine_factory``.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

import surgifuse
from surgifuse.live.metrics import LiveMetrics
from surgifuse.live.pipeline import LivePipeline, default_engine_factory
from surgifuse.live.publisher import FramePublisher
from surgifuse.live.sources import FrameSource, open_source

from .redact import install_token_redaction
from .routes import health, page, stream
from .routes import settings as settings_routes
from .routes import upload as upload_routes
from .routes.page import STATIC_DIR
from .settings import ServiceSettings
from .upload import UploadWorkers

DESCRIPTION = """Real-time all-in-focus video for surgical microscopes.

* `/` the display page; `/ws/stream` the live websocket (framing in docs/api.md)
* `POST /v1/fuse` fuse an uploaded focal stack
* `GET/PUT /v1/settings` run-time settings; `/healthz`, `/readyz`, `/metrics`

Bound to a non-loopback address, the stream, the upload and the settings need the token
(`Authorization: Bearer <token>`, or `?token=` on the websocket).
"""


#: Options for the uvicorn server that runs the app. No per-message deflate: JPEG does not
#: compress, and deflate would be run per client on the event loop (measured: it held 8 clients of a
#: 1080p stream to 8 fps on the 2-core machine), breaking "encode once, share with all".
#: Client messages are small JSON: 1 MiB is plenty.
UVICORN_OPTIONS = {"ws_per_message_deflate": False, "ws_max_size": 1 << 20}


def create_app(settings: ServiceSettings | None = None, *, source: FrameSource | None = None,
               engine_factory=None) -> FastAPI:
    """Build the service.

    Parameters
    ----------
    settings : ServiceSettings, optional
        Default: read from ``SURGIFUSE_*`` environment variables.
    source : FrameSource, optional
        Overrides ``settings.source`` (tests, load tests).
    engine_factory : callable, optional
        ``engine_factory(name, **engine_options) -> Engine``; default ``surgifuse.engines.create_engine``.

    Raises
    ------
    ValueError
        Insecure bind without token, unknown engine or source.
    """
    settings = settings or ServiceSettings()
    settings.check_security()
    install_token_redaction()
    # Uploaded images stay in memory (bounded by upload_max_bytes): Starlette would spool parts over
    # 1 MB to temporary files, and nothing of a patient's images is written to disk unasked.
    from starlette.formparsers import MultiPartParser

    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, settings.upload_max_bytes)
    engine_factory = engine_factory or default_engine_factory
    if source is None:
        source = open_source(settings.source, width=settings.width, height=settings.height, k=settings.k,
                             fps=settings.fps, loop=settings.loop, cache_frames=settings.demo_cache_frames,
                             eye_motion=settings.demo_eye_motion)
    metrics = LiveMetrics()
    publisher = FramePublisher(jpeg_quality=settings.jpeg_quality, metrics=metrics)
    pipeline = LivePipeline(source, publish=publisher.submit, config=settings.live(),
                            engine_factory=engine_factory, metrics=metrics)
    publisher.status = pipeline.status
    publisher.settings = lambda: pipeline.config
    uploads = UploadWorkers(settings.upload_workers, settings.upload_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        publisher.start(asyncio.get_running_loop())
        pipeline.start()
        try:
            yield
        finally:
            pipeline.stop()
            publisher.stop()
            uploads.shutdown()

    # /docs and /redoc with their scripts and styles served from here, not a CDN: operating-room
    # networks are often offline, and FastAPI's own pages would then be blank.
    app = FastAPIOffline(title="SurgiFuse", version=surgifuse.__version__, description=DESCRIPTION,
                         lifespan=lifespan, favicon_url="/favicon.ico")
    app.state.settings = settings
    app.state.pipeline = pipeline
    app.state.publisher = publisher
    app.state.metrics = metrics
    app.state.uploads = uploads
    app.state.engine_factory = engine_factory

    @app.middleware("http")
    async def limit_upload_body(request: Request, call_next):
        # Refuse an oversized upload from its Content-Length, before a byte of it is parsed or spooled.
        if request.url.path == "/v1/fuse":
            length = request.headers.get("content-length")
            if length and length.isdigit() and int(length) > settings.upload_max_bytes:
                metrics.uploads.labels("413").inc()
                return JSONResponse({"detail": f"upload too large: {length} bytes, at most "
                                               f"{settings.upload_max_bytes} allowed", "file": None}, status_code=413)
        return await call_next(request)

    for module in (page, stream, health, settings_routes, upload_routes):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
