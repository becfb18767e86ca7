"""Token check for the stream, the upload and the settings.

The token is compared in constant time. HTTP clients send ``Authorization: Bearer <token>``; a
browser's websocket cannot set headers, so the stream also accepts ``?token=<token>`` (the display
page forwards the ``token`` of its own address). No token configured means no check (loopback bind).
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, WebSocket, status


def _presented(headers, query_params) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return query_params.get("token") or headers.get("x-surgifuse-token")


def token_ok(expected: str | None, presented: str | None) -> bool:
    if not expected:
        return True
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


def require_token(request: Request) -> None:
    """FastAPI dependency: 401 unless the configured token was presented."""
    expected = request.app.state.settings.token_value()
    if not token_ok(expected, _presented(request.headers, request.query_params)):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing or wrong token",
                            headers={"WWW-Authenticate": "Bearer"})


def websocket_token_ok(websocket: WebSocket) -> bool:
    expected = websocket.app.state.settings.token_value()
    return token_ok(expected, _presented(websocket.headers, websocket.query_params))
