"""Run-time settings (``GET/PUT /v1/settings``), the engine list and the pipeline status."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from surgifuse.engines import engine_names

from ..auth import require_token
from ..settings import RuntimeSettings, RuntimeSettingsUpdate

router = APIRouter(prefix="/v1", tags=["settings"])

# Fields where an explicit null means "back to the default" rather than "missing".
_NULLABLE = {"threshold", "budget_ms"}


def current_settings(request: Request) -> RuntimeSettings:
    config = request.app.state.pipeline.config
    return RuntimeSettings(jpeg_quality=request.app.state.publisher.jpeg_quality,
                           **{k: getattr(config, k) for k in RuntimeSettings.model_fields if k != "jpeg_quality"})


def _field_error(field: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": ["body", field], "msg": message, "type": "value_error"}]},
                        status_code=422)


@router.get("/settings", response_model=RuntimeSettings, dependencies=[Depends(require_token)],
            summary="The settings the live pipeline uses now")
def get_settings(request: Request) -> RuntimeSettings:
    return current_settings(request)


@router.put("/settings", response_model=RuntimeSettings, dependencies=[Depends(require_token)],
            summary="Change engine, K, threshold, JPEG quality... while the stream runs",
            responses={422: {"description": "invalid value; detail[].loc names the field"}})
def put_settings(update: RuntimeSettingsUpdate, request: Request):
    changes = update.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None and field not in _NULLABLE:
            return _field_error(field, f"{field} cannot be null")
    quality = changes.pop("jpeg_quality", None)
    if changes:
        try:
            request.app.state.pipeline.reconfigure(**changes)
        except (ValueError, TypeError) as exc:
            named = [f for f in changes if f in str(exc)]
            field = named[0] if named else ("engine" if "engine" in changes else next(iter(changes)))
            return _field_error(field, str(exc))
    if quality is not None:
        request.app.state.publisher.jpeg_quality = quality
    return current_settings(request)


@router.get("/engines", summary="Engine names accepted by the settings and the upload")
def engines() -> dict:
    return {"engines": engine_names()}


@router.get("/status", summary="Source state, frames published, connected clients")
def status(request: Request) -> dict:
    return {**request.app.state.pipeline.status(), "clients": request.app.state.publisher.client_count}
