"""A collection: items with user ids, metadata as real DuckDB columns, and named vector spaces."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import numpy as np
import pyarrow as pa

from .encoders import EncoderInfo
from .errors import DimensionMismatchError, FilterError, InvalidInputError, NotFoundError
from .filters import FilterInput, compile_filter
from .index_sync import IndexKeeper
from .lexical import LexicalKeeper
from .schema import (
    arrow_column,
    infer_field_type,
    quote,
    validate_field_name,
    validate_space_name,
)
from .spaces import METRICS, VectorSpace
from .store import ITEMS_ID_INDEX

if TYPE_CHECKING:
    from .interactions import Interaction
    from .recommend import Strategy, WeightedExample
    from .search import Fusion, Hit, Query, SearchMode
    from .store import Store

__all__ = ["Collection", "Item"]

log = logging.getLogger(__name__)

VECTOR_BLOCK = 65_536  # vectors read per block when (re)building an index: ~100 MB at 384-d
# Up to this many ids are bound as a literal IN list, which uses the id indexes; more are joined
# as a registered table (one scan, however many).
FEW_IDS = 1_000


@dataclass
class Item:
    """An item to write, or one read back (then ``vectors`` is empty).

    ``vectors`` maps a space name to one vector ``(dim,)`` or one per chunk ``(chunks, dim)``;
    ``spans`` gives each chunk's ``(start, end)`` characters in the item's source text.
    """

    id: str
    fields: dict[str, Any] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    spans: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    content_hash: str | None = None


class Collection:
    """Items of one collection. Get it from ``Store.collection`` or ``Store.create_collection``."""

    def __init__(self, store: Store, name: str, uid: str) -> None:
        self.store = store
        self.name = name
        self.uid = uid  # new for every created collection: tells this one from a later namesake
        self._schema = quote(name)
        self._indexes: dict[str, IndexKeeper] = {}
        self._lexical: dict[str, LexicalKeeper] = {}
        # Schema and size, cached for the query path; the writes that change them (all in this
        # process: one writer per store) call forget_schema(), and the count follows generations.
        self._fields: dict[str, str] | None = None
        self._spaces: dict[str, VectorSpace] | None = None
        self._count: tuple[int, int] | None = None  # (generation, items)

    # -- schema -----------------------------------------------------------------------------
    def fields(self) -> dict[str, str]:
        """User fields and their DuckDB types (``id`` and internal columns left out)."""
        if self._fields is None:
            rows = self.store.cursor().execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = ? "
                "AND table_name = 'items' ORDER BY column_index", [self.name]).fetchall()
            self._fields = {name: kind for name, kind in rows
                            if name not in ("id", "_hash", "_updated_at")}
        return dict(self._fields)

    def spaces(self) -> dict[str, VectorSpace]:
        if self._spaces is None:
            cur = self.store.cursor().execute(
                "SELECT * FROM kinsight.spaces WHERE collection = ? ORDER BY name", [self.name])
            columns = [d[0] for d in cur.description]
            self._spaces = {row[1]: VectorSpace.from_row(dict(zip(columns, row, strict=True)))
                            for row in cur.fetchall()}
        return dict(self._spaces)

    def forget_schema(self) -> None:
        """Drop the cached fields and spaces (after a write that changed them)."""
        self._fields = None
        self._spaces = None

    def ensure_id_indexes(self) -> None:
        """Index ``id`` in items and in every vector table: fetching a few items' fields or
        vectors then reads those rows instead of scanning the table."""
        cur = self.store.cursor()
        cur.execute(ITEMS_ID_INDEX.format(schema=self._schema))
        for space in self.spaces().values():
            cur.execute(_vectors_id_index(self._schema, space.name))

    def space(self, name: str | None = None) -> VectorSpace:
        """A space by name; with no name, the collection's only space (or the one named 'text')."""
        spaces = self.spaces()
        if name is None:
            if len(spaces) == 1:
                return next(iter(spaces.values()))
            if "text" in spaces:
                return spaces["text"]
            raise InvalidInputError(
                f"collection {self.name!r} has {'no' if not spaces else 'several'} vector spaces "
                f"({', '.join(spaces) or 'ingest data first'}); name one with space=...")
        if name not in spaces:
            raise NotFoundError(f"collection {self.name!r} has no vector space {name!r}; spaces: "
                                f"{', '.join(spaces) or 'none (ingest data first)'}")
        return spaces[name]

    def ensure_space(
        self,
        name: str,
        encoder: EncoderInfo,
        *,
        source_fields: Sequence[str] = (),
        metric: str = "cosine",
        chunk_words: int | None = None,
        recall_target: float = 0.95,
    ) -> VectorSpace:
        """The space ``name``, created on first use; an existing one must have the same encoder."""
        validate_space_name(name)
        if metric not in METRICS:
            raise InvalidInputError(f"unknown metric {metric!r}; use one of {list(METRICS)}")
        if name not in self.spaces():
            try:
                with self.store.writing() as con:  # a new, empty space changes no item
                    self._create_space(con, name, encoder, source_fields, metric, chunk_words,
                                       recall_target)
            finally:
                self.forget_schema()
        existing = self.space(name)
        existing.check_encoder(encoder)
        return existing

    def _create_space(self, con: Any, name: str, encoder: EncoderInfo,
                      source_fields: Sequence[str], metric: str, chunk_words: int | None,
                      recall_target: float) -> None:
        # Check again under the write lock: another thread may have created it meanwhile.
        if con.execute("SELECT 1 FROM kinsight.spaces WHERE collection = ? AND name = ?",
                       [self.name, name]).fetchone():
            return
        con.execute(f"CREATE TABLE {self._schema}.{quote('vectors_' + name)} ("
                    "seq BIGINT NOT NULL, id VARCHAR NOT NULL, chunk INTEGER NOT NULL, "
                    f"start_char INTEGER, end_char INTEGER, vec FLOAT[{encoder.dim}] NOT NULL)")
        con.execute(_vectors_id_index(self._schema, name))
        con.execute("INSERT INTO kinsight.spaces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                    [self.name, name, encoder.spec, encoder.modality, encoder.dim,
                     encoder.fingerprint, encoder.max_tokens, metric, list(source_fields),
                     chunk_words, recall_target])

    # -- writing ----------------------------------------------------------------------------
    def upsert(self, items: Iterable[Item]) -> int:
        """Insert or replace items by id, with their vectors, in one transaction; returns the count."""
        batch = list({item.id: item for item in items}.values())  # last one of an id wins
        if not batch:
            return 0
        ids = [_check_id(item.id) for item in batch]
        spaces = self.spaces()
        vector_rows = {name: self._vector_rows(spaces, name, batch)
                       for name in {s for item in batch for s in item.vectors}}
        with self._schema_may_change(batch), self.store.writing(self.name) as con:
            self._remove(con, ids)
            self._insert_items(con, batch, ids)
            for name, (owners, chunks, spans, vectors) in vector_rows.items():
                first = self.store.reserve_seqs(con, len(owners))
                table = pa.table({
                    "seq": pa.array(np.arange(first, first + len(owners)), pa.int64()),
                    "id": pa.array(owners, pa.string()),
                    "chunk": pa.array(chunks, pa.int32()),
                    "start_char": pa.array([s[0] for s in spans], pa.int32()),
                    "end_char": pa.array([s[1] for s in spans], pa.int32()),
                    "vec": pa.FixedSizeListArray.from_arrays(
                        pa.array(vectors.ravel(), pa.float32()), vectors.shape[1]),
                })
                con.register("_new_vectors", table)
                con.execute(f"INSERT INTO {self._schema}.{quote('vectors_' + name)} "
                            "SELECT * FROM _new_vectors")
                con.unregister("_new_vectors")
        return len(batch)

    def _vector_rows(
        self, spaces: dict[str, VectorSpace], name: str, batch: list[Item]
    ) -> tuple[list[str], list[int], list[tuple[int | None, int | None]], np.ndarray]:
        if name not in spaces:
            raise NotFoundError(f"collection {self.name!r} has no vector space {name!r}; create "
                                "it with ensure_space(name, encoder.info) before writing vectors")
        space = spaces[name]
        owners: list[str] = []
        chunks: list[int] = []
        spans: list[tuple[int | None, int | None]] = []
        blocks: list[np.ndarray] = []
        for item in batch:
            if name not in item.vectors:
                continue
            vectors = np.atleast_2d(np.asarray(item.vectors[name], dtype=np.float32))
            if vectors.shape[1] != space.dim:
                raise DimensionMismatchError(
                    f"item {item.id!r}: vectors for space {name!r} have dimension "
                    f"{vectors.shape[1]}, the space has {space.dim}")
            if not np.all(np.isfinite(vectors)):
                raise InvalidInputError(f"item {item.id!r}: vector for {name!r} has NaN or inf")
            given = item.spans.get(name)
            item_spans: list[tuple[int | None, int | None]] = (
                list(given) if given else [(None, None)] * len(vectors))
            if len(item_spans) != len(vectors):
                raise InvalidInputError(f"item {item.id!r}: {len(vectors)} vectors but "
                                        f"{len(item_spans)} chunk spans for space {name!r}")
            owners += [item.id] * len(vectors)
            chunks += range(len(vectors))
            spans += item_spans
            blocks.append(vectors)
        stacked = np.concatenate(blocks) if blocks else np.zeros((0, space.dim), np.float32)
        if space.metric == "cosine":
            norms = np.linalg.norm(stacked, axis=1, keepdims=True)
            stacked = stacked / np.where(norms == 0, 1, norms)
        return owners, chunks, spans, stacked

    @contextmanager
    def _schema_may_change(self, batch: list[Item]) -> Iterator[None]:
        """Forget cached fields when a write adds columns, whether it commits or not."""
        known = self.fields()
        adds = any(name not in known for item in batch for name in item.fields)
        try:
            yield
        finally:
            if adds:
                self.forget_schema()

    def _insert_items(self, con: Any, batch: list[Item], ids: list[str]) -> None:
        known = self.fields()
        names = sorted({name for item in batch for name in item.fields})
        by_case = {k.lower(): k for k in known}
        for name in names:
            if name not in known:
                validate_field_name(name)
                # DuckDB column names ignore case: "Text" would be the column "text".
                if by_case.setdefault(name.lower(), name) != name:
                    raise InvalidInputError(
                        f"field {name!r} differs from field {by_case[name.lower()]!r} only in "
                        f"case; collection {self.name!r} cannot hold both: rename one")
                known[name] = infer_field_type([item.fields.get(name) for item in batch])
                con.execute(f"ALTER TABLE {self._schema}.items ADD COLUMN {quote(name)} "
                            f"{known[name]}")
        columns = {"id": pa.array(ids, pa.string()),
                   "_hash": pa.array([item.content_hash for item in batch], pa.string())}
        for name in names:
            columns[name] = arrow_column(name, known[name],
                                         [item.fields.get(name) for item in batch], ids)
        con.register("_new_items", pa.table(columns))
        con.execute(f"INSERT INTO {self._schema}.items BY NAME SELECT * FROM _new_items")
        con.unregister("_new_items")

    def _remove(self, con: Any, ids: list[str]) -> None:
        """Delete items and their vectors, logging removed vector seqs for the indexes."""
        _with_ids(con, "_gone", ids)
        generation = con.execute("SELECT generation + 1 FROM kinsight.collections "
                                 "WHERE name = ?", [self.name]).fetchone()[0]
        for space in self.spaces().values():
            table = f"{self._schema}.{quote(space.table)}"
            con.execute(f"INSERT INTO {self._schema}.deleted SELECT ?, seq, ? FROM {table} "
                        "WHERE id IN (SELECT id FROM _gone)", [space.name, generation])
            con.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM _gone)")
        con.execute(f"DELETE FROM {self._schema}.items WHERE id IN (SELECT id FROM _gone)")
        con.unregister("_gone")

    def delete(self, ids: Sequence[str] | None = None, *, where: FilterInput = None) -> int:
        """Delete items by id, or every item a filter matches; returns how many were deleted."""
        if (ids is None) == (where is None):
            raise InvalidInputError("pass either ids or where= to delete, not both or neither")
        targets = list(ids) if ids is not None else self.ids_matching(where)
        present = self.existing_ids(targets)
        if present:
            with self.store.writing(self.name) as con:
                self._remove(con, present)
        return len(present)

    # -- reading ----------------------------------------------------------------------------
    def generation(self) -> int:
        """The collection's write count; raises NotFoundError once it has been dropped."""
        return self.store.generation(self.name, self.uid)

    def exists(self) -> bool:
        """False once the collection has been dropped (even if another took its name)."""
        try:
            self.generation()
        except NotFoundError:
            return False
        return True

    @property
    def index_folder(self) -> Path | None:
        """Where this collection's derived index files live (None in memory)."""
        return self.store.index_folder(self.name, self.uid)

    def count(self) -> int:
        generation = self.generation()
        if self._count is None or self._count[0] != generation:
            self._count = (generation, int(self.store.scalar(
                f"SELECT count(*) FROM {self._schema}.items")))
        return self._count[1]

    def count_vectors(self, space: str) -> int:
        return int(self.store.scalar(
            f"SELECT count(*) FROM {self._schema}.{quote(self.space(space).table)}"))

    def get(self, ids: Sequence[str]) -> list[Item]:
        """Items by id, in the order asked; ids that do not exist are left out."""
        found = self.fields_of(ids)
        return [Item(id=i, fields=found[i]) for i in ids if i in found]

    def fields_of(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Every field of the given items, by id."""
        if not ids:
            return {}
        where, params = _id_condition(ids)
        table = self.store.cursor().sql(
            f"SELECT * EXCLUDE (_hash, _updated_at) FROM {self._schema}.items WHERE {where}",
            params=params).to_arrow_table()
        return {row.pop("id"): row for row in table.to_pylist()}

    def field_values(self, name: str, ids: Sequence[str]) -> list[Any]:
        """One field of many items, in the order of ``ids`` (None where an item lacks it): the
        analyses read one text field of thousands of items, which ``fields_of`` would read whole."""
        if name not in self.fields():
            raise NotFoundError(f"collection {self.name!r} has no field {name!r}; fields: "
                                f"{', '.join(self.fields()) or 'none'}")
        cur = self.store.cursor()
        cur.register("_wanted", pa.table({"id": pa.array(list(ids), pa.string()),
                                          "pos": pa.array(range(len(ids)), pa.int64())}))
        rows = cur.execute(f"SELECT w.pos, i.{quote(name)} FROM _wanted w JOIN "
                           f"{self._schema}.items i USING (id)").fetchall()
        values: list[Any] = [None] * len(ids)
        for pos, value in rows:
            values[pos] = value
        return values

    def existing_ids(self, ids: Sequence[str]) -> list[str]:
        return list(self.content_hashes(ids))

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str | None]:
        """Stored content hash of each item that exists (ingest skips unchanged items)."""
        if not ids:
            return {}
        where, params = _id_condition(ids)
        rows = self.store.cursor().execute(
            f"SELECT id, _hash FROM {self._schema}.items WHERE {where}", params).fetchall()
        return dict(rows)

    def ids_matching(self, where: FilterInput) -> list[str]:
        compiled = compile_filter(where, self.fields())
        sql = f"SELECT id FROM {self._schema}.items"
        params: list[Any] = []
        if compiled is not None:
            sql += f" WHERE {compiled.sql}"
            params = compiled.params
        with _filter_errors(where):
            return [r[0] for r in self.store.cursor().execute(sql, params).fetchall()]

    def vector_blocks(
        self, space: str, *, after_seq: int = 0, ids: Sequence[str] | None = None,
        block: int = VECTOR_BLOCK, cursor: duckdb.DuckDBPyConnection | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
        """Stored vectors in blocks ``(seqs (b,), vectors (b, dim) float32, item ids)``; pass a
        ``cursor`` inside a transaction to read them from that transaction's snapshot."""
        vs = self.space(space)
        sql = f"SELECT seq, vec, id FROM {self._schema}.{quote(vs.table)} WHERE seq > ?"
        params: list[Any] = [after_seq]
        cur = cursor or self.store.cursor()
        if ids is not None and len(ids) <= FEW_IDS:
            where, id_params = _id_condition(ids)
            sql += f" AND {where}"
            params += id_params
        elif ids is not None:
            _with_ids(cur, "_wanted", ids)
            sql += " AND id IN (SELECT id FROM _wanted)"
        reader = cur.sql(sql + " ORDER BY seq", params=params).to_arrow_reader(block)
        for batch in reader:
            if batch.num_rows == 0:
                continue
            vec = batch.column(1)
            flat = vec.values.to_numpy(zero_copy_only=False)
            yield (batch.column(0).to_numpy(), flat.reshape(-1, vs.dim).astype(np.float32),
                   batch.column(2).to_pylist())

    def vector_seqs(self, space: str, ids: Sequence[str]) -> np.ndarray:
        """The seqs of the given items' vectors (no vectors read: a filter may match many)."""
        cur = _with_ids(self.store.cursor(), "_wanted", ids)
        found = cur.execute(f"SELECT seq FROM {self._schema}.{quote(self.space(space).table)} "
                            "WHERE id IN (SELECT id FROM _wanted)").fetchnumpy()
        return np.asarray(found["seq"], dtype=np.int64)

    def item_vectors(self, space: str, item_id: str) -> np.ndarray:
        """All chunk vectors of one item in a space, shape ``(chunks, dim)``."""
        blocks = [v for _, v, _ in self.vector_blocks(space, ids=[item_id])]
        if not blocks:
            if not self.existing_ids([item_id]):
                raise NotFoundError(f"no item {item_id!r} in collection {self.name!r}")
            raise NotFoundError(f"item {item_id!r} has no vector in space {space!r}")
        return np.concatenate(blocks)

    # -- derived indexes --------------------------------------------------------------------
    def index(self, space: str | None = None) -> IndexKeeper:
        """The FAISS index keeper of a space (it catches up with the store on use)."""
        vs = self.space(space)
        if vs.name not in self._indexes:
            self._indexes[vs.name] = IndexKeeper(self, vs)
        return self._indexes[vs.name]

    def lexical(self, space: str | None = None) -> LexicalKeeper:
        """The BM25 index over a space's source fields (rebuilt when the collection changed)."""
        vs = self.space(space)
        if vs.name not in self._lexical:
            self._lexical[vs.name] = LexicalKeeper(self, vs)
        return self._lexical[vs.name]

    def refresh(self) -> None:
        """Bring every index (FAISS, and BM25 for text spaces) up to date and save it; the
        pipeline calls this after an ingest so the first query does not pay for it."""
        for name, space in self.spaces().items():
            self.index(name).refresh()
            if space.encoder.modality == "text":
                lexical = self.lexical(name)
                lexical.current()
                lexical.wait()  # saved below: let a background rebuild finish first
        self.save_indexes()

    def save_indexes(self) -> None:
        for keeper in self._indexes.values():
            keeper.save()
        for lexical in self._lexical.values():
            lexical.save()

    # -- querying ---------------------------------------------------------------------------
    def search(
        self, query: Query, *, k: int = 10, space: str | None = None,
        mode: SearchMode = "auto", where: FilterInput = None, exact: bool = False,
        aggregate: Literal["max", "mean"] = "max", fusion: Fusion | None = None,
    ) -> list[Hit]:
        """Search by text, vector or ``ById``: ``mode`` auto (hybrid for text, dense for vectors),
        dense, bm25 or hybrid; see ``engine.search``."""
        from .search import Fusion, SearchOptions, search

        return search(self, query, SearchOptions(
            k=k, space=space, mode=mode, where=where, exact=exact, aggregate=aggregate,
            fusion=fusion or Fusion()))

    def recommend(
        self, positive: Sequence[WeightedExample] = (), negative: Sequence[WeightedExample] = (),
        *, user: str | None = None, k: int = 10, strategy: Strategy = "average_vector",
        space: str | Mapping[str, float] | None = None, where: FilterInput = None,
        diversity: float = 0.0, exclude: Sequence[str] = (), include_seen: bool = False,
    ) -> list[Hit]:
        """Items like the ``positive`` examples (ids, vectors, or ``(example, weight)``) and
        unlike the ``negative`` ones, and/or for ``user``; see ``engine.recommend``."""
        from .recommend import RecommendOptions, recommend

        return recommend(self, positive, negative, user=user, options=RecommendOptions(
            k=k, strategy=strategy, space=space, where=where, diversity=diversity,
            exclude=exclude, include_seen=include_seen))

    def add_interactions(self, interactions: Iterable[Interaction]) -> int:
        """Store user interactions (views, likes, ...) for ``recommend(user=...)``."""
        from .interactions import add_interactions

        return add_interactions(self, interactions)

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, items={self.count()}, spaces={list(self.spaces())})"


def _vectors_id_index(schema: str, space: str) -> str:
    return (f"CREATE INDEX IF NOT EXISTS {quote('vectors_' + space + '_id')} ON "
            f"{schema}.{quote('vectors_' + space)} (id)")


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


@contextmanager
def _filter_errors(where: FilterInput) -> Iterator[None]:
    """A filter that fails in DuckDB (unknown column in raw SQL, a file access) is the caller's."""
    try:
        yield
    except duckdb.Error as e:
        raise FilterError(f"filter {where!r} cannot be applied: {e}") from e


def _check_id(item_id: Any) -> str:
    if not isinstance(item_id, str) or not item_id.strip():
        raise InvalidInputError(f"item id {item_id!r} must be a non-empty string")
    return item_id
