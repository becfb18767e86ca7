"""Keeps the access token out of the logs: uvicorn's access log writes every request line, and the
display page passes its token in the websocket's query (``/ws/stream?token=...``); a hospital's log
collector must not receive it."""

from __future__ import annotations

import logging
import re

__all__ = ["TokenRedactingFilter", "install_token_redaction"]

_TOKEN = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)


class TokenRedactingFilter(logging.Filter):
    """Replaces the value of every ``token=`` in a record's message and arguments by ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _TOKEN.sub(r"\1***", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_TOKEN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


def install_token_redaction() -> None:
    """Attach the filter to uvicorn's access and error loggers (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, TokenRedactingFilter) for f in logger.filters):
            logger.addFilter(TokenRedactingFilter())
