"""The display page (``/``): plain HTML and JavaScript served by the app, no build step."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
#: Browsers ask for ``/favicon.ico`` whatever the page says; the file holds 16, 32 and 48 px icons.
FAVICON = STATIC_DIR / "favicon.ico"

router = APIRouter(tags=["display"])


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The operating-room display: the stream fills the window, fused/raw/depth toggles, read-out."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache"})


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    """The tab icon of the display page and the API pages."""
    return FileResponse(FAVICON, media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})
