"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from surgifuse.live.frames import wall_ms

router = APIRouter(tags=["health"])

#: Ready means a frame was published this recently.
READY_WITHIN_MS = 2000.0


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the source runs and frames are being published",
            responses={503: {"description": "source down or no frame published in the last 2 s"}})
def readyz(request: Request):
    pipeline = request.app.state.pipeline
    status = pipeline.status()
    last = status.get("last_published_ms")
    ready = status["state"] == "running" and last is not None and wall_ms() - last < READY_WITHIN_MS
    body = {"ready": ready, **status}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
