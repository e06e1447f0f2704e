"""BM25 over a space's source fields, with bm25s (sparse-matrix BM25), analysed in the space's
language (see analysers.py: Snowball stemmers, CJK bigrams).

DuckDB's fts extension would do this inside the database, but extensions cannot be installed
offline; bm25s is a pip package, fast, and matches the reference BM25 figures of the eval data.
bm25s cannot update an index in place, so the index is rebuilt when its collection changed (a few
seconds for 30k documents) and saved beside the FAISS files with the generation it reflects,
the analyser that built it and its BM25 parameters; a space whose language changed, or a folder
built with other parameters than ``BM25_PARAMETERS``, is rebuilt.

``free_text_fields`` says which fields of a collection hold free text (words to weigh, as
opposed to codes, names and labels): the one rule the analyses that read words beside the
vectors share.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .analysers import AUTO, Analyser, analyser_for, detect_language, load_bm25s
from .errors import InvalidInputError
from .spaces import VectorSpace
from .storage import CollectionTables

if TYPE_CHECKING:
    import bm25s

__all__ = ["BM25_PARAMETERS", "FREE_TEXT_SAMPLE", "FREE_TEXT_WORDS", "SYNC_REBUILD_LIMIT",
           "LexicalIndex", "LexicalKeeper", "field_texts", "free_text_fields"]

log = logging.getLogger(__name__)

# Below this many documents a stale index is rebuilt on the spot (well under a second).
SYNC_REBUILD_LIMIT = 20_000
# bm25s's defaults, written out so that the saved folders record them (kinsight.json) and a
# change here rebuilds every folder saved with others: k1 0.9 beat 1.5 on the Debian dev half
# (README, How the default fusion was chosen), not adopted until checked on other languages.
BM25_PARAMETERS = {"k1": 1.5, "b": 0.75}
# A string field is free text when its values average at least this many words (Debian's
# one-line ``title`` averages ~5, its ``section``, ``source`` and ``family`` one), measured on a
# seeded sample of at most FREE_TEXT_SAMPLE items: the same answer at any size, in milliseconds.
FREE_TEXT_WORDS = 2.0
FREE_TEXT_SAMPLE = 2000


def free_text_fields(tables: CollectionTables, exclude: Collection[str] = ()) -> list[str]:
    """The collection's fields of free text, in schema order: string (``VARCHAR``) fields not in
    ``exclude`` (the label field; the source fields a caller reads otherwise) whose non-empty
    values average at least ``FREE_TEXT_WORDS`` whitespace-separated words over a seeded sample
    of at most ``FREE_TEXT_SAMPLE`` items. A field no sampled item has is not free text."""
    candidates = [name for name, kind in tables.fields().items()
                  if kind == "VARCHAR" and name not in exclude]
    if not candidates:
        return []
    ids = sorted(tables.ids_matching(None))
    if len(ids) > FREE_TEXT_SAMPLE:
        rows = np.random.default_rng(0).choice(len(ids), FREE_TEXT_SAMPLE, replace=False)
        ids = [ids[i] for i in np.sort(rows)]
    chosen = []
    for name in candidates:
        words = [len(value.split()) for value in tables.field_values(name, ids)
                 if value is not None and value.strip()]
        if words and float(np.mean(words)) >= FREE_TEXT_WORDS:
            chosen.append(name)
    return chosen



def field_texts(tables: CollectionTables, names: Sequence[str], ids: Sequence[str]
                ) -> dict[str, list[str]]:
    """The values of the fields ``names`` of the items ``ids``, as text ("" where null), by
    field: what the analyses reading free-text fields beside the vectors are given."""
    return {name: ["" if value is None else str(value)
                   for value in tables.field_values(name, ids)] for name in names}


class LexicalIndex:
    """A BM25 index of documents identified by item id, and the analyser of its terms."""

    def __init__(self, ids: list[str], bm25: bm25s.BM25, generation: int,
                 analyser: Analyser) -> None:
        self.ids = ids
        self.bm25 = bm25
        self.generation = generation
        self.analyser = analyser
        self._position = {item_id: i for i, item_id in enumerate(ids)}

    @classmethod
    def build(cls, ids: list[str], texts: Iterable[str], generation: int,
              analyser: Analyser) -> LexicalIndex:
        bm25 = load_bm25s().BM25(**BM25_PARAMETERS)
        tokens = analyser.corpus(list(texts))
        if not tokens.vocab:  # no words at all (or no items): bm25s cannot index that
            return cls([], bm25, generation, analyser)
        bm25.index(tokens, show_progress=False)
        return cls(ids, bm25, generation, analyser)

    def search(
        self, query: str, k: int, allowed: set[str] | None = None
    ) -> list[tuple[str, float]]:
        """Top ``k`` ``(id, score)`` with a positive BM25 score, best first; the query is
        analysed like the documents."""
        tokens = self.analyser.tokens([query])
        if not self.ids or not tokens[0]:
            return []
        mask = None
        if allowed is not None:
            mask = np.zeros(len(self.ids), dtype=np.float32)
            mask[[self._position[i] for i in allowed if i in self._position]] = 1.0
        k = min(k, len(self.ids))
        # n_threads=0 scores in this thread; any other value starts a thread pool per call
        # (0.1 ms on an idle machine, several ms on a loaded one, for a single query).
        docs, scores = self.bm25.retrieve(tokens, k=k, weight_mask=mask, show_progress=False,
                                          n_threads=0)
        return [(self.ids[d], float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


class LexicalKeeper:
    """Owns the BM25 index of one space; rebuilds it when the collection's generation moved or
    the space's language changed.

    Small indexes are rebuilt on the spot. A large one (a rebuild takes seconds: 2.6 s at 33k
    documents) is rebuilt in a background thread while searches keep using the previous one;
    ``current`` says whether what it returns is stale, so callers can drop deleted items. A
    writer's ``catch_up`` rebuilds in that thread too, whatever the size, and waits for it: a
    search during a server's upsert never waits for the rebuild (150 ms at 2,000 documents). A
    space whose language is ``auto`` gets it detected from its texts at the first build that
    has any, and recorded in the catalog (in memory only, in a read-only store).
    """

    def __init__(self, tables: CollectionTables, space: VectorSpace, folder: Path | None) -> None:
        self.tables = tables
        self.space = space
        self.folder = None if folder is None else folder / f"{space.name}.bm25"
        self._index: LexicalIndex | None = None
        self._saved: tuple[int, str] | None = None  # generation and analyser of the files
        self._lock = threading.Lock()
        self._rebuild: threading.Thread | None = None

    def language(self) -> str | None:
        """The space's language as the catalog has it now (it can change after this keeper was
        made); None for a space made before languages were recorded (English)."""
        space = self.tables.spaces().get(self.space.name, self.space)
        return space.language

    def _fits(self, generation: int, analyser: Analyser, now: int) -> bool:
        """Whether an index of ``generation`` built by ``analyser`` serves the space ``now``
        (``auto``: whichever analyser the detection chose)."""
        language = self.language()
        return generation == now and (language == AUTO or analyser == analyser_for(language))

    def current(self) -> tuple[LexicalIndex, bool]:
        """The index and whether it is fresh (False: a rebuild is under way in the background)."""
        with self._lock:
            generation = self.tables.generation()
            if self._index is None:
                self._index = self._load(generation)
            if self._index is None:
                self._index = self._build(generation)
            if self._fits(self._index.generation, self._index.analyser, generation):
                return self._index, True
            if self._rebuild is not None and self._rebuild.is_alive():
                return self._index, False  # a writer's catch_up (or a large index) is rebuilding
            if len(self._index.ids) < SYNC_REBUILD_LIMIT:
                self._index = self._build(generation)
                return self._index, True
            if self._rebuild is None or not self._rebuild.is_alive():
                self._rebuild = threading.Thread(target=self._rebuild_in_background,
                                                 args=(generation,), daemon=True,
                                                 name=f"bm25-{self.tables.name}")
                self._rebuild.start()
            return self._index, False

    def catch_up(self) -> None:
        """Bring the index up to date before returning, building it in a thread outside the
        lock ``current`` takes: searches meanwhile go on with the previous index (stale) instead
        of waiting for the new one. A failed build is logged and left to the next ``current``."""
        while True:
            with self._lock:
                generation = self.tables.generation()
                if self._index is None:
                    self._index = self._load(generation)
                if self._index is None:  # nothing to serve meanwhile: build it here
                    self._index = self._build(generation)
                if self._fits(self._index.generation, self._index.analyser, generation):
                    return
                thread = self._rebuild
                started = thread is None or not thread.is_alive()
                if started:
                    thread = self._rebuild = threading.Thread(
                        target=self._rebuild_in_background, args=(generation,), daemon=True,
                        name=f"bm25-{self.tables.name}")
                    thread.start()
            assert thread is not None
            thread.join()
            if started:  # built for this generation (or failed, logged): done
                return

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
        with self._lock:  # not older than the one in use (a language change keeps generation)
            if self._index is None or rebuilt.generation >= self._index.generation:
                self._index = rebuilt

    def _build(self, generation: int) -> LexicalIndex:
        rows = self.tables.texts(self.space.source_fields)
        language = self.language()
        if language == AUTO and rows:
            language = detect_language([r[1] for r in rows])
            log.info("%s/%s: texts detected as %r", self.tables.name, self.space.name, language)
            if not self.tables.db.read_only:
                self.tables.db.set_language(self.tables.name, self.space.name, language)
                self.tables.forget_schema()
        analyser = analyser_for(language)
        log.info("building BM25 index of %s/%s over %d items (%s)", self.tables.name,
                 self.space.name, len(rows), analyser.name)
        return LexicalIndex.build([r[0] for r in rows], (r[1] for r in rows), generation,
                                  analyser)

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
            # Folders saved before analysers were recorded were all built by the English one.
            analyser = analyser_for(state.get("language", "en"))
            # Folders saved before parameters were recorded were built with bm25s's defaults.
            built_with = state.get("bm25", {"k1": 1.5, "b": 0.75})
            if state.get("analyser", analyser.name) != analyser.name \
                    or not self._fits(state["generation"], analyser, generation):
                return None  # stale, or built by another analyser (or by an older definition)
            if built_with != BM25_PARAMETERS:
                log.info("%s: built with BM25 %s, not %s; rebuilding", folder, built_with,
                         BM25_PARAMETERS)
                return None
            index = LexicalIndex(state["ids"], load_bm25s().BM25.load(str(folder)),
                                 generation, analyser)
        except (OSError, ValueError, KeyError, InvalidInputError) as e:
            log.warning("BM25 index at %s is unreadable (%s); rebuilding", folder, e)
            return None
        self._saved = (index.generation, analyser.name)
        return index

    def save(self) -> None:
        folder, index = self.folder, self._index
        if folder is None or index is None or not index.ids \
                or (index.generation, index.analyser.name) == self._saved \
                or self.tables.db.read_only \
                or not self.tables.exists():  # a dropped collection's files: swept anyway
            return
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        index.bm25.save(str(tmp), show_progress=False)
        # The state file goes last: a folder without it is ignored and rebuilt.
        (tmp / "kinsight.json").write_text(json.dumps(
            {"generation": index.generation, "collection_uid": self.tables.uid,
             "language": index.analyser.language, "analyser": index.analyser.name,
             "bm25": BM25_PARAMETERS, "ids": index.ids}))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        self._saved = (index.generation, index.analyser.name)
