"""The FastAPI application: ``create_app(settings)`` builds one; nothing is made at import.

Serve it with ``kinsight serve`` or ``uvicorn --factory kinsight.api.http:create_app`` (settings
then come from ``KINSIGHT_*`` environment variables). The store is opened when the app starts and
closed, with its indexes saved, when it stops (and every ``index_save_seconds`` meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kinsight.engine import Store
from kinsight.indexers import process_executor
from kinsight.indexers.process_executor import ProcessExecutor

from . import (
    routes_anomalies,
    routes_classify,
    routes_clusters,
    routes_collections,
    routes_embed,
    routes_images,
    routes_items,
    routes_mismatch,
    routes_recommend,
    routes_runs,
    routes_search,
    routes_tuning,
)
from .deps import StoreDep, WritesUnderWay, require_api_key
from .errors import install_error_handlers
from .limits import BodyLimitMiddleware
from .models import ErrorOut, Health
from .page import install_page
from .search_batcher import SearchBatcher
from .service import REQUEST_ID_HEADER, Readiness, ServiceMetrics, ServiceMiddleware, warm_up
from .settings import Settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_DESCRIPTION = """Embedding search over collections of items: upsert items (their text is encoded
on the way in), then search them by text, vector or stored item, densely, by BM25 or both.
Filters use the structured form `{"field": F, "op": OP, "value": V}` with `and` / `or` / `not`.
Errors come back as `{"error": KIND, "detail": MESSAGE}`."""


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> FastAPI:
    """The HTTP API over ``settings.store``, or over ``store`` when given (for tests and
    embedding; the caller then keeps ownership and closes it)."""
    settings = settings if settings is not None else Settings()
    app = FastAPI(title="kinsight", version=_package_version(), description=_DESCRIPTION,
                  lifespan=_lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.owns_store = store is None
    app.state.write_lock = threading.Lock()
    app.state.writes_under_way = WritesUnderWay()
    app.state.search_batcher = SearchBatcher(settings.max_search_batch)
    # Upserts encode in a child of lower priority, so searches do not wait for their encoding.
    app.state.encode_process = (
        ProcessExecutor(settings.encode_niceness)
        if settings.encode_niceness and not settings.read_only and process_executor.available()
        else None)
    app.state.readiness = Readiness()
    if not settings.warm_up:
        app.state.readiness.done.set()
    app.state.metrics = ServiceMetrics(lambda: app.state.store)

    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["*"], allow_headers=["*"],
                           expose_headers=[REQUEST_ID_HEADER])
    # Outside the error handlers, so that every answer, a 500 included, is counted and has an id.
    app.add_middleware(ServiceMiddleware, metrics=app.state.metrics)
    # Added last, so outermost: an oversized body is refused before any work is done on it.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)

    secured = [Depends(require_api_key)]
    documented: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorOut, "description": "Unreadable request: a body that does not parse, "
                                                "or a Content-Length that is not a number"},
        401: {"model": ErrorOut, "description": "Missing or wrong API key"},
        413: {"model": ErrorOut, "description": "Request body over max_request_bytes"},
    }
    for module in (routes_collections, routes_items, routes_search, routes_images,
                   routes_recommend, routes_clusters, routes_anomalies, routes_classify,
                   routes_mismatch, routes_runs, routes_embed, routes_tuning):
        app.include_router(module.router, dependencies=secured, responses=documented)
    app.add_api_route("/health", _health, methods=["GET"], tags=["health"],
                      summary="Liveness: the store is open (no API key needed)")
    app.add_api_route("/ready", _ready, methods=["GET"], tags=["health"],
                      summary="Readiness: 200 once the served spaces' encoders and indexes are "
                              "warm, 503 before (no API key needed)",
                      responses={503: {"description": "Still warming up"}})
    app.add_api_route("/metrics", _metrics, methods=["GET"], tags=["health"],
                      dependencies=secured, summary="Prometheus metrics (text exposition format)",
                      response_class=Response)
    install_page(app)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if app.state.owns_store:
        app.state.store = Store(settings.store, read_only=settings.read_only)
        log.info("serving store %s", settings.store)
    readiness: Readiness = app.state.readiness
    warming = None
    if settings.warm_up:
        warming = threading.Thread(target=warm_up, args=(app.state.store, readiness),
                                   daemon=True, name="kinsight-warm-up")
        warming.start()
    saver = None
    if not settings.read_only and settings.index_save_seconds > 0:
        saver = asyncio.create_task(_save_indexes_every(
            settings.index_save_seconds, app.state.store, app.state.write_lock))
    try:
        yield
    finally:
        if saver is not None:
            saver.cancel()  # a save under way finishes first (its thread is not abandoned)
            with contextlib.suppress(asyncio.CancelledError):
                await saver
        # Graceful shutdown: uvicorn has stopped taking requests; a write still running (its
        # client may have gone), encoding or committing, commits before the store closes.
        await anyio.to_thread.run_sync(_wait_for_writes, app.state.writes_under_way,
                                       app.state.write_lock)
        if warming is not None:  # it reads the store: stopped before the store closes
            readiness.stopping.set()
            await anyio.to_thread.run_sync(warming.join)
        if app.state.encode_process is not None:
            await anyio.to_thread.run_sync(app.state.encode_process.stop)
        if app.state.owns_store and app.state.store is not None:
            app.state.store.close()  # saves index files, so the next start need not rebuild them
            app.state.store = None
            log.info("closed store %s", settings.store)


async def _save_indexes_every(seconds: float, store: Store, write_lock: threading.Lock) -> None:
    """Save the changed index files of the store every ``seconds`` (upserts leave them unsaved)."""
    while True:
        await anyio.sleep(seconds)
        await anyio.to_thread.run_sync(_save_indexes, store, write_lock)


def _save_indexes(store: Store, write_lock: threading.Lock) -> None:
    # Under the write lock: a collection dropped meanwhile must not get its files back.
    try:
        with write_lock:
            for name in store.list_collections():
                store.collection(name).save_indexes()
    except Exception:  # a failed save must not stop the next ones: the files are only a cache
        log.exception("could not save the index files of %s", store.path)


def _health(store: StoreDep) -> Health:
    return Health(collections=len(store.list_collections()))


def _wait_for_writes(under_way: WritesUnderWay, lock: threading.Lock) -> None:
    under_way.wait()
    with lock:
        pass


def _ready(request: Request) -> JSONResponse:
    readiness: Readiness = request.app.state.readiness
    return readiness.response()


def _metrics(request: Request) -> Response:
    metrics: ServiceMetrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _package_version() -> str:
    try:
        return version("kinsight")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"
