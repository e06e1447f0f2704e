"""One collection's tables, and every SQL statement on them.

A collection is a DuckDB schema (named after it, always quoted) holding ``items`` (one row per item:
``id``, ``_hash``, ``_updated_at`` and the user's fields as real columns), one ``vectors_SPACE``
table per vector space (one row per chunk: ``seq``, ``id``, ``chunk``, ``start_char``,
``end_char``, ``vec``) and ``deleted`` (the vector rows removed, by space, seq and generation, so
an index that lags can be caught up instead of rebuilt). Interactions and analysis runs have
tables of their own in the same schema (``side_tables.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from ..encoders import EncoderInfo
from ..errors import FilterError, NotFoundError, translated
from ..filters import FilterInput, compile_filter
from ..schema import RESERVED_FIELDS, arrow_column, quote
from ..spaces import VectorSpace
from .database import Database
from .field_updates import FieldUpdate, add_columns, apply_field_updates
from .item_cache import ItemCache

__all__ = ["VECTOR_BLOCK", "CollectionTables", "NewItem", "VectorRows"]

log = logging.getLogger(__name__)

VECTOR_BLOCK = 65_536  # vectors read per block when (re)building an index: ~100 MB at 384-d
# Up to this many ids are bound as a literal IN list, which uses the id indexes; more are joined
# as a registered table (one scan, however many).
FEW_IDS = 1_000
# Looks up items by id without scanning the table (8 ms -> 1 ms for 10 ids among 300k).
# Not UNIQUE: DuckDB refuses to delete and re-insert a unique key in one transaction (upserts).
_ITEMS_ID_INDEX = "CREATE INDEX IF NOT EXISTS items_id ON {schema}.items (id)"


@dataclass(frozen=True)
class NewItem:
    """An item row to write: its id, user fields and content hash."""

    id: str
    fields: dict[str, Any]
    content_hash: str | None


@dataclass(frozen=True)
class VectorRows:
    """The vector rows of one space to write: owner id, chunk number and span of each row, and
    the vectors ``(rows, dim)`` float32, already normalised for the space's metric."""

    owners: list[str]
    chunks: list[int]
    spans: list[tuple[int | None, int | None]]
    vectors: np.ndarray


class CollectionTables:
    """The tables of the collection ``name`` (identity ``uid``) in ``db``."""

    def __init__(self, db: Database, name: str, uid: str) -> None:
        self.db = db
        self.name = name
        self.uid = uid
        self.schema = quote(name)
        # Schema, cached for the query path; the writes that change it (all in this process:
        # one writer per store) forget it.
        self._fields: dict[str, str] | None = None
        self._spaces: dict[str, VectorSpace] | None = None
        self._count: tuple[int, int] | None = None  # (generation, items)
        self._item_cache = ItemCache(self._items_copy)

    # -- the schema itself -----------------------------------------------------------------
    @staticmethod
    def create(con: duckdb.DuckDBPyConnection, name: str) -> None:
        """Create the schema of a new collection inside ``con``'s transaction."""
        schema = quote(name)
        con.execute(f"CREATE SCHEMA {schema}")
        con.execute(f"CREATE TABLE {schema}.items (id VARCHAR NOT NULL, "
                    "_hash VARCHAR, _updated_at TIMESTAMP DEFAULT now())")
        con.execute(_ITEMS_ID_INDEX.format(schema=schema))
        con.execute(f"CREATE TABLE {schema}.deleted (space VARCHAR, seq BIGINT, generation BIGINT)")

    @staticmethod
    def drop(con: duckdb.DuckDBPyConnection, name: str) -> None:
        con.execute(f"DROP SCHEMA {quote(name)} CASCADE")

    def generation(self) -> int:
        """The collection's write count; raises NotFoundError once it has been dropped."""
        return self.db.generation(self.name, self.uid)

    def exists(self) -> bool:
        """False once the collection has been dropped (even if another took its name)."""
        try:
            self.generation()
        except NotFoundError:
            return False
        return True

    def fields(self) -> dict[str, str]:
        """User fields and their DuckDB types (``id`` and internal columns left out)."""
        if self._fields is None:
            rows = self.db.cursor().execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = ? "
                "AND table_name = 'items' ORDER BY column_index", [self.name]).fetchall()
            self._fields = {name: kind for name, kind in rows if name not in RESERVED_FIELDS}
        return dict(self._fields)

    def spaces(self) -> dict[str, VectorSpace]:
        if self._spaces is None:
            self._spaces = {row["name"]: VectorSpace.from_row(row)
                            for row in self.db.space_rows(self.name)}
        return dict(self._spaces)

    def forget_schema(self) -> None:
        """Drop the cached fields and spaces (after a write that changed them)."""
        self._fields = None
        self._spaces = None

    def ensure_id_indexes(self) -> None:
        """Index ``id`` in items and in every vector table: fetching a few items' fields or
        vectors then reads those rows instead of scanning the table."""
        cur = self.db.cursor()
        cur.execute(_ITEMS_ID_INDEX.format(schema=self.schema))
        for space in self.spaces().values():
            cur.execute(self._vectors_id_index(space.name))

    def create_space(self, name: str, encoder: EncoderInfo, source_fields: Sequence[str],
                     metric: str, chunk_words: int | None, recall_target: float,
                     language: str | None) -> None:
        """Add a vector space and its table (a new, empty space changes no item)."""
        try:
            with self.db.writing() as con:
                # Checked under the write lock: another thread may have created it meanwhile.
                if self.db.has_space(con, self.name, name):
                    return
                con.execute(f"CREATE TABLE {self._vectors(name)} (seq BIGINT NOT NULL, "
                            "id VARCHAR NOT NULL, chunk INTEGER NOT NULL, start_char INTEGER, "
                            f"end_char INTEGER, vec FLOAT[{encoder.dim}] NOT NULL)")
                con.execute(self._vectors_id_index(name))
                self.db.add_space(con, [self.name, name, encoder.spec, encoder.modality,
                                        encoder.dim, encoder.fingerprint, encoder.max_tokens,
                                        metric, list(source_fields), chunk_words, recall_target,
                                        language])
        finally:
            self.forget_schema()

    # -- writing ----------------------------------------------------------------------------
    def replace(self, items: list[NewItem], vectors: dict[str, VectorRows],
                updates: Sequence[FieldUpdate] = (), rebuilt: Sequence[str] = ()) -> None:
        """Insert or replace ``items`` by id with their vector rows, and apply ``updates`` to
        the fields of other stored items in place (their vectors left as they are:
        ``field_updates``), all in one transaction.

        The replaced items' vectors are replaced in the spaces of ``vectors`` and ``rebuilt``
        (the spaces this write encodes, an item without rows there has none left). In any other
        space a replaced item keeps its vectors while the fields they were made from are
        unchanged; where those fields changed, its vectors there no longer match and are
        removed, with a warning that says to encode that space again."""
        known = self.fields()
        try:
            with self.db.writing(self.name) as con:
                if items:
                    ids = [item.id for item in items]
                    given = self._register_items(con, items, ids, known)
                    kept = {name: space.source_fields for name, space in self.spaces().items()
                            if name not in vectors and name not in rebuilt}
                    self._remove(con, ids, keep=self._unchanged(kept, given, known))
                    con.execute(f"INSERT INTO {self.schema}.items BY NAME "
                                "SELECT * FROM _new_items")
                    con.unregister("_new_items")
                    for space, rows in vectors.items():
                        self._insert_vectors(con, space, rows)
                if updates:
                    apply_field_updates(con, self.schema, self.name, known, updates)
        finally:
            if known != self._fields:  # columns were added, whether it committed or not
                self.forget_schema()

    def remove(self, ids: list[str]) -> None:
        """Delete items and their vectors in one transaction."""
        with self.db.writing(self.name) as con:
            self._remove(con, ids)

    def _register_items(self, con: Any, items: list[NewItem], ids: list[str],
                        known: dict[str, str]) -> set[str]:
        """Register the new rows as ``_new_items`` (new fields become columns first); returns
        the fields they give."""
        names = sorted({name for item in items for name in item.fields})
        add_columns(con, self.schema, self.name, known,
                    {name: [item.fields.get(name) for item in items] for name in names})
        columns = {"id": pa.array(ids, pa.string()),
                   "_hash": pa.array([item.content_hash for item in items], pa.string())}
        for name in names:
            columns[name] = arrow_column(name, known[name],
                                         [item.fields.get(name) for item in items], ids)
        con.register("_new_items", pa.table(columns))
        return set(names)

    def _unchanged(self, kept: dict[str, tuple[str, ...]], given: set[str],
                   known: dict[str, str]) -> dict[str, str]:
        """For each space in ``kept`` (name → source fields), a SQL query of the ids in
        ``_new_items`` (which has the ``given`` fields) whose stored values of those fields
        equal the new ones."""
        queries = {}
        for space, fields in kept.items():
            same = " AND ".join(
                f"o.{quote(f)} IS NOT DISTINCT FROM "
                f"{'n.' + quote(f) if f in given else 'NULL'}"
                for f in fields if f in known) or "TRUE"
            queries[space] = (f"SELECT n.id FROM _new_items n JOIN {self.schema}.items o "
                              f"ON o.id = n.id WHERE {same}")
        return queries

    def _insert_vectors(self, con: Any, space: str, rows: VectorRows) -> None:
        first = self.db.reserve_seqs(con, len(rows.owners))
        table = pa.table({
            "seq": pa.array(np.arange(first, first + len(rows.owners)), pa.int64()),
            "id": pa.array(rows.owners, pa.string()),
            "chunk": pa.array(rows.chunks, pa.int32()),
            "start_char": pa.array([s[0] for s in rows.spans], pa.int32()),
            "end_char": pa.array([s[1] for s in rows.spans], pa.int32()),
            "vec": pa.FixedSizeListArray.from_arrays(
                pa.array(rows.vectors.ravel(), pa.float32()), rows.vectors.shape[1]),
        })
        con.register("_new_vectors", table)
        con.execute(f"INSERT INTO {self._vectors(space)} SELECT * FROM _new_vectors")
        con.unregister("_new_vectors")

    def _remove(self, con: Any, ids: list[str], keep: dict[str, str] | None = None) -> None:
        """Delete items and their vectors, logging removed vector seqs for the indexes; in a
        space of ``keep`` (space → SQL query of ids) the vectors of those ids stay."""
        _with_ids(con, "_gone", ids)
        generation = con.execute("SELECT generation + 1 FROM kinsight.collections "
                                 "WHERE name = ?", [self.name]).fetchone()[0]
        for space in self.spaces():
            table = self._vectors(space)
            gone = "id IN (SELECT id FROM _gone)"
            if keep and space in keep:
                gone += f" AND id NOT IN ({keep[space]})"
                stale = con.execute(f"SELECT count(DISTINCT id) FROM {table} WHERE {gone}"
                                    ).fetchone()[0]
                if stale:
                    log.warning("space %r of collection %r: %d replaced item(s) changed the "
                                "fields their vectors there were made from, and this write "
                                "does not encode that space: their vectors there are removed "
                                "(ingest again with that space to encode them)",
                                space, self.name, stale)
            con.execute(f"INSERT INTO {self.schema}.deleted SELECT ?, seq, ? FROM {table} "
                        f"WHERE {gone}", [space, generation])
            con.execute(f"DELETE FROM {table} WHERE {gone}")
        con.execute(f"DELETE FROM {self.schema}.items WHERE id IN (SELECT id FROM _gone)")
        con.unregister("_gone")

    # -- reading items ----------------------------------------------------------------------
    def count(self) -> int:
        generation = self.generation()
        if self._count is None or self._count[0] != generation:
            self._count = (generation, int(self.db.scalar(
                f"SELECT count(*) FROM {self.schema}.items")))
        return self._count[1]

    def fields_of(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Every field of the given items, by id."""
        if not ids:
            return {}
        cached = self._item_cache.fields_of(ids, self.generation(), self.fields())
        if cached is not None:
            return cached
        condition, params = _id_condition(ids)
        # execute/fetchall: about twice as fast as a relation turned into Arrow, for a few rows.
        cur = self.db.cursor().execute(
            f"SELECT * EXCLUDE (_hash, _updated_at) FROM {self.schema}.items WHERE {condition}",
            params)
        names = [d[0] for d in cur.description]
        return {row[0]: dict(zip(names[1:], row[1:], strict=True)) for row in cur.fetchall()}

    def join_background(self) -> None:
        """Wait for background reads of these tables (the item copy) to finish."""
        self._item_cache.join()

    def _items_copy(self, max_items: int) -> tuple[int, pa.Table | None]:
        """``(generation, every item's fields)`` as one snapshot sees them; no table past
        ``max_items`` items."""
        with self.snapshot() as cur:
            generation = self.db.version_in(cur, self.name)[1]
            if cur.execute(f"SELECT count(*) FROM {self.schema}.items").fetchall()[0][0] > max_items:
                return generation, None
            return generation, cur.sql(f"SELECT * EXCLUDE (_hash, _updated_at) FROM "
                                       f"{self.schema}.items").to_arrow_table()

    def field_values(self, name: str, ids: Sequence[str], *, as_text: bool = False) -> list[Any]:
        """One field of many items, in the order of ``ids`` (None where an item lacks it)."""
        column = f"CAST(i.{quote(name)} AS VARCHAR)" if as_text else f"i.{quote(name)}"
        cur = self.db.cursor()
        cur.register("_wanted", pa.table({"id": pa.array(list(ids), pa.string()),
                                          "pos": pa.array(range(len(ids)), pa.int64())}))
        rows = cur.execute(f"SELECT w.pos, {column} FROM _wanted w JOIN "
                           f"{self.schema}.items i USING (id)").fetchall()
        values: list[Any] = [None] * len(ids)
        for pos, value in rows:
            values[pos] = value
        return values

    def existing_ids(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` that exist, each once."""
        if not ids:
            return []
        cached = self._item_cache.existing(ids, self.generation(), self.fields())
        return cached if cached is not None else list(self.content_hashes(ids))

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str | None]:
        """Stored content hash of each item that exists."""
        if not ids:
            return {}
        where, params = _id_condition(ids)
        rows = self.db.cursor().execute(
            f"SELECT id, _hash FROM {self.schema}.items WHERE {where}", params).fetchall()
        return dict(rows)

    def ids_matching(self, where: FilterInput) -> list[str]:
        """Ids of every item (``where=None``) or of those a filter matches."""
        compiled = compile_filter(where, self.fields())
        sql = f"SELECT id FROM {self.schema}.items"
        params: list[Any] = []
        if compiled is not None:
            sql += f" WHERE {compiled.sql}"
            params = compiled.params
        with self._filter_errors(where):
            return [r[0] for r in self.db.cursor().execute(sql, params).fetchall()]

    def texts(self, fields: Sequence[str]) -> list[tuple[str, str]]:
        """``(id, text)`` of every item, the fields' values joined by spaces, ordered by id."""
        known = [f for f in fields if f in self.fields()]
        text = " || ' ' || ".join(f"coalesce(CAST({quote(f)} AS VARCHAR), '')" for f in known)
        return self.db.cursor().execute(f"SELECT id, {text or chr(39) * 2} FROM "
                                        f"{self.schema}.items ORDER BY id").fetchall()

    # -- reading vectors --------------------------------------------------------------------
    def count_vectors(self, space: str, cursor: duckdb.DuckDBPyConnection | None = None) -> int:
        cur = cursor or self.db.cursor()
        return int(cur.execute(f"SELECT count(*) FROM {self._vectors(space)}").fetchall()[0][0])

    def vector_blocks(
        self, space: str, *, after_seq: int = 0, ids: Sequence[str] | None = None,
        where: FilterInput = None, block: int = VECTOR_BLOCK,
        cursor: duckdb.DuckDBPyConnection | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
        """Stored vectors in blocks ``(seqs (b,), vectors (b, dim) float32, item ids)``, of the
        given items or of those a filter matches; pass a ``cursor`` inside a transaction to read
        them from that transaction's snapshot."""
        dim = self.spaces()[space].dim
        sql = f"SELECT seq, vec, id FROM {self._vectors(space)} WHERE seq > ?"
        params: list[Any] = [after_seq]
        cur = cursor or self.db.cursor()
        selection, selection_params = self._selection(cur, ids, where)
        with self._filter_errors(where):
            reader = cur.sql(sql + selection + " ORDER BY seq",
                             params=params + selection_params).to_arrow_reader(block)
        for batch in reader:
            if batch.num_rows == 0:
                continue
            flat = batch.column(1).values.to_numpy(zero_copy_only=False)
            yield (batch.column(0).to_numpy(), flat.reshape(-1, dim).astype(np.float32),
                   batch.column(2).to_pylist())

    def vector_seqs(self, space: str, ids: Sequence[str] | None = None, *,
                    where: FilterInput = None) -> np.ndarray:
        """The seqs of the vectors of the given items, or of the items a filter matches (the
        filter runs in the same query; no vectors are read: a filter may match many)."""
        cur = self.db.cursor()
        selection, params = self._selection(cur, ids, where)
        with self._filter_errors(where):
            found = cur.execute(f"SELECT seq FROM {self._vectors(space)} WHERE true"
                                + selection, params).fetchnumpy()
        return np.asarray(found["seq"], dtype=np.int64)

    def _selection(self, cur: duckdb.DuckDBPyConnection, ids: Sequence[str] | None,
                   where: FilterInput) -> tuple[str, list[Any]]:
        """`` AND ...`` conditions on a vector table's ``id`` (the given items, those a filter
        matches, both or neither) and their parameters."""
        sql = ""
        params: list[Any] = []
        if ids is not None and len(ids) <= FEW_IDS:
            condition, params = _id_condition(ids)
            sql += f" AND {condition}"
        elif ids is not None:
            _with_ids(cur, "_wanted", ids)
            sql += " AND id IN (SELECT id FROM _wanted)"
        compiled = compile_filter(where, self.fields())
        if compiled is not None:
            sql += f" AND id IN (SELECT id FROM {self.schema}.items WHERE {compiled.sql})"
            params = params + compiled.params
        return sql, params

    @staticmethod
    @contextmanager
    def _filter_errors(where: FilterInput) -> Iterator[None]:
        """A filter that fails in DuckDB (an unknown column in raw SQL, a file access) is the
        caller's to fix."""
        with translated(f"filter {where!r} cannot be applied", caller=FilterError):
            yield

    def chunk_rows(self, space: str, after_seq: int) -> pa.Table:
        """``seq, id, chunk, start_char, end_char`` of the vector rows past ``after_seq``."""
        return self.db.cursor().sql(
            f"SELECT seq, id, chunk, start_char, end_char FROM {self._vectors(space)} "
            "WHERE seq > ? ORDER BY seq", params=[after_seq]).to_arrow_table()

    def vector_sample(self, space: str, size: int) -> np.ndarray:
        """About ``size`` stored vectors drawn at random, ``(n, dim)`` float32."""
        arrow = self.db.cursor().sql(f"SELECT vec FROM {self._vectors(space)} "
                                     f"USING SAMPLE {int(size)} ROWS").to_arrow_table()
        column = arrow.column("vec").combine_chunks()
        return column.values.to_numpy(zero_copy_only=False).reshape(-1, self.spaces()[space].dim)

    @contextmanager
    def snapshot(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor whose reads all see one state of the database."""
        cur = self.db.cursor()
        cur.begin()
        try:
            yield cur
        finally:
            cur.commit()

    def deleted_seqs(self, cur: duckdb.DuckDBPyConnection, space: str, after_generation: int,
                     up_to_seq: int) -> np.ndarray:
        """Seqs of ``space`` deleted after ``after_generation`` that were at most ``up_to_seq``."""
        found = cur.execute(f"SELECT seq FROM {self.schema}.deleted WHERE space = ? AND "
                            "generation > ? AND seq <= ?",
                            [space, after_generation, up_to_seq]).fetchnumpy()
        return np.asarray(found["seq"], dtype=np.int64)

    def forget_deletions(self, space: str, up_to_generation: int) -> None:
        """Drop the deletion log an index saved at ``up_to_generation`` no longer needs."""
        with self.db.writing() as con:
            con.execute(f"DELETE FROM {self.schema}.deleted WHERE space = ? AND generation <= ?",
                        [space, up_to_generation])

    # -- names ------------------------------------------------------------------------------
    def _vectors(self, space: str) -> str:
        return f"{self.schema}.{quote('vectors_' + space)}"

    def _vectors_id_index(self, space: str) -> str:
        return (f"CREATE INDEX IF NOT EXISTS {quote('vectors_' + space + '_id')} ON "
                f"{self._vectors(space)} (id)")


def _id_condition(ids: Sequence[str]) -> tuple[str, list[Any]]:
    """``id IN (?, ...)`` with the ids bound: unlike a join on a registered table, a literal
    list lets DuckDB use the items_id index instead of scanning the table."""
    unique = list(dict.fromkeys(ids))
    return f"id IN ({', '.join('?' * len(unique))})", unique


def _with_ids(cur: duckdb.DuckDBPyConnection, name: str, ids: Sequence[str]
              ) -> duckdb.DuckDBPyConnection:
    """Register ids as a one-column table ``name``, so SQL can join a list of any length."""
    cur.register(name, pa.table({"id": pa.array(list(ids), pa.string())}))
    return cur
