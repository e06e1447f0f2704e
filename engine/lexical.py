"""BM25 over a space's source fields, with bm25s (sparse-matrix BM25) and PyStemmer.

DuckDB's fts extension would do this inside the database, but extensions cannot be installed
offline; bm25s is a pip package, fast, and matches the reference BM25 figures of the eval data.
bm25s cannot update an index in place, so the index is rebuilt when its collection changed (a few
seconds for 30k documents) and saved beside the FAISS files with the generation it reflects.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from .spaces import VectorSpace
from .storage import CollectionTables

if TYPE_CHECKING:
    import bm25s

__all__ = ["SYNC_REBUILD_LIMIT", "LexicalIndex", "LexicalKeeper", "tokenize"]

log = logging.getLogger(__name__)

# Below this many documents a stale index is rebuilt on the spot (well under a second).
SYNC_REBUILD_LIMIT = 20_000


@functools.cache
def _bm25s() -> ModuleType:
    """bm25s, imported on first use (it brings scipy: most commands never need it)."""
    import bm25s

    # bm25s sets its own logger to DEBUG on import, which prints a line on every index build.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


@functools.cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lower-cased words of two or more characters, English stop words removed, stemmed."""
    return _bm25s().tokenize(list(texts), stopwords="en", stemmer=_stemmer(), return_ids=False,
                             show_progress=False)


class LexicalIndex:
    """A BM25 index of documents identified by item id."""

    def __init__(self, ids: list[str], bm25: bm25s.BM25, generation: int) -> None:
        self.ids = ids
        self.bm25 = bm25
        self.generation = generation
        self._position = {item_id: i for i, item_id in enumerate(ids)}

    @classmethod
    def build(cls, ids: list[str], texts: Iterable[str], generation: int) -> LexicalIndex:
        bm25 = _bm25s().BM25()
        tokens = _bm25s().tokenize(list(texts), stopwords="en", stemmer=_stemmer(),
                                   show_progress=False)
        if not tokens.vocab:  # no words at all (or no items): bm25s cannot index that
            return cls([], bm25, generation)
        bm25.index(tokens, show_progress=False)
        return cls(ids, bm25, generation)

    def search(
        self, query: str, k: int, allowed: set[str] | None = None
    ) -> list[tuple[str, float]]:
        """Top ``k`` ``(id, score)`` with a positive BM25 score, best first."""
        tokens = tokenize([query])
        if not self.ids or not tokens[0]:
            return []
        mask = None
        if allowed is not None:
            mask = np.zeros(len(self.ids), dtype=np.float32)
            mask[[self._position[i] for i in allowed if i in self._position]] = 1.0
        k = min(k, len(self.ids))
        docs, scores = self.bm25.retrieve(tokens, k=k, weight_mask=mask, show_progress=False,
                                          n_threads=1)
        return [(self.ids[d], float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


class LexicalKeeper:
    """Owns the BM25 index of one space; rebuilds it when the collection's generation moved.

    Small indexes are rebuilt on the spot. A large one (a rebuild takes seconds: 2.6 s at 33k
    documents) is rebuilt in a background thread while searches keep using the previous one;
    ``current`` says whether what it returns is stale, so callers can drop deleted items.
    """

    def __init__(self, tables: CollectionTables, space: VectorSpace, folder: Path | None) -> None:
        self.tables = tables
        self.space = space
        self.folder = None if folder is None else folder / f"{space.name}.bm25"
        self._index: LexicalIndex | None = None
        self._saved_generation = -1
        self._lock = threading.Lock()
        self._rebuild: threading.Thread | None = None

    def current(self) -> tuple[LexicalIndex, bool]:
        """The index and whether it is fresh (False: a rebuild is under way in the background)."""
        with self._lock:
            generation = self.tables.generation()
            if self._index is None:
                self._index = self._load(generation)
            if self._index is None:
                self._index = self._build(generation)
            if self._index.generation == generation:
                return self._index, True
            if len(self._index.ids) < SYNC_REBUILD_LIMIT:
                self._index = self._build(generation)
                return self._index, True
            if self._rebuild is None or not self._rebuild.is_alive():
                self._rebuild = threading.Thread(target=self._rebuild_in_background,
                                                 args=(generation,), daemon=True,
                                                 name=f"bm25-{self.tables.name}")
                self._rebuild.start()
            return self._index, False

    def wait(self) -> None:
        """Block until a background rebuild (if any) has finished."""
        thread = self._rebuild
        if thread is not None:
            thread.join()

    def _rebuild_in_background(self, generation: int) -> None:
        try:
            rebuilt = self._build(generation)
        except Exception:  # a failed rebuild must not kill searches: they keep the old index
            log.exception("background BM25 rebuild of %s/%s failed", self.tables.name,
                          self.space.name)
            return
        with self._lock:
            if self._index is None or rebuilt.generation > self._index.generation:
                self._index = rebuilt

    def _build(self, generation: int) -> LexicalIndex:
        rows = self.tables.texts(self.space.source_fields)
        log.info("building BM25 index of %s/%s over %d items", self.tables.name,
                 self.space.name, len(rows))
        return LexicalIndex.build([r[0] for r in rows], (r[1] for r in rows), generation)

    def _load(self, generation: int) -> LexicalIndex | None:
        folder = self.folder
        if folder is None or not (folder / "kinsight.json").exists():
            return None
        try:
            state = json.loads((folder / "kinsight.json").read_text())
            if state.get("collection_uid", "") != self.tables.uid:
                log.warning("%s: built from another collection named %r (a dropped one); "
                            "rebuilding", folder, self.tables.name)
                return None
            if state["generation"] != generation:
                return None
            index = LexicalIndex(state["ids"], _bm25s().BM25.load(str(folder)), generation)
        except (OSError, ValueError, KeyError) as e:
            log.warning("BM25 index at %s is unreadable (%s); rebuilding", folder, e)
            return None
        self._saved_generation = generation
        return index

    def save(self) -> None:
        folder, index = self.folder, self._index
        if folder is None or index is None or not index.ids \
                or index.generation == self._saved_generation or self.tables.db.read_only \
                or not self.tables.exists():  # a dropped collection's files: swept anyway
            return
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        index.bm25.save(str(tmp), show_progress=False)
        # The state file goes last: a folder without it is ignored and rebuilt.
        (tmp / "kinsight.json").write_text(json.dumps(
            {"generation": index.generation, "collection_uid": self.tables.uid,
             "ids": index.ids}))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        self._saved_generation = index.generation
