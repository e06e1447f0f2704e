"""A cap on request body size, so one request cannot make the server buffer unbounded data."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response

__all__ = ["BodyLimitMiddleware"]

log = logging.getLogger(__name__)


class BodyLimitMiddleware:
    """Answers 413 to a body over ``max_bytes``: at once when Content-Length says so, otherwise
    as soon as the bytes received pass the cap (chunked uploads declare no length).

    The body is read in full before the app runs. Every route here parses a JSON body whole
    anyway, and reading it first is what lets an oversized body be refused with a clean 413
    instead of failing halfway through parsing.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await error_response(400, "BadRequest", "Content-Length is not a number")(
                    scope, receive, send)
                return
            if length > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its whole body: no one to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as usual

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        log.info("refused %s %s: body over %d bytes", scope.get("method"), scope.get("path"),
                 self.max_bytes)
        detail = (f"request body is larger than {self.max_bytes} bytes (max_request_bytes); "
                  "send fewer items per request")
        await error_response(413, "RequestTooLarge", detail)(scope, receive, send)
