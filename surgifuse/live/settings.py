"""The live settings: one model for what the live pipeline does, shared by ``surgifuse serve``
(its options and ``SURGIFUSE_*`` variables), ``GET/PUT /v1/settings`` and the pipeline itself.

A change is checked against the chosen engine's declaration (``surgifuse.engines.spec``) before
anything changes: an option or a K the engine cannot honour is an ``InputError`` naming the field
and the allowed range. Switching engine keeps the engine options the new engine accepts and
reports the ones it drops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, create_model

from surgifuse.errors import InputError

__all__ = ["LiveSettings", "LiveSettingsUpdate", "SettingsChange", "apply_update", "check_settings"]


class LiveSettings(BaseModel):
    """What the live pipeline does; every field can change while it runs (``PUT /v1/settings``)."""

    model_config = ConfigDict(extra="forbid")

    engine: str = Field("classical", description="fusion engine (GET /v1/engines lists them with their options)")
    engine_options: dict[str, Any] = Field(
        default_factory=dict,
        description="options of the engine, e.g. {\"threshold\": 9}; the others keep the engine's defaults")
    k: int = Field(5, ge=1, le=64, description="frames in the rolling focal stack (at most the engine's largest K)")
    align: bool = Field(True, description="align the stack to the newest frame")
    motion_guard: bool = Field(True, description="where an older frame disagrees with the newest beyond what "
                                                 "defocus explains (a moving instrument), the newest wins")
    motion_threshold: float = Field(16.0, ge=0, le=255, description="motion guard threshold, grey levels")
    budget_ms: float | None = Field(None, gt=0, le=10000,
                                    description="fusion budget per frame in ms (null: one frame interval)")
    jpeg_quality: int = Field(80, ge=1, le=100, description="stream JPEG quality")
    instrument_warning_steps: float = Field(
        1.0, ge=0, le=64,
        description="the display's instrument read-out turns to its warning colour when the tip is less than this "
                    "many focus steps above the retina (0: never)")
    focus_step_mm: float | None = Field(
        None, gt=0, le=10,
        description="distance between neighbouring focus positions of the sweep in mm (null: unknown): the "
                    "instrument read-out then gives the tip's height in mm too")


#: Fields where an explicit null in an update means "back to the default" rather than "missing".
NULLABLE = frozenset({"budget_ms", "engine_options", "focus_step_mm"})


def _update_model() -> type[BaseModel]:
    # The same fields, every one optional: a PUT carries any subset. Bounds and descriptions are
    # taken from LiveSettings, so they are written once.
    fields = {name: (info.annotation | None, Field(None, description=info.description, **_constraints(info)))
              for name, info in LiveSettings.model_fields.items()}
    return create_model("LiveSettingsUpdate", __config__=ConfigDict(extra="forbid"), **fields)


def _constraints(info) -> dict:
    out = {}
    for meta in info.metadata:
        for key in ("ge", "gt", "le", "lt"):
            value = getattr(meta, key, None)
            if value is not None:
                out[key] = value
    return out


#: ``PUT /v1/settings`` body: any subset of ``LiveSettings``; the other fields keep their value.
#: ``engine_options`` merge into the current ones (an option set to null goes back to its default).
LiveSettingsUpdate = _update_model()
LiveSettingsUpdate.__doc__ = ("Any subset of the live settings; the others keep their value. engine_options merge "
                              "into the current ones (an option set to null goes back to the engine's default).")


@dataclass
class SettingsChange:
    """The outcome of an accepted update: the new settings and what the engine switch dropped."""

    settings: LiveSettings
    dropped_options: dict[str, str] = field(default_factory=dict)


def check_settings(settings: LiveSettings) -> LiveSettings:
    """``settings`` if its engine accepts its options and K, else ``InputError`` naming the field
    (``engine``, ``engine_options.NAME`` or ``k``)."""
    from surgifuse.engines import engine_spec

    spec = engine_spec(settings.engine)
    spec.resolve(settings.engine_options, field_prefix="engine_options.")
    spec.check_k(settings.k)
    return settings


def apply_update(current: LiveSettings, update: Mapping[str, Any]) -> SettingsChange:
    """The settings after ``update`` (a dict of ``LiveSettingsUpdate`` fields that were set).

    Options given in the update are checked strictly; when only the engine changes, the current
    options the new engine accepts are kept and the others dropped (named, with the reason).
    Raises ``InputError`` naming the field; nothing is changed then.
    """
    from surgifuse.engines import engine_spec

    update = dict(update)
    for name, value in update.items():
        if value is None and name not in NULLABLE:
            raise InputError(f"{name} cannot be null", field=name)
    engine = update.get("engine") or current.engine
    spec = engine_spec(engine)
    dropped: dict[str, str] = {}
    if engine != current.engine:
        options, dropped = spec.keep_accepted(current.engine_options)
    else:
        options = dict(current.engine_options)
    if "engine_options" in update:
        given = update["engine_options"]
        if given is None:
            options = {}
        else:
            for name, value in given.items():
                if value is None:
                    options.pop(name, None)
                    dropped.pop(name, None)
                else:
                    options[name] = spec.option(name, field=f"engine_options.{name}").validate(
                        value, field=f"engine_options.{name}")
                    dropped.pop(name, None)
    merged = {**current.model_dump(), **{k: v for k, v in update.items() if k != "engine_options"},
              "engine": engine, "engine_options": options}
    try:
        new = LiveSettings.model_validate(merged)
    except Exception as exc:  # pydantic's ValidationError: the update model checked the bounds already
        raise InputError(str(exc)) from exc
    return SettingsChange(settings=check_settings(new), dropped_options=dropped)
