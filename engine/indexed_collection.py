"""A collection's tables and derived indexes: the floor every operation works on.

``IndexedCollection`` validates and writes items (through ``storage.CollectionTables``, the only
SQL on a collection's tables), reads them back, and keeps one FAISS and one BM25 index per vector
space in step with the tables. It knows no operation: search, recommend and the analyses take it
as their argument, and ``collection.Collection`` puts them on top as methods.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from .analysers import AUTO, check_language
from .encoders import EncoderInfo
from .errors import DimensionMismatchError, InvalidInputError, NotFoundError
from .filters import FilterInput
from .index_sync import IndexKeeper
from .kernels import normalise_for
from .lexical import LexicalKeeper
from .schema import validate_space_name
from .spaces import METRICS, VectorSpace
from .storage import VECTOR_BLOCK, CollectionTables, FieldUpdate, NewItem, TuningTable, VectorRows

__all__ = ["FieldUpdate", "IndexedCollection", "Item"]

log = logging.getLogger(__name__)


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


class IndexedCollection:
    """One collection's tables (the storage floor) with the derived indexes of its spaces: one
    FAISS and one BM25 keeper per space. What every operation reads and writes through;
    ``Collection`` adds the operations on top.

    ``index_folder`` is where the derived files live (None in memory); ``memory_budget`` (bytes)
    caps each FAISS index.
    """

    def __init__(self, tables: CollectionTables, index_folder: Path | None,
                 memory_budget: int | None = None) -> None:
        self.tables = tables
        self.name = tables.name
        self.uid = tables.uid  # new for every created collection: tells it from a namesake
        self.index_folder = index_folder
        self.memory_budget = memory_budget
        self._indexes: dict[str, IndexKeeper] = {}
        self._lexical: dict[str, LexicalKeeper] = {}
        self.tunings = TuningTable(tables)  # the spaces' tuned search settings (tuning.py)

    # -- schema -----------------------------------------------------------------------------
    def fields(self) -> dict[str, str]:
        """User fields and their DuckDB types (``id`` and internal columns left out)."""
        return self.tables.fields()

    def spaces(self) -> dict[str, VectorSpace]:
        return self.tables.spaces()

    def forget_schema(self) -> None:
        """Drop the cached fields and spaces (after a write that changed them)."""
        self.tables.forget_schema()

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
        language: str = AUTO,
    ) -> VectorSpace:
        """The space ``name``, created on first use; an existing one must have the same encoder.

        ``language`` is that of a text space's keyword index (analysers.py): ``auto`` detects
        it from the texts at its first BM25 build, and leaves an existing space's alone; a code
        other than an existing space's records it, and its BM25 index is rebuilt."""
        validate_space_name(name)
        if metric not in METRICS:
            raise InvalidInputError(f"unknown metric {metric!r}; use one of {list(METRICS)}")
        language = check_language(language)
        if name not in self.spaces():
            self.tables.create_space(name, encoder, source_fields, metric, chunk_words,
                                     recall_target, language if encoder.modality == "text" else None)
        existing = self.space(name)
        existing.check_encoder(encoder)
        if language != AUTO and existing.encoder.modality == "text" \
                and language != (existing.language or "en"):
            log.info("%s/%s: keyword language %s -> %s; its BM25 index will be rebuilt",
                     self.name, name, existing.language or "en", language)
            self.tables.db.set_language(self.name, name, language)
            self.forget_schema()
            existing = self.space(name)
        return existing

    # -- writing ----------------------------------------------------------------------------
    def upsert(self, items: Iterable[Item], *, field_updates: Iterable[FieldUpdate] = (),
               spaces: Iterable[str] = ()) -> int:
        """Insert or replace items by id, with their vectors, in one transaction; returns the
        count. ``field_updates`` (of other, stored items) go in the same transaction; see
        ``update_fields``.

        A replaced item's vectors are replaced in the spaces the items bring vectors in and in
        ``spaces`` (those this write encodes: there, an item without vectors has none left). In
        the collection's other spaces it keeps its vectors unless the fields they were made
        from changed (then they are removed, with a warning)."""
        batch = list({item.id: item for item in items}.values())  # last one of an id wins
        updates = self._checked_updates(field_updates)
        if not batch and not updates:
            return 0
        rows = [NewItem(_check_id(item.id), item.fields, item.content_hash) for item in batch]
        known = self.spaces()
        vectors = {name: self._vector_rows(known, name, batch)
                   for name in {s for item in batch for s in item.vectors}}
        self.tables.replace(rows, vectors, updates, rebuilt=list(spaces))
        return len(batch)

    def update_fields(self, updates: Iterable[FieldUpdate]) -> int:
        """Set or remove fields of stored items by id, in one transaction; returns the count.

        No vector changes, so no encoder runs and the indexes stay as they are; filters and
        fetched fields see the new values at once. An id that is not stored, or a field that a
        vector space is made from (its vectors would no longer match it: upsert the item, or
        ingest it again, instead), is refused before anything is written. Several updates of
        one id: the last one wins."""
        batch = self._checked_updates(updates)
        if batch:
            self.tables.replace([], {}, batch)
        return len(batch)

    def _checked_updates(self, updates: Iterable[FieldUpdate]) -> list[FieldUpdate]:
        batch = list({update.id: update for update in updates}.values())
        if not batch:
            return batch
        missing = sorted({u.id for u in batch} - set(self.existing_ids([u.id for u in batch])))
        if missing:
            shown = ", ".join(repr(i) for i in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise NotFoundError(f"no item {shown}{more} in collection {self.name!r}; "
                                "add new items with upsert or ingest, not update_fields")
        encoded = {f: s.name for s in self.spaces().values() for f in s.source_fields}
        for update in batch:
            for name in [*update.values, *update.remove]:
                if name in encoded:
                    raise InvalidInputError(
                        f"item {update.id!r}: field {name!r} is what vector space "
                        f"{encoded[name]!r} is made from, so changing it alone would leave "
                        "stale vectors; upsert or ingest the item again to change it")
        return batch

    def _vector_rows(self, spaces: dict[str, VectorSpace], name: str, batch: list[Item]
                     ) -> VectorRows:
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
        return VectorRows(owners, chunks, spans, normalise_for(space, stacked))

    def delete(self, ids: Sequence[str] | None = None, *, where: FilterInput = None) -> int:
        """Delete items by id, or every item a filter matches; returns how many were deleted."""
        if (ids is None) == (where is None):
            raise InvalidInputError("pass either ids or where= to delete, not both or neither")
        targets = list(ids) if ids is not None else self.ids_matching(where)
        present = self.existing_ids(targets)
        if present:
            self.tables.remove(present)
        return len(present)

    # -- reading ----------------------------------------------------------------------------
    def generation(self) -> int:
        """The collection's write count; raises NotFoundError once it has been dropped."""
        return self.tables.generation()

    def exists(self) -> bool:
        """False once the collection has been dropped (even if another took its name)."""
        return self.tables.exists()

    def count(self) -> int:
        return self.tables.count()

    def count_vectors(self, space: str) -> int:
        return self.tables.count_vectors(self.space(space).name)

    def get(self, ids: Sequence[str]) -> list[Item]:
        """Items by id, in the order asked; ids that do not exist are left out."""
        found = self.fields_of(ids)
        return [Item(id=i, fields=found[i]) for i in ids if i in found]

    def fields_of(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Every field of the given items, by id."""
        return self.tables.fields_of(ids)

    def field_values(self, name: str, ids: Sequence[str]) -> list[Any]:
        """One field of many items, in the order of ``ids`` (None where an item lacks it): the
        analyses read one text field of thousands of items, which ``fields_of`` would read whole."""
        if name not in self.fields():
            raise NotFoundError(f"collection {self.name!r} has no field {name!r}; fields: "
                                f"{', '.join(self.fields()) or 'none'}")
        return self.tables.field_values(name, ids)

    def existing_ids(self, ids: Sequence[str]) -> list[str]:
        return self.tables.existing_ids(ids)

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str | None]:
        """Stored content hash of each item that exists (ingest skips unchanged items)."""
        return self.tables.content_hashes(ids)

    def ids_matching(self, where: FilterInput) -> list[str]:
        return self.tables.ids_matching(where)

    def vector_blocks(
        self, space: str, *, after_seq: int = 0, ids: Sequence[str] | None = None,
        block: int = VECTOR_BLOCK, cursor: duckdb.DuckDBPyConnection | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
        """Stored vectors in blocks ``(seqs (b,), vectors (b, dim) float32, item ids)``."""
        return self.tables.vector_blocks(self.space(space).name, after_seq=after_seq, ids=ids,
                                         block=block, cursor=cursor)

    def vector_seqs(self, space: str, ids: Sequence[str]) -> np.ndarray:
        """The seqs of the given items' vectors (no vectors read: a filter may match many)."""
        return self.tables.vector_seqs(self.space(space).name, ids)

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
            self._indexes[vs.name] = IndexKeeper(self.tables, vs, self.index_folder,
                                                 self.memory_budget)
        return self._indexes[vs.name]

    def lexical(self, space: str | None = None) -> LexicalKeeper:
        """The BM25 index over a space's source fields (rebuilt when the collection changed)."""
        vs = self.space(space)
        if vs.name not in self._lexical:
            self._lexical[vs.name] = LexicalKeeper(self.tables, vs, self.index_folder)
        return self._lexical[vs.name]

    def refresh(self) -> None:
        """Bring every index up to date and save it; the pipeline calls this after an ingest
        so the first query does not pay for it."""
        self.catch_up()
        self.save_indexes()

    def catch_up(self) -> None:
        """Bring every index (FAISS, and BM25 for text spaces) up to date, in memory only: a
        server writing small batches saves its files now and then, since the database is the
        record and an index behind it is caught up on open."""
        for name, space in self.spaces().items():
            self.index(name).refresh()
            if space.encoder.modality == "text":
                self.lexical(name).catch_up()

    def save_indexes(self) -> None:
        for keeper in self._indexes.values():
            keeper.save()
        for lexical in self._lexical.values():
            lexical.save()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, items={self.count()}, "
                f"spaces={list(self.spaces())})")


def _check_id(item_id: Any) -> str:
    if not isinstance(item_id, str) or not item_id.strip():
        raise InvalidInputError(f"item id {item_id!r} must be a non-empty string")
    return item_id
