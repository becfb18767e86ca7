"""``POST /v1/fuse``: fuse an uploaded focal stack (1..64 images, or one multi-page TIFF)."""

from __future__ import annotations

import json
from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from surgifuse.engines import engine_names
from surgifuse.imageio import encode_image

from ..auth import require_token
from ..upload import UploadBusy, UploadError, UploadLimits, fuse_upload, response_json

router = APIRouter(prefix="/v1", tags=["upload"])

#: Seconds a client is told to wait when every upload worker is busy.
RETRY_AFTER_S = 2


@router.post(
    "/fuse",
    dependencies=[Depends(require_token)],
    summary="Fuse an uploaded focal stack",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}, "image/tiff": {}, "application/json": {}},
              "description": "The fused image (depth=false), or JSON with base64 image and float32 TIFF depth "
                             "(depth=true)"},
        413: {"description": "too many files, too many pixels in one image, or too many bytes; names the file"},
        422: {"description": "unreadable or mismatched image, unknown engine or output; names the file"},
        503: {"description": "every upload worker is busy; see Retry-After"},
    },
)
async def fuse(
    request: Request,
    files: list[UploadFile] = File(..., description="1..64 PNG/JPEG/TIFF images (8/16-bit) or one multi-page TIFF"),
    engine: str | None = Form(None, description="Engine name; default: the live engine"),
    output: Literal["png", "tiff"] = Form("png", description="Format of the fused image"),
    depth: bool = Form(False, description="Also return the depth map: the answer becomes JSON"),
    align: bool = Form(True, description="Register the frames onto the middle one first (a frame moves only "
                                         "where its motion is significant); false fuses them as given"),
):
    app = request.app
    settings = app.state.settings
    live = app.state.pipeline.config
    name = engine or live.engine
    if name not in engine_names():
        return _error(UploadError(422, f"unknown engine {name!r}; choose one of {', '.join(engine_names())}"))
    # The live engine fuses with the live options; another engine with its defaults.
    options = live.engine_options if name == live.engine else {}
    items = [(f.filename or f"file {i}", await f.read()) for i, f in enumerate(files)]
    limits = UploadLimits(settings.upload_max_files, settings.upload_max_pixels, settings.upload_max_bytes)

    def work():
        fused = fuse_upload(items, engine=app.state.engine_factory(name, **options), limits=limits,
                            align=align, depth=depth)
        if depth:
            return fused, response_json(fused, output)
        return fused, encode_image(fused.image, output)

    try:
        fused, payload = await app.state.uploads.run(work)
    except UploadBusy:
        app.state.metrics.uploads.labels("503").inc()
        return JSONResponse({"detail": "all upload workers are busy; retry later"}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})
    except UploadError as exc:
        return _error(exc, app)
    app.state.metrics.uploads.labels("200").inc()
    headers = {"X-Surgifuse-Engine": fused.engine, "X-Surgifuse-Frames": str(len(fused.names)),
               "X-Surgifuse-Moved": str(fused.moved),
               "X-Surgifuse-Timings": json.dumps({k: round(v, 3) for k, v in fused.timings.items()})}
    if depth:
        return JSONResponse(payload, headers=headers)
    return Response(payload, media_type=f"image/{output}", headers=headers)


def _error(exc: UploadError, app=None) -> JSONResponse:
    if app is not None:
        app.state.metrics.uploads.labels(str(exc.status)).inc()
    return JSONResponse(exc.body(), status_code=exc.status)
