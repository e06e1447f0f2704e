"""The search web page at ``/``: static HTML, JS and CSS shipped in the package (no build step).

The page itself needs no API key (it holds no data); every call it makes to the API sends the key
the user typed in, as any other client does. It loads nothing from other hosts, so it works
offline, and its Content-Security-Policy says so to the browser: scripts, styles and fetches from
this server only, pictures from this server or ``data:`` URLs (the thumbnails come as base64).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["STATIC_DIR", "install_page"]

STATIC_DIR = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                           "script-src 'self'; object-src 'none'; base-uri 'none'; "
                           "frame-ancestors 'none'")
_PAGE_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                 # Revalidate on each load, so an upgraded server never runs last version's script.
                 "Cache-Control": "no-cache"}


def install_page(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/static/``, outside the API key check."""
    app.add_api_route("/", _index, methods=["GET"], include_in_schema=False)
    app.mount("/static", _WithHeaders(StaticFiles(directory=STATIC_DIR)), name="static")


def _index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_PAGE_HEADERS)


class _WithHeaders:
    """Adds the page's headers to every response of the wrapped ASGI app (StaticFiles has no
    option for extra headers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(_PAGE_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
