"""Search: what is closest to this text, vector or item? Dense, BM25 or hybrid, with filters.

Dense search runs on the space's FAISS index (exact when the policy says so or ``exact=True``);
a selective filter is answered by an exact scan of the matching vectors instead, which is both
faster and exact when few items qualify. Long items have one vector per chunk: chunk scores are
aggregated per item (best chunk by default, mean on request) and each hit says which chunk matched.
Hybrid search fuses the dense and BM25 rankings: weighted z-scores (default), weighted min-max
scores or reciprocal ranks. ``tuned=True`` searches with what ``kinsight tune`` fitted on the
user's judgments (tuning.py): its fusion, and its linear adapter on text queries' vectors.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from .errors import InvalidInputError, NotFoundError
from .filters import FilterInput
from .indexed_collection import IndexedCollection
from .kernels import knn_blocks, normalise_for
from .spaces import VectorSpace, encoder_for
from .vector_index import VectorIndex

__all__ = [
    "FUSIONS",
    "UNKNOWN_LANGUAGE_FUSION",
    "ById",
    "ChunkMatch",
    "Fusion",
    "Hit",
    "Query",
    "SearchMode",
    "SearchOptions",
    "resolve_mode",
    "search",
    "search_many",
    "tuned_settings",
]

log = logging.getLogger(__name__)

SearchMode = Literal["auto", "dense", "bm25", "hybrid"]
# Below this many matching vectors a filtered search scans them exactly instead of asking FAISS
# to skip the rest: as fast (a 50k x 384 matrix product takes milliseconds) and never misses.
EXACT_FILTER_LIMIT = 50_000


@dataclass(frozen=True)
class ById:
    """Query by a stored item: its vector (mean of its chunks); the item itself is left out.

    ``space`` names the space the item's vector is read from when it is not the one searched:
    ``ById("frog-1", space="caption")`` searching the ``image`` space finds the pictures closest
    to that item's caption. The two spaces must share one embedding space (equal fingerprints).
    """

    id: str
    space: str | None = None


Query = str | np.ndarray | ById


@dataclass(frozen=True)
class Fusion:
    """How hybrid search merges rankings. ``weighted`` sums each side's scores put on a common
    scale by ``normalise``: ``zscore`` counts standard deviations above the side's lowest
    candidate, ``minmax`` scales to [0, 1]; ``dense_weight`` goes to dense and the rest to BM25.
    ``rrf`` sums ``1/(rrf_k + rank)``. Each side contributes its top ``depth`` items; an item one
    side did not return gets nothing from it.

    The default, z-score with a dense weight of 0.5, was chosen on half of the Debian development
    queries and checked on the other half (benchmarks/fusion_study.py; README, Search modes): a
    standard deviation is a unit both sides share whatever their raw scale (BM25 grows with the
    query's length, cosines crowd near each other), so equal weights mean equal trust, and the
    weight sits on a plateau (0.45-0.55 within 0.002)."""

    method: Literal["weighted", "rrf"] = "weighted"
    normalise: Literal["zscore", "minmax"] = "zscore"
    dense_weight: float = 0.5
    rrf_k: int = 60
    depth: int = 100


# The fusions offered by name (CLI, HTTP, ``kinsight evaluate``), the default first; min-max's
# weight was chosen the same way as z-score's.
FUSIONS: dict[str, Fusion] = {
    "zscore": Fusion(),
    "minmax": Fusion(normalise="minmax", dense_weight=0.45),
    "rrf": Fusion(method="rrf"),
}

# Mode auto's fusion where the encoder was not trained on the space's language (an English model
# on Russian texts): RRF, which trusts both rankings alike, fell 0.04-0.3 nDCG@10 below BM25 alone
# on Debian's ru/de/ja translations; a dense weight of 0.2 came out best on average on their dev
# halves. A small weight moves only near-ties of BM25 when the dense ranking is noise (ru, ja)
# and still adds what an encoder half-knows (German's shared technical words). README, Languages.
UNKNOWN_LANGUAGE_FUSION = Fusion(method="weighted", normalise="minmax", dense_weight=0.2)


@dataclass(frozen=True)
class SearchOptions:
    """``return_fields``: None for all fields of each hit, or the names wanted (``()`` for none).
    ``tuned``: search with the space's tuned settings (``tuning.py``) in place of ``fusion``."""

    k: int = 10
    space: str | None = None
    mode: SearchMode = "auto"
    where: FilterInput = None
    exact: bool = False
    aggregate: Literal["max", "mean"] = "max"
    fusion: Fusion = field(default_factory=Fusion)
    return_fields: Sequence[str] | None = None
    tuned: bool = False


@dataclass(frozen=True)
class ChunkMatch:
    """The chunk of an item that matched: its number and character span in the source text."""

    index: int
    start: int | None
    end: int | None


@dataclass(frozen=True)
class Hit:
    """One result: higher ``score`` is better; its scale depends on the mode (cosine, BM25, fused)."""

    id: str
    score: float
    fields: dict[str, Any]
    chunk: ChunkMatch | None = None


NO_CHUNK: ChunkMatch | None = None  # BM25 ranks whole items: no chunk to point at


def search(collection: IndexedCollection, query: Query, options: SearchOptions) -> list[Hit]:
    return search_many(collection, [query], options)[0]


def search_many(
    collection: IndexedCollection, queries: Sequence[Query], options: SearchOptions, *,
    exclude: Sequence[Iterable[str]] | None = None,
) -> list[list[Hit]]:
    """Run many queries at once (encoded in one batch, one FAISS call); one hit list per query.
    ``exclude`` gives, per query, item ids that must not come back (a ``ById`` query's own item
    never does)."""
    if not 1 <= options.k <= 10_000:
        raise InvalidInputError(f"k must be between 1 and 10000, got {options.k}")
    if options.mode not in ("auto", "dense", "bm25", "hybrid"):
        raise InvalidInputError(f"unknown mode {options.mode!r}; use auto, dense, bm25 or hybrid")
    space = collection.space(options.space)
    _log_warnings_once(collection.name, collection.uid, space)
    mode = resolve_mode(options.mode, space, queries)
    fusion, adapter = options.fusion, None
    if options.tuned:  # fitted on this space's own judgments: the language rule below is moot
        fusion, adapter = tuned_settings(collection, space)
    elif options.mode == "auto" and mode == "hybrid" and not space.encoder_knows_language():
        fusion = replace(UNKNOWN_LANGUAGE_FUSION, depth=fusion.depth)
    fields = collection.fields()
    unknown = [f for f in options.return_fields or () if f not in fields]
    if unknown:
        raise InvalidInputError(
            f"collection {collection.name!r} has no field {', '.join(map(repr, unknown))}; "
            f"fields: {', '.join(fields) or 'none'}")
    # BM25 masks documents by id; dense search filters its vectors inside DuckDB (see _dense).
    allowed_ids = None if options.where is None or mode == "dense" else set(
        collection.ids_matching(options.where))
    depth = options.k if mode != "hybrid" else max(options.k, fusion.depth)
    if exclude is not None and len(exclude) != len(queries):
        raise InvalidInputError(f"exclude has {len(exclude)} entries for {len(queries)} queries")
    excluded = [({q.id} if isinstance(q, ById) else set()) | set(extra) for q, extra in
                zip(queries, exclude if exclude is not None else [()] * len(queries), strict=True)]

    ranked: list[list[tuple[str, float, ChunkMatch | None]]]
    if mode in ("dense", "hybrid"):
        dense = _dense(collection, space, queries, depth, options, excluded, adapter)
    if mode in ("bm25", "hybrid"):
        texts = [_query_text(collection, space, q) for q in queries]
        lexical, fresh = collection.lexical(space.name).current()
        found = [lexical.search(t, depth + len(ex), allowed_ids) for t, ex in
                 zip(texts, excluded, strict=True)]
        if not fresh:  # an index still being rebuilt may hold items deleted since
            alive = set(collection.existing_ids(sorted({i for hits in found for i, _ in hits})))
            excluded = [ex | {i for hits in found for i, _ in hits if i not in alive}
                        for ex in excluded]
        bm25: list[list[tuple[str, float, ChunkMatch | None]]] = [
            [(i, s, NO_CHUNK) for i, s in hits if i not in ex][:depth]
            for hits, ex in zip(found, excluded, strict=True)]
    if mode == "dense":
        ranked = dense
    elif mode == "bm25":
        ranked = bm25
    else:
        ranked = [_fuse(d, b, fusion)[: options.k]
                  for d, b in zip(dense, bm25, strict=True)]
    return _with_fields(collection, [r[: options.k] for r in ranked], options.return_fields)


def resolve_mode(mode: SearchMode, space: VectorSpace, queries: Sequence[Query]) -> SearchMode:
    """``auto`` is hybrid for text or same-space item queries on a space built from text fields (fusing
    BM25 and dense beat either alone on the Debian benchmark, as in published comparisons), and
    dense otherwise (a vector has no words to match)."""
    if mode != "auto":
        return mode
    textual = space.encoder.modality == "text" and bool(space.source_fields)
    own_words = [isinstance(q, str) or (isinstance(q, ById) and q.space in (None, space.name))
                 for q in queries]  # an item's vector from another space has no words here
    if textual and all(own_words):
        return "hybrid"
    return "dense"


@functools.lru_cache(maxsize=256)
def _log_warnings_once(name: str, uid: str, space: VectorSpace) -> None:
    """Logged once per space and process: a space's warnings (random weights, an unknown
    language) hold for every search of it, which a server would log on every request; CLI and
    HTTP results carry them each time (``space.warnings()``)."""
    for warning in space.warnings():
        log.warning("collection %r, space %r: %s", name, space.name, warning)


# -- dense ----------------------------------------------------------------------------------------
def tuned_settings(collection: IndexedCollection, space: VectorSpace
                   ) -> tuple[Fusion, np.ndarray | None]:
    """The fusion and the query adapter ``(dim, dim)`` (or None) that ``kinsight tune`` saved
    for ``space``."""
    stored = collection.tunings.read(space.name)
    if stored is None:
        raise NotFoundError(
            f"space {space.name!r} of collection {collection.name!r} has not been tuned; run "
            "`kinsight tune --queries FILE --qrels FILE` (Collection.tune) on judged queries "
            "first, or search without tuned")
    return Fusion(**stored.fusion), stored.adapter


def _query_vectors(collection: IndexedCollection, space: VectorSpace, queries: Sequence[Query],
                   adapter: np.ndarray | None = None) -> np.ndarray:
    """One vector per query; ``adapter`` (from a tune) maps the text queries' vectors, which is
    what it was trained on (a stored item or a given vector is left as it is)."""
    texts = [(i, q) for i, q in enumerate(queries) if isinstance(q, str)]
    out = np.zeros((len(queries), space.dim), dtype=np.float32)
    if texts:  # on an image space, by the text encoder that shares its embedding space
        encoder = encoder_for(space, "text")
        encoded = encoder.encode([t for _, t in texts], role="query")
        out[[i for i, _ in texts]] = encoded if adapter is None else encoded @ adapter
    for i, q in enumerate(queries):
        if isinstance(q, ById):
            out[i] = collection.item_vectors(_source_space(collection, space, q).name,
                                             q.id).mean(axis=0)
        elif isinstance(q, np.ndarray):
            vector = np.asarray(q, dtype=np.float32).reshape(-1)
            if vector.shape[0] != space.dim:
                raise InvalidInputError(f"query vector has {vector.shape[0]} dimensions; space "
                                        f"{space.name!r} has {space.dim}")
            out[i] = vector
        elif not isinstance(q, str):
            raise InvalidInputError(f"cannot search with a {type(q).__name__}; pass text, a "
                                    "numpy vector or ById(item_id)")
    return normalise_for(space, out)


def _source_space(collection: IndexedCollection, space: VectorSpace, query: ById) -> VectorSpace:
    """The space a ``ById`` query's vector comes from: the searched one, or another space of the
    collection that shares its embedding space."""
    if query.space is None or query.space == space.name:
        return space
    source = collection.space(query.space)
    space.check_encoder(source.encoder)
    return source


def _dense(collection: IndexedCollection, space: VectorSpace, queries: Sequence[Query], k: int,
           options: SearchOptions, excluded: list[set[str]], adapter: np.ndarray | None
           ) -> list[list[tuple[str, float, ChunkMatch | None]]]:
    vectors = _query_vectors(collection, space, queries, adapter)
    keeper = collection.index(space.name)
    # The seqs of the vectors a filter matches, found in SQL (the ids never come through Python).
    allowed = None if options.where is None else collection.tables.vector_seqs(
        space.name, where=options.where)
    with keeper.searching() as index:  # one caught-up index for every round below
        n_vectors = index.ntotal
        if n_vectors == 0 or (allowed is not None and not len(allowed)):
            return [[] for _ in queries]
        n_items = max(1, collection.count())
        # Fetch more chunks than items wanted: several chunks of one item may rank together.
        fetch = min(n_vectors,
                    (k + max(len(e) for e in excluded)) * max(1, -(-n_vectors // n_items)))
        while True:
            scores, seqs = _nearest(collection, index, space, vectors, fetch, options, allowed)
            chunks = {seq: (item_id, ChunkMatch(chunk, start, end))
                      for seq, (item_id, chunk, start, end)
                      in keeper.chunks_of(np.unique(seqs[seqs >= 0])).items()}
            results = [_best_per_item(s, q, chunks, ex)
                       for s, q, ex in zip(scores, seqs, excluded, strict=True)]
            short = any(len(r) < k for r in results)
            if not short or fetch >= n_vectors:
                break
            fetch = min(n_vectors, fetch * 4)
    if options.aggregate == "mean":
        results = _mean_of_chunks(collection, space, vectors, [r[:k] for r in results])
    return [r[:k] for r in results]


def _nearest(collection: IndexedCollection, index: VectorIndex, space: VectorSpace, vectors: np.ndarray,
             fetch: int, options: SearchOptions, allowed: np.ndarray | None
             ) -> tuple[np.ndarray, np.ndarray]:
    """The ``fetch`` nearest vectors ``(scores, seqs)``, among the ``allowed`` seqs if given."""
    small_filter = allowed is not None and len(allowed) <= EXACT_FILTER_LIMIT
    if options.exact or small_filter:
        if allowed is None and index.spec.stores_raw_vectors:
            return index.search(vectors, fetch, probe_all=True)
        # A compressed index (PQ), or few matching vectors: scan the stored vectors exactly.
        blocks = collection.tables.vector_blocks(space.name, where=options.where)
        return knn_blocks(vectors, ((s, v) for s, v, _ in blocks), fetch, space.metric)
    return index.search(vectors, fetch, allowed)


def _best_per_item(scores: np.ndarray, seqs: np.ndarray, chunks: dict[int, tuple[str, ChunkMatch]],
                   excluded: set[str]) -> list[tuple[str, float, ChunkMatch | None]]:
    best: dict[str, tuple[str, float, ChunkMatch | None]] = {}
    for score, seq in zip(scores, seqs, strict=True):
        if seq < 0 or int(seq) not in chunks:
            continue
        item_id, chunk = chunks[int(seq)]
        if item_id not in excluded and item_id not in best:  # FAISS returns best first
            best[item_id] = (item_id, float(score), chunk)
    return list(best.values())


def _mean_of_chunks(collection: IndexedCollection, space: VectorSpace, queries: np.ndarray,
                    hits: list[list[tuple[str, float, ChunkMatch | None]]]
                    ) -> list[list[tuple[str, float, ChunkMatch | None]]]:
    """Re-score each query's candidates by the mean over all their chunks (exact, from the
    stored vectors, read in one go for every query)."""
    chunk_vectors: dict[str, list[np.ndarray]] = {}
    wanted = sorted({item_id for found in hits for item_id, _, _ in found})
    for _, vectors, owners in collection.tables.vector_blocks(space.name, ids=wanted):
        for owner, vector in zip(owners, vectors, strict=True):
            chunk_vectors.setdefault(owner, []).append(vector)
    rescored = []
    for query, found in zip(queries, hits, strict=True):
        scored = [(item_id, float(np.mean(np.stack(chunk_vectors[item_id]) @ query)), chunk)
                  for item_id, _, chunk in found if item_id in chunk_vectors]
        rescored.append(sorted(scored, key=lambda h: -h[1]))
    return rescored


# -- lexical and fusion ---------------------------------------------------------------------------
def _query_text(collection: IndexedCollection, space: VectorSpace, query: Query) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, ById):
        fields = collection.fields_of([query.id]).get(query.id)
        if fields is None:
            raise InvalidInputError(f"no item {query.id!r} in collection {collection.name!r}")
        return " ".join(str(fields.get(f) or "") for f in space.source_fields)
    raise InvalidInputError("BM25 and hybrid search need a text query or an item id, not a vector")


def _fuse(dense: list[tuple[str, float, ChunkMatch | None]],
          bm25: list[tuple[str, float, ChunkMatch | None]], fusion: Fusion
          ) -> list[tuple[str, float, ChunkMatch | None]]:
    scores: dict[str, float] = {}
    chunks = {item_id: chunk for item_id, _, chunk in dense}
    if fusion.method == "rrf":
        for ranking in (dense, bm25):
            for rank, (item_id, _, _) in enumerate(ranking, start=1):
                scores[item_id] = scores.get(item_id, 0.0) + 1.0 / (fusion.rrf_k + rank)
    elif fusion.method == "weighted":
        if not 0.0 <= fusion.dense_weight <= 1.0:
            raise InvalidInputError(f"dense_weight must be in [0, 1], got {fusion.dense_weight}")
        if fusion.normalise not in ("zscore", "minmax"):
            raise InvalidInputError(f"unknown normalisation {fusion.normalise!r}; use 'zscore' "
                                    "or 'minmax'")
        for ranking, weight in ((dense, fusion.dense_weight), (bm25, 1 - fusion.dense_weight)):
            if not ranking:
                continue
            values = np.array([s for _, s, _ in ranking])
            low = values.min()
            spread = float(values.std() if fusion.normalise == "zscore" else np.ptp(values)) or 1.0
            for item_id, score, _ in ranking:
                scores[item_id] = scores.get(item_id, 0.0) + weight * (score - low) / spread
    else:
        raise InvalidInputError(f"unknown fusion {fusion.method!r}; use 'weighted' or 'rrf'")
    ordered = sorted(scores.items(), key=lambda kv: -kv[1])
    return [(item_id, score, chunks.get(item_id)) for item_id, score in ordered]


def _with_fields(collection: IndexedCollection, ranked: list[list[tuple[str, float, ChunkMatch | None]]],
                 wanted: Sequence[str] | None) -> list[list[Hit]]:
    """Hits with their fields, read after every index was searched: an item deleted meanwhile
    (or that a lagging index still holds) has no row any more and is left out, in every mode."""
    ids = sorted({i for r in ranked for i, _, _ in r})
    if wanted is not None and not wanted:
        alive = set(collection.existing_ids(ids))
        return [[Hit(i, s, {}, c) for i, s, c in r if i in alive] for r in ranked]
    fields = collection.fields_of(ids)
    def pick(values: dict[str, Any]) -> dict[str, Any]:
        return values if wanted is None else {f: values.get(f) for f in wanted}
    return [[Hit(i, s, pick(fields[i]), c) for i, s, c in r if i in fields] for r in ranked]
