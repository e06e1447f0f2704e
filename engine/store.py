"""A store: one DuckDB database (the source of truth) and a folder of derived FAISS index files.

Layout of a store directory::

    STORE/store.duckdb                 items, metadata, vectors, catalog (schema ``kinsight``)
    STORE/indexes/COLLECTION.UID/SPACE.faiss   derived; rebuilt from the database when stale or
    STORE/indexes/COLLECTION.UID/SPACE.bm25/   missing

Every created collection gets a new ``uid``, so the derived files of a collection dropped and
created again under the same name live in another folder, and record the uid they were built from:
an index of an earlier life of a name is never taken for the current one. Folders that belong to
no collection (a drop killed after its commit) are removed when the store is opened for writing.

Each collection is a DuckDB schema holding ``items`` (one row per item, metadata as real columns),
one ``vectors_SPACE`` table per vector space (one row per chunk) and ``deleted`` (a log of removed
vector rows, so a FAISS index that lags behind can be caught up instead of rebuilt).

Durability: every write is one DuckDB transaction; DuckDB's write-ahead log makes a committed
transaction survive a crash, and the index files are only ever a cache of it. One process may open
a store for writing (DuckDB's file lock); any number of threads in it may read.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from .errors import (
    AlreadyExistsError,
    KinsightError,
    NotFoundError,
    ReadOnlyStoreError,
    StoreLockedError,
)
from .schema import quote, validate_collection_name

if TYPE_CHECKING:
    from .collection import Collection

__all__ = ["DATABASE_FILE", "ITEMS_ID_INDEX", "Store"]

log = logging.getLogger(__name__)

# Not "kinsight.duckdb": DuckDB names the catalog after the file, which would shadow the schema.
DATABASE_FILE = "store.duckdb"

# No query — whatever a filter says — may read files, attach databases or load extensions.
_LOCKED_DOWN = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}

# Looks up items by id without scanning the table (8 ms -> 1 ms for 10 ids among 300k).
# Not UNIQUE: DuckDB refuses to delete and re-insert a unique key in one transaction (upserts).
ITEMS_ID_INDEX = "CREATE INDEX IF NOT EXISTS items_id ON {schema}.items (id)"

_CATALOG = """
CREATE SCHEMA IF NOT EXISTS kinsight;
CREATE TABLE IF NOT EXISTS kinsight.collections (
    name VARCHAR NOT NULL, generation BIGINT NOT NULL, created_at TIMESTAMP DEFAULT now()
);
-- A new value for every created collection (stores made before it get one on open).
ALTER TABLE kinsight.collections ADD COLUMN IF NOT EXISTS uid VARCHAR;
CREATE TABLE IF NOT EXISTS kinsight.spaces (
    collection VARCHAR NOT NULL, name VARCHAR NOT NULL, encoder_spec VARCHAR NOT NULL,
    modality VARCHAR NOT NULL, dim INTEGER NOT NULL, fingerprint VARCHAR NOT NULL,
    max_tokens INTEGER, metric VARCHAR NOT NULL, source_fields VARCHAR[] NOT NULL,
    chunk_words INTEGER, recall_target DOUBLE NOT NULL, index_spec VARCHAR
);
-- Stores created before spaces recorded their index type.
ALTER TABLE kinsight.spaces ADD COLUMN IF NOT EXISTS index_spec VARCHAR;
-- Analysis runs (see runs.py); their result tables live in the collection's schema.
CREATE TABLE IF NOT EXISTS kinsight.runs (
    run_id VARCHAR NOT NULL, collection VARCHAR NOT NULL, operation VARCHAR NOT NULL,
    params VARCHAR NOT NULL, summary VARCHAR NOT NULL, tables VARCHAR[] NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS kinsight.sequence (next_seq BIGINT NOT NULL);
INSERT INTO kinsight.sequence SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM kinsight.sequence);
"""


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
        self._write_lock = threading.RLock()
        self._collections: dict[str, Collection] = {}
        # Each collection's (uid, generation), kept in memory: only this process can write the
        # store (DuckDB's lock), so it sees every change; saves a query on every search.
        self._versions: dict[str, tuple[str, int]] = {}
        self._con = self._connect()
        self._closed = False
        if not read_only:
            self._give_uids()
            self._sweep_index_folders()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if self.path is None:
            if self.read_only:
                raise ReadOnlyStoreError("an in-memory store cannot be read-only")
            con = duckdb.connect(":memory:", config=dict(_LOCKED_DOWN))
        else:
            database = self.path / DATABASE_FILE
            if self.read_only and not database.exists():
                raise NotFoundError(f"no kinsight store at {self.path} (no {DATABASE_FILE})")
            self.path.mkdir(parents=True, exist_ok=True)
            try:
                con = duckdb.connect(str(database), read_only=self.read_only,
                                     config=dict(_LOCKED_DOWN))
            except duckdb.IOException as e:
                if "lock" in str(e).lower():
                    holder = re.search(r"PID (\d+)", str(e))
                    raise StoreLockedError(
                        f"store {self.path} is open for writing by another process"
                        f"{f' (PID {holder.group(1)})' if holder else ''}; one writer at a time: "
                        "stop that process, or send your requests to it (e.g. the kinsight "
                        "server that has it open)"
                    ) from e
                raise KinsightError(f"cannot open store {self.path}: {e}") from e
        if not self.read_only:
            con.execute(_CATALOG)
        return con

    # -- connections and transactions -------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the database for one thread's reads."""
        self._check_open()
        return self._con.cursor()

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        """The single value a query returns (None when it returns no row)."""
        rows = self.cursor().execute(sql, params or []).fetchall()
        return rows[0][0] if rows else None

    @contextmanager
    def writing(self, collection: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction; with ``collection``, that collection's generation goes up."""
        self._check_open()
        if self.read_only:
            raise ReadOnlyStoreError(
                f"store {self.path} is open read-only; open it without read_only to write"
            )
        with self._write_lock:
            con = self._con.cursor()
            con.begin()
            try:
                yield con
                bumped = [] if collection is None else con.execute(
                    "UPDATE kinsight.collections SET generation = generation + 1 "
                    "WHERE name = ? RETURNING uid, generation", [collection]).fetchall()
                con.commit()
                if collection is not None and bumped:
                    self._versions[collection] = (bumped[0][0], int(bumped[0][1]))
            except BaseException:
                con.rollback()
                raise
            finally:
                con.close()

    @staticmethod
    def reserve_seqs(con: duckdb.DuckDBPyConnection, count: int) -> int:
        """Reserve ``count`` vector sequence numbers inside a write transaction; returns the first."""
        row = con.execute("SELECT next_seq FROM kinsight.sequence").fetchone()
        if row is None:
            raise KinsightError("store catalog is missing its sequence row")
        con.execute("UPDATE kinsight.sequence SET next_seq = next_seq + ?", [count])
        return int(row[0])

    def generation(self, collection: str, uid: str | None = None) -> int:
        """How many writes the collection has seen; indexes compare theirs to it. With ``uid``,
        the collection must still be that one (not dropped, nor dropped and created again)."""
        current, generation = self._version(collection)
        if uid is not None and uid != current:
            raise NotFoundError(
                f"collection {collection!r} was dropped{' and created again' if current else ''}"
                f" since this handle was opened; open it again with store.collection(...)")
        return generation

    def uid(self, collection: str) -> str:
        """The identity of the collection now called ``collection`` (new for every creation)."""
        return self._version(collection)[0]

    def version_in(self, cur: duckdb.DuckDBPyConnection, collection: str) -> tuple[str, int]:
        """``(uid, generation)`` of a collection as ``cur`` (say, inside a transaction) sees it."""
        rows = cur.execute(f"SELECT {self._uid_column()}, generation FROM kinsight.collections "
                           "WHERE name = ?", [collection]).fetchall()
        if not rows:
            raise NotFoundError(self._missing(collection))
        return rows[0][0] or "", int(rows[0][1])

    def _version(self, collection: str) -> tuple[str, int]:
        if collection not in self._versions:
            self._versions[collection] = self.version_in(self.cursor(), collection)
        return self._versions[collection]

    def _uid_column(self) -> str:
        """``uid``, or an empty one in a read-only store made before collections had uids."""
        if not self.read_only:
            return "uid"
        has_uid = self._con.cursor().execute(
            "SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'kinsight' "
            "AND table_name = 'collections' AND column_name = 'uid'").fetchall()[0][0]
        return "uid" if has_uid else "NULL"

    # -- collections ------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        rows = self.cursor().execute("SELECT name FROM kinsight.collections ORDER BY name")
        return [r[0] for r in rows.fetchall()]

    def create_collection(self, name: str, *, exist_ok: bool = False) -> Collection:
        """Create an empty collection; its fields and vector spaces are added as data arrives."""
        validate_collection_name(name)
        with self.writing() as con:
            exists = con.execute(
                "SELECT 1 FROM kinsight.collections WHERE name = ?", [name]).fetchone()
            if exists and not exist_ok:
                raise AlreadyExistsError(
                    f"collection {name!r} exists already; open it, or drop it first")
            # A collection is a DuckDB schema, and DuckDB matches identifiers ignoring case.
            same_but_case = con.execute(
                "SELECT name FROM kinsight.collections WHERE lower(name) = lower(?) "
                "AND name <> ?", [name, name]).fetchall()
            if same_but_case:
                raise AlreadyExistsError(
                    f"collection {name!r} differs from the existing {same_but_case[0][0]!r} only "
                    "in case, which a store cannot tell apart; use that one or another name")
            if not exists:
                schema = quote(name)
                con.execute(f"CREATE SCHEMA {schema}")
                con.execute(f"CREATE TABLE {schema}.items (id VARCHAR NOT NULL, "
                            "_hash VARCHAR, _updated_at TIMESTAMP DEFAULT now())")
                con.execute(ITEMS_ID_INDEX.format(schema=schema))
                con.execute(f"CREATE TABLE {schema}.deleted "
                            "(space VARCHAR, seq BIGINT, generation BIGINT)")
                con.execute("INSERT INTO kinsight.collections (name, generation, uid) "
                            "VALUES (?, 0, ?)", [name, _new_uid()])
        self._versions.pop(name, None)
        return self.collection(name)

    def collection(self, name: str) -> Collection:
        """Open an existing collection."""
        from .collection import Collection  # collection imports store: break the cycle here

        with self._write_lock:  # one Collection object per name, whichever thread asks first
            if name not in self._collections:
                if name not in self.list_collections():
                    raise NotFoundError(self._missing(name))
                collection = Collection(self, name, self.uid(name))
                if not self.read_only:  # collections made before these indexes existed
                    collection.ensure_id_indexes()
                self._collections[name] = collection
            return self._collections[name]

    def drop_collection(self, name: str) -> None:
        """Delete a collection: its rows in one transaction, then its derived index files.

        The files live in a folder of the collection's uid, which no later collection uses: a
        crash after the commit leaves only a folder of no collection, removed on the next open.
        """
        with self._write_lock, self.writing() as con:
            # Checked inside the transaction: a concurrent drop must get NotFound, not a crash.
            found = con.execute("SELECT uid FROM kinsight.collections WHERE name = ?",
                                [name]).fetchall()
            if not found:
                raise NotFoundError(self._missing(name))
            con.execute(f"DROP SCHEMA {quote(name)} CASCADE")
            con.execute("DELETE FROM kinsight.collections WHERE name = ?", [name])
            con.execute("DELETE FROM kinsight.spaces WHERE collection = ?", [name])
            con.execute("DELETE FROM kinsight.runs WHERE collection = ?", [name])
            # Forgotten under the write lock: no thread can open the old one after the commit.
            self._collections.pop(name, None)
            self._versions.pop(name, None)
        self._versions.pop(name, None)  # a reader may have cached it again before the commit
        folder = self.index_folder(name, found[0][0] or "")
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def index_folder(self, collection: str, uid: str) -> Path | None:
        """Where the derived index files of the collection ``collection`` with ``uid`` live
        (None for an in-memory store)."""
        if self.path is None:
            return None
        return self.path / "indexes" / (f"{collection}.{uid}" if uid else collection)

    def _give_uids(self) -> None:
        """Collections of a store made before uids existed get one (their old index folders,
        which nothing ties to them, are swept and rebuilt)."""
        with self.writing() as con:
            for (name,) in con.execute(
                    "SELECT name FROM kinsight.collections WHERE uid IS NULL").fetchall():
                con.execute("UPDATE kinsight.collections SET uid = ? WHERE name = ?",
                            [_new_uid(), name])

    def _sweep_index_folders(self) -> None:
        """Remove index folders that belong to no collection of the catalog."""
        root = None if self.path is None else self.path / "indexes"
        if root is None or not root.is_dir():
            return
        rows = self.cursor().execute("SELECT name, uid FROM kinsight.collections").fetchall()
        live = {f"{name}.{uid}" for name, uid in rows}
        for folder in root.iterdir():
            if folder.name not in live:
                log.info("removing %s: derived files of no collection (a dropped one)", folder)
                if folder.is_dir():
                    shutil.rmtree(folder, ignore_errors=True)
                else:
                    folder.unlink(missing_ok=True)

    def _missing(self, name: str) -> str:
        known = self.list_collections()
        return (f"no collection {name!r} in store {self.path or ':memory:'}; "
                f"collections: {', '.join(known) if known else 'none (ingest some data first)'}")

    # -- lifecycle --------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise KinsightError("the store is closed; open it again")

    def close(self) -> None:
        """Save changed index files and release the database (and its write lock)."""
        if self._closed:
            return
        try:
            if not self.read_only:
                for collection in self._collections.values():
                    collection.save_indexes()
        finally:
            self._closed = True
            self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path) if self.path else ':memory:'!r}, read_only={self.read_only})"


def _new_uid() -> str:
    return secrets.token_hex(8)
