"""Keeps a space's FAISS index in step with the database it is derived from.

An index records the collection it was built from (its uid, new for every created collection),
the collection generation and the highest vector ``seq`` it holds. Before each search the keeper
compares that generation with the database's: when they differ it removes the vectors logged as
deleted since, and adds those with a higher ``seq`` (the catch-up); when the index is missing,
unreadable, built from another collection of the same name, built for other weights, or its count
disagrees with the table, it is rebuilt from the database. Writers never touch indexes, so a crash
at any moment can only leave an index behind, never ahead or wrong; and searches read each hit's
row after the index answered, so an index that lags never returns a deleted item.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from .errors import NotFoundError
from .index_policy import IndexSpec, choose_index
from .schema import quote
from .spaces import VectorSpace
from .vector_index import VectorIndex, gpu_count

if TYPE_CHECKING:
    from .collection import Collection

__all__ = ["ChunkMap", "ChunkRow", "IndexKeeper", "ReadWriteLock"]

log = logging.getLogger(__name__)

# Vectors to train IVF centroids on: FAISS wants at least 39 per list and gains little past 256;
# 64 per list (and at least 65,536) keeps its warning away without slowing training much.
TRAINING_PER_LIST = 64
TRAINING_MINIMUM = 65_536


class ReadWriteLock:
    """Many searches at once, or one catch-up alone (FAISS indexes are not safe to mutate while
    searched). The standard library has no such lock."""

    def __init__(self) -> None:
        self._readers = 0
        self._cond = threading.Condition()

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._readers == 0)
            yield


ChunkRow = tuple[str, int, int | None, int | None]  # item id, chunk number, start, end


class ChunkMap:
    """Which item and chunk each vector ``seq`` belongs to, in memory so a search needs no query.

    A ``seq`` is never reused, so rows are only ever appended: the entry of a removed row is
    harmless, since FAISS no longer returns its seq.
    """

    def __init__(self) -> None:
        self.seqs = np.zeros(0, np.int64)
        self.ids = np.zeros(0, object)
        self.spans = np.zeros((0, 3), np.int64)  # chunk, start, end (-1 for none)
        self.max_seq = 0

    def extend(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self.seqs = np.concatenate([self.seqs, table.column("seq").to_numpy()])
        self.ids = np.concatenate([self.ids, np.array(table.column("id").to_pylist(), object)])
        spans = np.stack([table.column(c).fill_null(-1).to_numpy()
                          for c in ("chunk", "start_char", "end_char")], axis=1)
        self.spans = np.concatenate([self.spans, spans.astype(np.int64)])
        self.max_seq = int(self.seqs[-1])

    def lookup(self, seqs: np.ndarray) -> dict[int, ChunkRow]:
        at = np.searchsorted(self.seqs, seqs)
        found: dict[int, ChunkRow] = {}
        for seq, i in zip(seqs.tolist(), at.tolist(), strict=True):
            if i < len(self.seqs) and self.seqs[i] == seq:
                chunk, start, end = self.spans[i].tolist()
                found[seq] = (self.ids[i], chunk, None if start < 0 else start,
                              None if end < 0 else end)
        return found


class IndexKeeper:
    """Owns the FAISS index of one space of one collection, and its chunk map."""

    def __init__(self, collection: Collection, space: VectorSpace) -> None:
        self.collection = collection
        self.space = space
        self._index: VectorIndex | None = None
        self._saved_generation = -1
        self._lock = ReadWriteLock()
        self._update_lock = threading.Lock()
        self._chunks = ChunkMap()
        self._chunks_lock = threading.Lock()

    @property
    def path(self) -> Path | None:
        folder = self.collection.index_folder
        return None if folder is None else folder / f"{self.space.name}.faiss"

    def policy(self, n: int) -> IndexSpec:
        return choose_index(n, self.space.dim, memory_budget=self.collection.store.memory_budget,
                            recall_target=self.space.recall_target,
                            gpu_available=gpu_count() > 0)

    # -- use --------------------------------------------------------------------------------
    @contextmanager
    def searching(self) -> Iterator[VectorIndex]:
        """The index, caught up with the store, held for reading while the block runs."""
        index = self._catch_up()
        with self._lock.reading():
            yield index

    def chunks_of(self, seqs: np.ndarray) -> dict[int, ChunkRow]:
        """Item and chunk of each seq (seqs not stored, e.g. deleted since, are left out)."""
        with self._chunks_lock:
            wanted = int(seqs.max()) if len(seqs) else 0
            if wanted > self._chunks.max_seq:
                table = f"{quote(self.collection.name)}.{quote(self.space.table)}"
                self._chunks.extend(self.collection.store.cursor().sql(
                    f"SELECT seq, id, chunk, start_char, end_char FROM {table} WHERE seq > ? "
                    "ORDER BY seq", params=[self._chunks.max_seq]).to_arrow_table())
            return self._chunks.lookup(seqs)

    def refresh(self) -> None:
        """Catch up, and rebuild if the collection has outgrown the index type (policy)."""
        index = self._catch_up()
        if self.policy(index.ntotal).factory != index.spec.factory:
            log.info("%s/%s: %d vectors now call for %s instead of %s; rebuilding",
                     self.collection.name, self.space.name, index.ntotal,
                     self.policy(index.ntotal).factory, index.spec.factory)
            rebuilt = self._build()
            with self._lock.writing():
                self._index = rebuilt

    def save(self) -> None:
        """Write the index file if it changed, then forget deletions it already reflects."""
        index, path = self._index, self.path
        if index is None or path is None or index.generation == self._saved_generation:
            return
        if self.collection.store.read_only or not self.collection.exists():
            return  # a dropped collection's files would only be swept again
        with self._lock.reading():
            index.save(path)
        self._saved_generation = index.generation
        with self.collection.store.writing() as con:
            con.execute(f"DELETE FROM {quote(self.collection.name)}.deleted "
                        "WHERE space = ? AND generation <= ?", [self.space.name, index.generation])

    # -- catching up ------------------------------------------------------------------------
    def _catch_up(self) -> VectorIndex:
        """The index, loaded or built if need be, caught up with the store's generation."""
        with self._update_lock:
            generation = self.collection.generation()
            index = self._index if self._index is not None else self._load()
            if index is None:
                index = self._build()
            elif index.generation != generation and not self._apply_changes(index):
                log.warning("%s/%s: index disagrees with the store; rebuilding",
                            self.collection.name, self.space.name)
                index = self._build()
            if index is not self._index:
                with self._lock.writing():
                    self._index = index
            return index

    def _load(self) -> VectorIndex | None:
        path = self.path
        if path is None or not path.exists():
            return None
        index = VectorIndex.load(path, self.policy(0))
        if index is None:
            return None
        if index.collection_uid != self.collection.uid:
            log.warning("%s: built from another collection named %r (a dropped one); rebuilding",
                        path, self.collection.name)
            return None
        if index.fingerprint != self.space.encoder.fingerprint \
                or index.dim != self.space.dim or index.metric != self.space.metric:
            return None
        self._saved_generation = index.generation
        return index

    def _apply_changes(self, index: VectorIndex) -> bool:
        """Bring ``index`` to the store's state in place; False if it cannot be trusted."""
        cur = self.collection.store.cursor()
        schema = quote(self.collection.name)
        cur.begin()  # one snapshot: the generation, the deletions and the additions agree
        try:
            # fetchall, not fetchone: DuckDB refuses new work on a cursor with a result open.
            uid, generation = self.collection.store.version_in(cur, self.collection.name)
            if uid != self.collection.uid:
                raise NotFoundError(f"collection {self.collection.name!r} was dropped while it "
                                    "was being searched; open it again with store.collection")
            if generation < index.generation:
                return False  # the index is ahead of the database: never trust it
            deleted = cur.execute(
                f"SELECT seq FROM {schema}.deleted WHERE space = ? AND generation > ? "
                "AND seq <= ?", [self.space.name, index.generation, index.max_seq]).fetchnumpy()
            stored = cur.execute(f"SELECT count(*) FROM {schema}.{quote(self.space.table)}"
                                 ).fetchall()[0][0]
            blocks = list(self.collection.vector_blocks(self.space.name, after_seq=index.max_seq,
                                                        cursor=cur))
        finally:
            cur.commit()
        with self._lock.writing():
            index.remove(np.asarray(deleted["seq"], dtype=np.int64))
            for seqs, vectors, _ in blocks:
                index.add(seqs, vectors)
            index.generation = int(generation)
        return index.ntotal == stored

    def _build(self) -> VectorIndex:
        store = self.collection.store
        generation = self.collection.generation()
        n = self.collection.count_vectors(self.space.name)
        spec = self.policy(n)
        index = VectorIndex(spec, self.space.dim, self.space.metric,
                            self.space.encoder.fingerprint, self.collection.uid)
        if index.needs_training:
            index.train(self._training_sample(max(TRAINING_MINIMUM,
                                                  TRAINING_PER_LIST * spec.nlist)))
        for seqs, vectors, _ in self.collection.vector_blocks(self.space.name):
            index.add(seqs, vectors)
        index.generation = generation
        if not store.read_only:  # the catalog says which index a space has (no generation bump)
            with store.writing() as con:
                con.execute("UPDATE kinsight.spaces SET index_spec = ? WHERE collection = ? "
                            "AND name = ?", [spec.factory, self.collection.name, self.space.name])
            self.collection.forget_schema()
        log.info("built %s index for %s/%s over %d vectors (%s)", spec.factory,
                 self.collection.name, self.space.name, index.ntotal, spec.reason)
        return index

    def _training_sample(self, size: int) -> np.ndarray:
        table = f"{quote(self.collection.name)}.{quote(self.space.table)}"
        arrow = self.collection.store.cursor().sql(
            f"SELECT vec FROM {table} USING SAMPLE {int(size)} ROWS").to_arrow_table()
        column = arrow.column("vec").combine_chunks()
        return column.values.to_numpy(zero_copy_only=False).reshape(-1, self.space.dim)
