"""A store: one DuckDB database (the source of truth) and a folder of derived index files.

Layout of a store directory::

    STORE/store.duckdb                 items, metadata, vectors, catalog (schema ``kinsight``)
    STORE/indexes/COLLECTION.UID/SPACE.faiss   derived; rebuilt from the database when stale or
    STORE/indexes/COLLECTION.UID/SPACE.bm25/   missing

Every created collection gets a new ``uid``, so the derived files of a collection dropped and
created again under the same name live in another folder, and record the uid they were built from:
an index of an earlier life of a name is never taken for the current one. Folders that belong to
no collection (a drop killed after its commit) are removed when the store is opened for writing.

Durability: every write is one DuckDB transaction (see ``storage``), and the index files are only
ever a cache of it. One process may open a store for writing; any number of threads in it may read.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from .collection import Collection
from .embedding import Embeddings, embed_with
from .encoders import DEFAULT_TEXT_ENCODER, Role
from .errors import AlreadyExistsError, NotFoundError
from .schema import validate_collection_name
from .storage import DATABASE_FILE, CollectionTables, Database

__all__ = ["DATABASE_FILE", "Store"]

log = logging.getLogger(__name__)


class Store:
    """Open (or create) a store at ``path``, or in memory with ``":memory:"``.

    Use as a context manager, or call ``close()``: closing saves index files that changed.
    ``memory_budget`` (bytes) caps each FAISS index; past it vectors are compressed (PQ).
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        read_only: bool = False,
        memory_budget: int | None = None,
    ) -> None:
        self.in_memory = str(path) == ":memory:"
        self.path = None if self.in_memory else Path(path)
        self.read_only = read_only
        self.memory_budget = memory_budget
        self.db = Database(self.path, read_only=read_only)
        self._collections: dict[str, Collection] = {}
        if not read_only:
            self._sweep_index_folders()

    # -- SQL for users ----------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the database for one thread's reads (query results with SQL)."""
        return self.db.cursor()

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        """The single value a query returns (None when it returns no row)."""
        return self.db.scalar(sql, params)

    # -- collections ------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        return self.db.collection_names()

    def create_collection(self, name: str, *, exist_ok: bool = False) -> Collection:
        """Create an empty collection; its fields and vector spaces are added as data arrives."""
        validate_collection_name(name)
        with self.db.writing() as con:
            uid = self.db.add_collection(con, name)
            if uid is None and not exist_ok:
                raise AlreadyExistsError(
                    f"collection {name!r} exists already; open it, or drop it first")
            if uid is not None:
                CollectionTables.create(con, name)
        return self.collection(name)

    def collection(self, name: str) -> Collection:
        """Open an existing collection."""
        validate_collection_name(name)  # a name no collection can have says so, not "no such"
        # Every request of a server opens its collection: one already open is handed out without
        # the write lock, which a write holds for its whole transaction, so reads never wait for
        # a commit (a dict read is atomic; drop_collection removes the entry under the lock).
        opened = self._collections.get(name)
        if opened is not None:
            return opened
        with self.db.write_lock:  # one Collection object per name, whichever thread asks first
            if name not in self._collections:
                if name not in self.list_collections():
                    raise NotFoundError(self.db.missing(name))
                tables = CollectionTables(self.db, name, self.db.uid(name))
                if not self.read_only:  # collections made before these indexes existed
                    tables.ensure_id_indexes()
                self._collections[name] = Collection(self, tables)
            return self._collections[name]

    def drop_collection(self, name: str) -> None:
        """Delete a collection: its rows in one transaction, then its derived index files.

        The files live in a folder of the collection's uid, which no later collection uses: a
        crash after the commit leaves only a folder of no collection, removed on the next open.
        """
        with self.db.write_lock:
            if name in self._collections:  # a copy of its items under way reads its tables
                self._collections[name].tables.join_background()
            with self.db.writing() as con:
                # Checked inside the transaction: a concurrent drop must get NotFound.
                uid = self.db.remove_collection(con, name)
                CollectionTables.drop(con, name)
            # Forgotten under the write lock: no thread can open the old one after the commit.
            self._collections.pop(name, None)
            self.db.forget(name)
        folder = self.index_folder(name, uid)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    # -- embeddings -------------------------------------------------------------------------
    def embed(self, inputs: Sequence[Any], encoder: str = DEFAULT_TEXT_ENCODER, *,
              metric: str = "cosine", role: Role = "document") -> Embeddings:
        """The vectors a new space of ``encoder`` would store for texts or decoded pictures
        (``Collection.embed`` for an existing space); see ``engine.embedding``."""
        return embed_with(encoder, inputs, metric=metric, role=role)

    def index_folder(self, collection: str, uid: str) -> Path | None:
        """Where the derived index files of the collection ``collection`` with ``uid`` live
        (None for an in-memory store)."""
        if self.path is None:
            return None
        return self.path / "indexes" / (f"{collection}.{uid}" if uid else collection)

    def _sweep_index_folders(self) -> None:
        """Remove index folders that belong to no collection of the catalog."""
        root = None if self.path is None else self.path / "indexes"
        if root is None or not root.is_dir():
            return
        live = {f"{name}.{uid}" for name, uid in self.db.collection_uids().items()}
        for folder in root.iterdir():
            if folder.name not in live:
                log.info("removing %s: derived files of no collection (a dropped one)", folder)
                if folder.is_dir():
                    shutil.rmtree(folder, ignore_errors=True)
                else:
                    folder.unlink(missing_ok=True)

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Save changed index files and release the database (and its write lock)."""
        if self.db.closed:
            return
        try:
            if not self.read_only:
                for collection in self._collections.values():
                    collection.save_indexes()
        finally:
            for collection in self._collections.values():
                collection.tables.join_background()
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path) if self.path else ':memory:'!r}, read_only={self.read_only})"
