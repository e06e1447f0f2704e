"""Dependencies of the routes, as ``Annotated`` aliases: ``def route(store: StoreDep)``.

Everything comes from ``app.state`` (set by ``create_app`` and its lifespan), never from module
globals, so two apps in one process (tests) never share a store.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from kinsight.engine import Collection, Store
from kinsight.indexers.process_executor import ProcessExecutor

from .search_batcher import SearchBatcher
from .settings import Settings

__all__ = [
    "API_KEY_HEADER",
    "CollectionDep",
    "EncodeProcessDep",
    "SearchBatcherDep",
    "SettingsDep",
    "StoreDep",
    "UnderWayDep",
    "WriteLockDep",
    "WritesUnderWay",
    "get_collection",
    "get_encode_process",
    "get_search_batcher",
    "get_settings",
    "get_store",
    "get_under_way",
    "get_write_lock",
    "require_api_key",
]

API_KEY_HEADER = "X-API-Key"

# auto_error=False: a missing key is only an error when a key is configured, decided below.
_api_key_scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                               description="Needed when the server runs with an API key.")


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> Store:
    store: Store | None = request.app.state.store
    if store is None:
        raise RuntimeError("the store is not open: the app's lifespan has not run "
                           "(serve it with uvicorn, or enter `with TestClient(app)`)")
    return store


async def get_write_lock(request: Request) -> threading.Lock:
    lock: threading.Lock = request.app.state.write_lock
    return lock


class WritesUnderWay:
    """How many writes have begun and not ended, those still encoding before they take the write
    lock included, so that shutdown can wait for every one of them."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    @contextmanager
    def track(self) -> Iterator[None]:
        with self._changed:
            self._count += 1
        try:
            yield
        finally:
            with self._changed:
                self._count -= 1
                self._changed.notify_all()

    def wait(self) -> None:
        """Until none is under way."""
        with self._changed:
            self._changed.wait_for(lambda: self._count == 0)


async def get_under_way(request: Request) -> WritesUnderWay:
    under_way: WritesUnderWay = request.app.state.writes_under_way
    return under_way


async def get_search_batcher(request: Request) -> SearchBatcher:
    batcher: SearchBatcher = request.app.state.search_batcher
    return batcher


async def get_encode_process(request: Request) -> ProcessExecutor | None:
    process: ProcessExecutor | None = request.app.state.encode_process
    return process


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
# Writes of this app take turns. The store serialises its transactions already, but creating a
# collection or space is check-then-create across transactions, and two first upserts into a new
# collection would race to create the same tables.
WriteLockDep = Annotated[threading.Lock, Depends(get_write_lock)]
# Writes that do long work outside the write lock (an upsert's encoding) are tracked here.
UnderWayDep = Annotated[WritesUnderWay, Depends(get_under_way)]
# Where upserts encode: a child process of lower priority (None: in this process; settings).
EncodeProcessDep = Annotated[ProcessExecutor | None, Depends(get_encode_process)]
# Concurrent single searches of a collection run as one batch (search_batcher.py).
SearchBatcherDep = Annotated[SearchBatcher, Depends(get_search_batcher)]


def get_collection(name: str, store: StoreDep) -> Collection:
    """The collection named by the path parameter ``name`` (404 when it does not exist)."""
    return store.collection(name)


CollectionDep = Annotated[Collection, Depends(get_collection)]


async def require_api_key(
    settings: SettingsDep,
    key: Annotated[str | None, Security(_api_key_scheme)],
) -> None:
    """Refuse the request (401) unless it carries the configured key; no key configured: open."""
    expected = settings.api_key
    if expected is None:
        return
    # Starlette decodes header bytes as latin-1; encoding back gives the bytes the client sent.
    # compare_digest takes as long for a near miss as for a far one, so timing reveals nothing.
    if key is None or not hmac.compare_digest(key.encode("latin-1"), expected.encode("utf-8")):
        raise HTTPException(
            status_code=401,
            detail=f"missing or wrong API key; send it in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": "APIKey"},
        )
