"""Input errors as HTTP answers: a 422 whose JSON body names the field (or file) and what is allowed,
in FastAPI's own validation-error shape (``detail[].loc``), so a client handles both alike."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from surgifuse.errors import InputError


def input_error_response(exc: InputError, status_code: int = 422) -> JSONResponse:
    loc = ["body", *exc.field.split(".")] if exc.field else ["body"]
    detail = {"loc": loc, "msg": str(exc), "type": "value_error"}
    if exc.allowed:
        detail["ctx"] = {"allowed": exc.allowed}
    return JSONResponse({"detail": [detail], "field": exc.field, "file": exc.file, "allowed": exc.allowed},
                        status_code=status_code)
