"""What an engine declares it accepts: its options (type, bounds, default) and its limits (largest
K, pixel types, channels, smallest frame, whether frame order matters).

The declaration is checked before any work: ``surgifuse fuse``, ``surgifuse serve``,
``PUT /v1/settings`` and the live pipeline all go through ``EngineSpec.resolve`` and
``EngineSpec.check_stack``, so a value an engine cannot honour is an ``InputError`` that names the
field and what is allowed, never a failure deep in the native core frame after frame.
Whether an engine keeps up with the live frame rate is measured, not declared
(``surgifuse.live.capability``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from surgifuse.errors import InputError, InputTypeError

__all__ = ["EngineOption", "EngineLimits", "EngineSpec"]

_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class EngineOption:
    """One option of an engine.

    ``minimum``/``maximum`` bound numbers (inclusive); ``choices`` lists the accepted strings;
    ``odd`` asks for an odd integer (a window side).
    """

    name: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    odd: bool = False

    def allowed(self) -> str:
        """What this option accepts, in words: "an integer in [0, 7]", "one of fmb3, fmb1"."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        text = _TYPE_NAMES[self.type]
        if self.odd:
            text = "an odd integer"
        if self.minimum is not None and self.maximum is not None:
            text += f" in [{_number(self.minimum)}, {_number(self.maximum)}]"
        elif self.minimum is not None:
            text += f" >= {_number(self.minimum)}"
        elif self.maximum is not None:
            text += f" <= {_number(self.maximum)}"
        return text

    def validate(self, value: Any, *, field: str | None = None) -> Any:
        """``value`` as this option's type, or ``InputError(field=...)`` saying what is allowed."""
        where = field or self.name
        if self.type is int:
            ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        elif self.type is float:
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
        elif self.type is bool:
            ok = isinstance(value, (bool, np.bool_))
        else:
            ok = isinstance(value, str)
        if not ok:
            raise InputTypeError(f"{where} must be {self.allowed()}, got {value!r} ({type(value).__name__})",
                                 field=where, allowed=self.allowed())
        value = self.type(value)
        if self.type is float and not np.isfinite(value):
            raise InputError(f"{where} must be {self.allowed()}, got {value!r}", field=where, allowed=self.allowed())
        bad = (self.choices is not None and value not in self.choices) \
            or (self.minimum is not None and value < self.minimum) \
            or (self.maximum is not None and value > self.maximum) \
            or (self.odd and value % 2 == 0)
        if bad:
            raise InputError(f"{where} must be {self.allowed()}, got {value!r}", field=where, allowed=self.allowed())
        return value

    def parse(self, text: str, *, field: str | None = None) -> Any:
        """A command-line string (``"9"``, ``"true"``, ``"fmb1"``) as a valid value of this option."""
        where = field or self.name
        try:
            if self.type is bool:
                lowered = text.strip().lower()
                if lowered not in _TRUE | _FALSE:
                    raise ValueError(text)
                value: Any = lowered in _TRUE
            elif self.type is int:
                value = int(text)
            elif self.type is float:
                value = float(text)
            else:
                value = text
        except ValueError:
            raise InputError(f"{where} must be {self.allowed()}, got {text!r}", field=where,
                             allowed=self.allowed()) from None
        return self.validate(value, field=where)

    def as_dict(self) -> dict:
        out = {"name": self.name, "type": self.type.__name__, "default": self.default, "help": self.help,
               "allowed": self.allowed()}
        for key in ("minimum", "maximum", "choices"):
            if getattr(self, key) is not None:
                out[key] = list(self.choices) if key == "choices" else getattr(self, key)
        return out


@dataclass(frozen=True)
class EngineLimits:
    """What stacks an engine can fuse.

    ``max_k``: the most frames in one stack (None: any number). ``dtypes``: pixel types.
    ``channels``: 1 for HxW grey, 3 for HxWx3 RGB. ``min_side``: the smallest frame height and width
    with the default options (some options need larger frames, e.g. the classical engine's ``step``
    and ``window``: the engine refuses those with an ``InputError`` naming the option).
    ``order_invariant``: the fused image does not depend on the order of the frames.
    ``streaming``: offline (``surgifuse fuse``, ``POST /v1/fuse``), stacks deeper than ``max_k``
    are fused one frame at a time in bounded memory (``surgifuse.streaming``); the live rolling
    stack keeps ``max_k``.
    """

    max_k: int | None
    dtypes: tuple[str, ...] = ("uint8", "uint16")
    channels: tuple[int, ...] = (1, 3)
    min_side: int = 1
    order_invariant: bool = True
    streaming: bool = False

    def as_dict(self) -> dict:
        return {"max_k": self.max_k, "dtypes": list(self.dtypes), "channels": list(self.channels),
                "min_side": self.min_side, "order_invariant": self.order_invariant, "streaming": self.streaming}


@dataclass(frozen=True)
class EngineSpec:
    """An engine's declaration: its name, a one-line summary, its options and its limits."""

    name: str
    summary: str
    options: tuple[EngineOption, ...]
    limits: EngineLimits
    #: Options that say where and how fast the engine runs, not what it computes (threads,
    #: device): the same result whatever their value.
    runtime_options: frozenset[str] = field(default_factory=frozenset)

    def option(self, name: str, *, field: str | None = None) -> EngineOption:
        for opt in self.options:
            if opt.name == name:
                return opt
        where = field or name
        known = ", ".join(o.name for o in self.options) or "none"
        raise InputError(f"engine {self.name!r} has no option {name!r}; its options: {known}",
                         field=where, allowed=known)

    def defaults(self) -> dict:
        return {opt.name: opt.default for opt in self.options}

    def resolve(self, given: Mapping[str, Any] | None = None, *, field_prefix: str = "") -> dict:
        """Every option of the engine: the ``given`` ones validated, the rest at their defaults.

        ``field_prefix`` is put before the option name in the ``field`` of an error (the settings
        say ``engine_options.threshold``). An unknown name or a bad value is an ``InputError``.
        """
        out = self.defaults()
        for name, value in (given or {}).items():
            opt = self.option(name, field=field_prefix + name)
            out[name] = opt.validate(value, field=field_prefix + name)
        return out

    def keep_accepted(self, given: Mapping[str, Any]) -> tuple[dict, dict]:
        """Split options set for another engine into ``(kept, dropped)``: kept are those this engine
        declares and whose value it accepts; ``dropped`` maps each other name to the reason."""
        kept, dropped = {}, {}
        for name, value in given.items():
            try:
                kept[name] = self.option(name).validate(value)
            except InputError as exc:
                dropped[name] = str(exc)
        return kept, dropped

    def parse_assignments(self, texts: list[str] | tuple[str, ...], *, flag: str = "--engine-option") -> dict:
        """``["threshold=9", "mode=fmb1"]`` (command-line ``NAME=VALUE`` items) as validated options."""
        out = {}
        for text in texts:
            name, sep, value = text.partition("=")
            name = name.strip()
            if not sep or not name:
                raise InputError(f"{flag} takes NAME=VALUE, got {text!r}", field=flag)
            out[name] = self.option(name, field=name).parse(value, field=name)
        return out

    def check_k(self, k: int, *, field: str = "k", streaming: bool = False) -> int:
        """``k`` if this engine fuses stacks of that many frames, else ``InputError(field=field)``.

        ``streaming``: the stack is fused offline, where an engine with ``limits.streaming`` takes any K.
        """
        bounded = self.limits.max_k is not None and not (streaming and self.limits.streaming)
        allowed = f"1..{self.limits.max_k}" if bounded else ">= 1"
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise InputTypeError(f"{field} must be an integer, got {type(k).__name__}", field=field, allowed=allowed)
        if k < 1 or (bounded and k > self.limits.max_k):
            raise InputError(f"engine {self.name!r} fuses stacks of {allowed} frames, got {field}={k}",
                             field=field, allowed=allowed)
        return int(k)

    def check_frame(self, shape: tuple[int, ...], dtype: Any, *, file: str | None = None) -> None:
        """``InputError`` (naming ``file`` when given) if this engine cannot fuse frames of
        ``shape`` and ``dtype``."""
        where = f"{file}: " if file else ""
        dtype = np.dtype(dtype)
        if dtype.name not in self.limits.dtypes:
            raise InputTypeError(f"{where}engine {self.name!r} takes {' or '.join(self.limits.dtypes)} frames, "
                                 f"got {dtype.name}", file=file, allowed=", ".join(self.limits.dtypes))
        channels = 1 if len(shape) == 2 else (shape[2] if len(shape) == 3 else None)
        if channels not in self.limits.channels:
            kinds = " or ".join("HxW grey" if c == 1 else f"HxWx{c}" for c in self.limits.channels)
            raise InputError(f"{where}engine {self.name!r} takes {kinds} frames, got shape {tuple(shape)}",
                             file=file, allowed=kinds)
        if min(shape[:2]) < self.limits.min_side:
            raise InputError(f"{where}engine {self.name!r} needs frames of at least {self.limits.min_side} px "
                             f"per side, got {shape[1]}x{shape[0]}", file=file,
                             allowed=f">= {self.limits.min_side} px per side")

    def check_stack(self, k: int, shape: tuple[int, ...], dtype: Any, *, file: str | None = None,
                    streaming: bool = False) -> None:
        """Both checks: the stack size (``streaming``: see ``check_k``) and the frames."""
        self.check_k(k, streaming=streaming)
        self.check_frame(shape, dtype, file=file)

    def as_dict(self) -> dict:
        """The declaration as JSON (``GET /v1/engines``)."""
        return {"name": self.name, "summary": self.summary, "options": [o.as_dict() for o in self.options],
                "limits": self.limits.as_dict(), "runtime_options": sorted(self.runtime_options)}


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))
