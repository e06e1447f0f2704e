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

import numpy as np
import pyarrow as pa

from .errors import NotFoundError
from .index_policy import IndexSpec, choose_index
from .spaces import VectorSpace
from .storage import CollectionTables
from .vector_index import VectorIndex, gpu_count

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
    """Owns the FAISS index of one space of one collection, and its chunk map; its file lives
    in ``folder`` (None: in memory only); ``memory_budget`` (bytes) caps it (see index_policy)."""

    def __init__(self, tables: CollectionTables, space: VectorSpace, folder: Path | None,
                 memory_budget: int | None = None) -> None:
        self.tables = tables
        self.space = space
        self.folder = folder
        self.memory_budget = memory_budget
        self._index: VectorIndex | None = None
        self._saved_generation = -1
        self._lock = ReadWriteLock()
        self._update_lock = threading.Lock()
        self._chunks = ChunkMap()
        self._chunks_lock = threading.Lock()

    @property
    def path(self) -> Path | None:
        return None if self.folder is None else self.folder / f"{self.space.name}.faiss"

    def policy(self, n: int) -> IndexSpec:
        return choose_index(n, self.space.dim, memory_budget=self.memory_budget,
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
                self._chunks.extend(self.tables.chunk_rows(self.space.name, self._chunks.max_seq))
            return self._chunks.lookup(seqs)

    def refresh(self) -> None:
        """Catch up, and rebuild if the collection has outgrown the index type (policy)."""
        index = self._catch_up()
        if self.policy(index.ntotal).factory != index.spec.factory:
            log.info("%s/%s: %d vectors now call for %s instead of %s; rebuilding",
                     self.tables.name, self.space.name, index.ntotal,
                     self.policy(index.ntotal).factory, index.spec.factory)
            rebuilt = self._build()
            with self._lock.writing():
                self._index = rebuilt

    def save(self) -> None:
        """Write the index file if it changed, then forget deletions it already reflects."""
        index, path = self._index, self.path
        if index is None or path is None or index.generation == self._saved_generation:
            return
        if self.tables.db.read_only or not self.tables.exists():
            return  # a dropped collection's files would only be swept again
        with self._lock.reading():
            index.save(path)
        self._saved_generation = index.generation
        self.tables.forget_deletions(self.space.name, index.generation)

    # -- catching up ------------------------------------------------------------------------
    def _catch_up(self) -> VectorIndex:
        """The index, loaded or built if need be, caught up with the store's generation."""
        with self._update_lock:
            generation = self.tables.generation()
            index = self._index if self._index is not None else self._load()
            if index is None:
                index = self._build()
            elif index.generation != generation and not self._apply_changes(index):
                log.warning("%s/%s: index disagrees with the store; rebuilding",
                            self.tables.name, self.space.name)
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
        if index.collection_uid != self.tables.uid:
            log.warning("%s: built from another collection named %r (a dropped one); rebuilding",
                        path, self.tables.name)
            return None
        if index.fingerprint != self.space.encoder.fingerprint \
                or index.dim != self.space.dim or index.metric != self.space.metric:
            return None
        self._saved_generation = index.generation
        return index

    def _apply_changes(self, index: VectorIndex) -> bool:
        """Bring ``index`` to the store's state in place; False if it cannot be trusted."""
        name = self.space.name
        # One snapshot: the generation, the deletions and the additions agree.
        with self.tables.snapshot() as cur:
            uid, generation = self.tables.db.version_in(cur, self.tables.name)
            if uid != self.tables.uid:
                raise NotFoundError(f"collection {self.tables.name!r} was dropped while it was "
                                    "being searched; open it again with store.collection")
            if generation < index.generation:
                return False  # the index is ahead of the database: never trust it
            deleted = self.tables.deleted_seqs(cur, name, index.generation, index.max_seq)
            stored = self.tables.count_vectors(name, cursor=cur)
            blocks = list(self.tables.vector_blocks(name, after_seq=index.max_seq, cursor=cur))
        with self._lock.writing():
            index.remove(deleted)
            for seqs, vectors, _ in blocks:
                index.add(seqs, vectors)
            index.generation = int(generation)
        return index.ntotal == stored

    def _build(self) -> VectorIndex:
        generation = self.tables.generation()
        n = self.tables.count_vectors(self.space.name)
        spec = self.policy(n)
        index = VectorIndex(spec, self.space.dim, self.space.metric,
                            self.space.encoder.fingerprint, self.tables.uid)
        if index.needs_training:
            index.train(self.tables.vector_sample(
                self.space.name, max(TRAINING_MINIMUM, TRAINING_PER_LIST * spec.nlist)))
        for seqs, vectors, _ in self.tables.vector_blocks(self.space.name):
            index.add(seqs, vectors)
        index.generation = generation
        if not self.tables.db.read_only:  # the catalog says which index a space has
            self.tables.db.set_index_spec(self.tables.name, self.space.name, spec.factory)
            self.tables.forget_schema()
        log.info("built %s index for %s/%s over %d vectors (%s)", spec.factory,
                 self.tables.name, self.space.name, index.ntotal, spec.reason)
        return index

