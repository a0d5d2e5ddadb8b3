"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error response has ``type``, ``title``, ``status`` and ``detail``. A refused job
spec also has ``field`` and ``reason``: the field the CLI names and its reason, split out
of the very message the CLI prints (``detail``), so a program need not parse it. Errors of
the job store are reported without the store's location or driver text (that goes to the
service's log): a client is told what it can act on.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from slicebox.errors import InputError, SliceboxError
from slicebox.spec import SpecError
from slicebox.store import IllegalTransition, StoreUnavailable, UnknownJob

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:slicebox:problem:"
_PHRASES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large",
            415: "Unsupported Media Type", 422: "Unprocessable Content",
            500: "Internal Server Error", 503: "Service Unavailable"}
# "field.path: reason" or "field (what it is): reason", as admission and describe() write
_FIELD = re.compile(r"^([A-Za-z_][\w-]*(?:\.[\w\[\]'-]+)*(?: \([^)]*\))?): (.+)$", re.S)


class Problem(BaseModel):
    """RFC 9457 problem details; ``field``/``reason`` for a refused job spec."""

    type: str = Field(description="a URI naming the kind of problem")
    title: str
    status: int
    detail: str
    field: str | None = Field(None, description="the spec field at fault, as the CLI names it")
    reason: str | None = Field(None, description="what is wrong with that field")


class ProblemError(Exception):
    """Raised by a route: answered as a problem with ``status``."""

    def __init__(self, status: int, kind: str, detail: str, *,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail
        self.headers, self.extra = headers, extra


def response(status: int, kind: str, detail: str, *, headers: dict[str, str] | None = None,
             **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": TYPE_BASE + kind, "title": _PHRASES.get(status, kind),
                            "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def spec_fields(message: str, source: str) -> tuple[str | None, str]:
    """The field and reason of a ``SpecError`` message ``"<source>: <field>: <reason>"``;
    no field when the problem is the document itself (not YAML, too deep)."""
    text = message.removeprefix(f"{source}: ")
    match = _FIELD.match(text)
    if match is None:
        return None, text
    return match.group(1), match.group(2)


def install(app: FastAPI, spec_source: str) -> None:
    """Answer every error the app can raise as a problem."""

    @app.exception_handler(ProblemError)
    async def _problem(_request: Request, exc: ProblemError) -> JSONResponse:
        return response(exc.status, exc.kind, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(SpecError)
    async def _spec(_request: Request, exc: SpecError) -> JSONResponse:
        field, reason = spec_fields(str(exc), spec_source)
        return response(422, "invalid-spec", str(exc), field=field, reason=reason)

    @app.exception_handler(UnknownJob)
    async def _unknown(_request: Request, exc: UnknownJob) -> JSONResponse:
        return response(404, "not-found", str(exc))

    @app.exception_handler(IllegalTransition)
    async def _conflict(_request: Request, exc: IllegalTransition) -> JSONResponse:
        return response(409, "conflict", str(exc))

    @app.exception_handler(InputError)
    async def _input(_request: Request, exc: InputError) -> JSONResponse:
        field, reason = spec_fields(str(exc), spec_source)
        return response(400, "bad-request", str(exc), field=field, reason=reason)

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(_request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("store unavailable: %s", exc)
        return response(503, "store-unavailable", "the job store cannot be reached now; "
                        "try again", headers={"Retry-After": "5"})

    @app.exception_handler(SliceboxError)
    async def _failed(_request: Request, exc: SliceboxError) -> JSONResponse:
        log.error("request failed: %s", exc)
        return response(500, "failed", "the request could not be carried out (the "
                        "service's log has the reason)")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http")
        return response(exc.status_code, kind, str(exc.detail),
                        headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        reason = str(first.get("msg", "invalid request"))
        return response(422, "invalid-request", f"{where}: {reason}" if where else reason,
                        field=where or None, reason=reason)

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return response(500, "internal", "an unexpected error; the service's log has it")
