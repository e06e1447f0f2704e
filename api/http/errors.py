"""How failures become HTTP responses; every error body is ``{"error": KIND, "detail": ...}``.

Project errors (``kinsight.engine.errors``) map to status codes by their class, and their message,
written to say how to fix the problem, is the detail. Anything else is a bug or an outage: the
client gets a fixed 500 message and the traceback goes to the server log only, because messages of
arbitrary exceptions can hold paths, SQL or data that must not leave the server.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kinsight.engine import (
    AlreadyExistsError,
    EncoderError,
    InvalidInputError,
    KinsightError,
    NotFoundError,
    ReadOnlyStoreError,
    StoreLockedError,
    WorkerLostError,
)

__all__ = [
    "INTERNAL_ERROR_DETAIL",
    "InternalErrorMiddleware",
    "error_response",
    "install_error_handlers",
    "status_for",
]

log = logging.getLogger(__name__)

INTERNAL_ERROR_DETAIL = "internal error; see the server log"

# InvalidInputError covers FilterError and DimensionMismatchError; EncoderError covers
# EncoderMismatchError. A KinsightError not listed (a closed store, say) is the server's problem.
_STATUS_BY_ERROR: tuple[tuple[type[KinsightError], int], ...] = (
    (InvalidInputError, 422),
    (NotFoundError, 404),
    (AlreadyExistsError, 409),
    (StoreLockedError, 409),
    (ReadOnlyStoreError, 409),
    (WorkerLostError, 503),  # before EncoderError, which it is: the client may send it again
    (EncoderError, 422),
)


def status_for(error: BaseException) -> int | None:
    """The HTTP status for a project error, or None when it is an internal error."""
    for kind, status in _STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return None


def error_response(status: int, error: str, detail: Any,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": _finite(jsonable_encoder(detail))},
                        status_code=status, headers=headers)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as text. Python's JSON parser reads ``NaN`` and
    ``Infinity``, so a validation error can echo them back, but JSON cannot write them and the
    response would fail to render (a 500 in place of the 422)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _internal_error() -> JSONResponse:
    return error_response(500, "InternalError", INTERNAL_ERROR_DETAIL)


async def _project_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_for(exc)
    if status is None:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return _internal_error()
    log.info("%s %s -> %d %s: %s", request.method, request.url.path, status,
             type(exc).__name__, exc)
    return error_response(status, type(exc).__name__, str(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, HTTPException):  # registered for HTTPException only; keeps mypy calm
        raise exc
    try:
        kind = HTTPStatus(exc.status_code).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        kind = "HTTPError"
    return error_response(exc.status_code, kind, exc.detail, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):
        raise exc
    errors = []
    for error in exc.errors():
        # pydantic puts the raised ValueError itself in ctx, which JSON would turn into {}.
        if isinstance(error.get("ctx"), dict):
            error = {**error, "ctx": {k: v if isinstance(v, str | int | float | bool | None)
                                      else str(v) for k, v in error["ctx"].items()}}
        errors.append(error)
    return error_response(422, "ValidationError", errors)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers and the catch-all middleware on ``app``."""
    app.add_exception_handler(KinsightError, _project_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(InternalErrorMiddleware)


class InternalErrorMiddleware:
    """Turns any exception that no handler took into the fixed 500 response, logging it once.

    Starlette's own 500 handler re-raises after answering, so the server logs the traceback a
    second time; catching here answers and logs exactly once.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:
                raise  # half a response went out; only the server can end the connection now
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            await _internal_error()(scope, receive, send)
