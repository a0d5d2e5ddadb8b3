"""The dashboard: one static page (HTML, vanilla JavaScript, CSS) that the service serves,
so there is nothing to build or install beside the package.

The page itself needs no token; everything it shows comes from the ``/v1`` API, which
does. It reads the token once (a form, or ``#token=...`` in the URL: a fragment never
reaches the server or its logs), keeps it in ``sessionStorage`` and sends it as
``Authorization: Bearer``. Served at ``/`` and ``/dashboard/``; its assets under
``/dashboard/``. A strict Content-Security-Policy allows only the page's own scripts and
styles and requests to this origin, so a job name (anyone's input) can never run as code.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/dashboard"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate: a new version shows at the next load
}


class _Assets(StaticFiles):
    """Starlette's static files, with the dashboard's security headers on every answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *(
                    (k.lower().encode(), v.encode()) for k, v in HEADERS.items())]
            await send(message)

        await super().__call__(scope, receive, with_headers)


def mount(app: FastAPI) -> None:
    """Serve the dashboard from ``app``: the page at ``/`` and ``/dashboard/``."""

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers=HEADERS)

    app.mount(PREFIX, _Assets(directory=STATIC, html=True), name="dashboard")
