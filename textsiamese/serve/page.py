"""The search page at ``/``: plain HTML and a little JavaScript shipped in the package (no CDN; offline)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent / "static"
router = APIRouter(include_in_schema=False)


@router.get("/")
async def index_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


@router.get("/static/app.js")
async def script() -> FileResponse:
    return FileResponse(STATIC / "app.js", media_type="text/javascript; charset=utf-8")


@router.get("/static/style.css")
async def style() -> FileResponse:
    return FileResponse(STATIC / "style.css", media_type="text/css; charset=utf-8")
