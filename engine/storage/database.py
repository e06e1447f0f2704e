"""The database under a store: one DuckDB connection, locked down, its transactions and the catalog.

The catalog (schema ``kinsight``) lists collections (name, uid, generation), their vector spaces,
analysis runs and the vector sequence. Every SQL statement on the catalog lives here; every one on
a collection's own tables lives in ``tables.py`` (and ``side_tables.py``). DuckDB errors become
kinsight errors in ``errors.translated`` and nowhere else.

Durability: every write is one DuckDB transaction; DuckDB's write-ahead log makes a committed
transaction survive a crash. One process may open a database for writing (DuckDB's file lock);
any number of threads in it may read, each through its own cursor.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from ..errors import (
    AlreadyExistsError,
    KinsightError,
    NotFoundError,
    ReadOnlyStoreError,
    translated,
)

__all__ = ["DATABASE_FILE", "Database"]

# Not "kinsight.duckdb": DuckDB names the catalog after the file, which would shadow the schema.
DATABASE_FILE = "store.duckdb"

# No query — whatever a filter says — may read files, attach databases or load extensions.
_LOCKED_DOWN = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}

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
    chunk_words INTEGER, recall_target DOUBLE NOT NULL, index_spec VARCHAR, language VARCHAR
);
-- Stores created before spaces recorded their index type.
ALTER TABLE kinsight.spaces ADD COLUMN IF NOT EXISTS index_spec VARCHAR;
-- Stores created before spaces recorded the language of their BM25 index (NULL: English).
ALTER TABLE kinsight.spaces ADD COLUMN IF NOT EXISTS language VARCHAR;
-- Analysis runs (see runs.py); their result tables live in the collection's schema.
CREATE TABLE IF NOT EXISTS kinsight.runs (
    run_id VARCHAR NOT NULL, collection VARCHAR NOT NULL, operation VARCHAR NOT NULL,
    params VARCHAR NOT NULL, summary VARCHAR NOT NULL, tables VARCHAR[] NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS kinsight.sequence (next_seq BIGINT NOT NULL);
INSERT INTO kinsight.sequence SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM kinsight.sequence);
"""


class Database:
    """The DuckDB database of a store at ``path`` (None: in memory)."""

    def __init__(self, path: Path | None, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self.write_lock = threading.RLock()
        # Each collection's (uid, generation), kept in memory: only this process can write the
        # database (DuckDB's lock), so it sees every change; saves a query on every search.
        self._versions: dict[str, tuple[str, int]] = {}
        self._con = self._connect()
        self._closed = False
        self._has_uids = not read_only or bool(self.scalar(
            "SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'kinsight' "
            "AND table_name = 'collections' AND column_name = 'uid'"))
        if not read_only:
            self._give_uids()

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
            with translated(f"store {self.path} cannot be used"):
                con = duckdb.connect(str(database), read_only=self.read_only,
                                     config=dict(_LOCKED_DOWN))
        if not self.read_only:
            con.execute(_CATALOG)
        return con

    # -- connections and transactions -------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the database for one thread's reads."""
        if self._closed:
            raise KinsightError("the store is closed; open it again")
        return self._con.cursor()

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        """The single value a query returns (None when it returns no row)."""
        rows = self.cursor().execute(sql, params or []).fetchall()
        return rows[0][0] if rows else None

    @contextmanager
    def writing(self, collection: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction; with ``collection``, that collection's generation goes up."""
        if self.read_only:
            raise ReadOnlyStoreError(
                f"store {self.path} is open read-only; open it without read_only to write")
        with self.write_lock:
            con = self.cursor()
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

    # -- collections in the catalog ---------------------------------------------------------
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
        """``(uid, generation)`` of a collection as ``cur`` (say, inside a transaction) sees it;
        the uid is empty in a read-only store made before collections had uids."""
        rows = cur.execute(f"SELECT {'uid' if self._has_uids else 'NULL'}, generation "
                           "FROM kinsight.collections WHERE name = ?", [collection]).fetchall()
        if not rows:
            raise NotFoundError(self.missing(collection))
        return rows[0][0] or "", int(rows[0][1])

    def _version(self, collection: str) -> tuple[str, int]:
        if collection not in self._versions:
            self._versions[collection] = self.version_in(self.cursor(), collection)
        return self._versions[collection]

    def collection_names(self) -> list[str]:
        rows = self.cursor().execute("SELECT name FROM kinsight.collections ORDER BY name")
        return [r[0] for r in rows.fetchall()]

    def collection_uids(self) -> dict[str, str]:
        rows = self.cursor().execute("SELECT name, uid FROM kinsight.collections").fetchall()
        return {name: uid or "" for name, uid in rows}

    def add_collection(self, con: duckdb.DuckDBPyConnection, name: str) -> str | None:
        """Catalog a new collection inside ``con``'s transaction; returns its uid, or None when
        one of that name exists (raises when one differs only in case: DuckDB schemas match
        names ignoring case)."""
        if con.execute("SELECT 1 FROM kinsight.collections WHERE name = ?", [name]).fetchone():
            return None
        same_but_case = con.execute("SELECT name FROM kinsight.collections WHERE lower(name) = "
                                    "lower(?)", [name]).fetchall()
        if same_but_case:
            raise AlreadyExistsError(
                f"collection {name!r} differs from the existing {same_but_case[0][0]!r} only "
                "in case, which a store cannot tell apart; use that one or another name")
        uid = _new_uid()
        con.execute("INSERT INTO kinsight.collections (name, generation, uid) VALUES (?, 0, ?)",
                    [name, uid])
        self._versions.pop(name, None)
        return uid

    def remove_collection(self, con: duckdb.DuckDBPyConnection, name: str) -> str:
        """Take a collection out of the catalog inside ``con``'s transaction; returns its uid."""
        found = con.execute("SELECT uid FROM kinsight.collections WHERE name = ?",
                            [name]).fetchall()
        if not found:
            raise NotFoundError(self.missing(name))
        for table in ("collections", "spaces", "runs"):
            column = "name" if table == "collections" else "collection"
            con.execute(f"DELETE FROM kinsight.{table} WHERE {column} = ?", [name])
        return found[0][0] or ""

    def forget(self, name: str) -> None:
        """Forget a collection's cached version (after it was dropped)."""
        self._versions.pop(name, None)

    def missing(self, name: str) -> str:
        known = self.collection_names()
        return (f"no collection {name!r} in store {self.path or ':memory:'}; "
                f"collections: {', '.join(known) if known else 'none (ingest some data first)'}")

    def _give_uids(self) -> None:
        """Collections of a store made before uids existed get one (their old index folders,
        which nothing ties to them, are swept and rebuilt)."""
        with self.writing() as con:
            for (name,) in con.execute(
                    "SELECT name FROM kinsight.collections WHERE uid IS NULL").fetchall():
                con.execute("UPDATE kinsight.collections SET uid = ? WHERE name = ?",
                            [_new_uid(), name])

    # -- spaces and runs in the catalog -----------------------------------------------------
    def space_rows(self, collection: str) -> list[dict[str, Any]]:
        cur = self.cursor().execute(
            "SELECT * FROM kinsight.spaces WHERE collection = ? ORDER BY name", [collection])
        columns = [d[0] for d in cur.description]
        return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]

    @staticmethod
    def has_space(con: duckdb.DuckDBPyConnection, collection: str, space: str) -> bool:
        return bool(con.execute("SELECT 1 FROM kinsight.spaces WHERE collection = ? AND name = ?",
                                [collection, space]).fetchone())

    @staticmethod
    def add_space(con: duckdb.DuckDBPyConnection, row: list[Any]) -> None:
        """Catalog a space: collection, name, encoder spec, modality, dim, fingerprint,
        max_tokens, metric, source_fields, chunk_words, recall_target, language."""
        con.execute("INSERT INTO kinsight.spaces (collection, name, encoder_spec, modality, dim, "
                    "fingerprint, max_tokens, metric, source_fields, chunk_words, recall_target, "
                    "language) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def set_index_spec(self, collection: str, space: str, factory: str) -> None:
        """Record which index type a space has (no generation bump: no item changed)."""
        with self.writing() as con:
            con.execute("UPDATE kinsight.spaces SET index_spec = ? WHERE collection = ? "
                        "AND name = ?", [factory, collection, space])

    def set_language(self, collection: str, space: str, language: str) -> None:
        """Record the language of a space's BM25 index (no generation bump: no item changed;
        the BM25 folder records its analyser, so the index is rebuilt when that differs)."""
        with self.writing() as con:
            con.execute("UPDATE kinsight.spaces SET language = ? WHERE collection = ? "
                        "AND name = ?", [language, collection, space])

    @staticmethod
    def add_run(con: duckdb.DuckDBPyConnection, row: list[Any]) -> None:
        """Catalog a run: run_id, collection, operation, params, summary, tables, created_at."""
        con.execute("INSERT INTO kinsight.runs VALUES (?, ?, ?, ?, ?, ?, ?)", row)

    def run_rows(self, collection: str, operation: str | None = None) -> list[tuple[Any, ...]]:
        """``(run_id, collection, operation, params, summary, tables, created_at)``, newest first."""
        if not self.scalar("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'kinsight' "
                           "AND table_name = 'runs'"):
            return []  # a read-only store made before runs existed
        sql = ("SELECT run_id, collection, operation, params, summary, tables, created_at "
               "FROM kinsight.runs WHERE collection = ?")
        params: list[Any] = [collection]
        if operation is not None:
            sql += " AND operation = ?"
            params.append(operation)
        return self.cursor().execute(sql + " ORDER BY created_at DESC, run_id DESC",
                                     params).fetchall()

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._con.close()


def _new_uid() -> str:
    return secrets.token_hex(8)
