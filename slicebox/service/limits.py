"""Request size limit: a body over the limit is refused with 413 before a route sees it.

A declared ``Content-Length`` over the limit is refused without reading the body; a body
sent in chunks is counted as it arrives and refused the moment it passes the limit, so
the service never holds more than the limit of any one request.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slicebox.service.problems import MEDIA_TYPE, TYPE_BASE

DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: a job spec is at most 256 KiB


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                await self._refuse(send, 400, "bad-request",
                                   "the Content-Length header is not a length")
                return
            if length > self.max_bytes:
                await self._refuse(send, 413, "too-large", self._too_large(length))
                return
        # Read the whole (bounded) body here, then hand it on as one message.
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._refuse(send, 413, "too-large", self._too_large(None))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    def _too_large(self, length: int | None) -> str:
        size = f"{length} bytes" if length is not None else "more than that"
        return f"the request body is {size}; at most {self.max_bytes} bytes are accepted"

    async def _refuse(self, send: Send, status: int, kind: str, detail: str) -> None:
        title = "Content Too Large" if status == 413 else "Bad Request"
        payload = json.dumps({"type": TYPE_BASE + kind, "title": title, "status": status,
                              "detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", MEDIA_TYPE.encode()),
                                (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
