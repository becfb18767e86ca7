"""The display page (``/``): plain HTML and JavaScript served by the app, no build step."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(tags=["display"])


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The operating-room display: the stream fills the window, fused/raw/depth toggles, read-out."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache"})
