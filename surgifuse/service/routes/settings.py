"""Run-time settings (``GET/PUT /v1/settings``), the engines with what they accept, and the pipeline status."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from surgifuse.engines import engine_names, engine_spec
from surgifuse.errors import InputError
from surgifuse.live.settings import LiveSettings, LiveSettingsUpdate

from ..auth import require_token
from ..errors import input_error_response
from ..settings import SettingsResponse

router = APIRouter(prefix="/v1", tags=["settings"])


@router.get("/settings", response_model=LiveSettings, dependencies=[Depends(require_token)],
            summary="The settings the live pipeline uses now")
def get_settings(request: Request) -> LiveSettings:
    return request.app.state.pipeline.config


@router.put("/settings", response_model=SettingsResponse, dependencies=[Depends(require_token)],
            summary="Change engine, engine options, K, JPEG quality... while the stream runs",
            responses={422: {"description": "a value the engine cannot honour; `field` and `detail[].loc` name "
                                            "the field, `allowed` says what it accepts; nothing changed"}})
def put_settings(update: LiveSettingsUpdate, request: Request):
    pipeline, publisher = request.app.state.pipeline, request.app.state.publisher
    try:
        change = pipeline.apply(update.model_dump(exclude_unset=True))
    except InputError as exc:
        return input_error_response(exc)
    publisher.jpeg_quality = change.settings.jpeg_quality
    return SettingsResponse(**change.settings.model_dump(), dropped_options=change.dropped_options,
                            warnings=pipeline.warnings)


@router.get("/engines", summary="The engines: their options (type, bounds, default) and limits (largest K...)")
def engines() -> dict:
    specs = []
    for name in engine_names():
        try:
            specs.append(engine_spec(name).as_dict())
        except InputError as exc:  # an engine whose optional dependency is missing from this build
            specs.append({"name": name, "available": False, "detail": str(exc)})
    return {"engines": engine_names(), "specs": specs}


@router.get("/status", summary="Source state, frames published, connected clients, warnings")
def status(request: Request) -> dict:
    return {**request.app.state.pipeline.status(), "clients": request.app.state.publisher.client_count}
