"""``tune``: fit a text space's search to a user's relevance judgments, on the frozen vectors.

From judged queries (``evaluation.load_queries`` and ``load_qrels``), ``tune`` fits what can be
fitted without encoding anything again, and saves it with the space (``storage.tunings``);
``SearchOptions(tuned=True)`` searches with it:

* a linear query-side adapter ``W (dim, dim)``: a text query's vector ``q`` is searched as
  ``normalise(q @ W)``. Trained the way ``align`` trains its adapters (indexers/align.py):
  InfoNCE on (query, relevant item) pairs in batches, the candidates of each batch being its
  queries' relevant items and their hardest non-relevant dense results (an item relevant to
  several queries is a positive for each); Adam with weight decay towards the identity, starting
  at the identity, so epoch 0 is the untuned search; early stopping on the validation queries'
  dense nDCG@10, the best epoch kept (the identity, and no adapter, if none beat it);
* the fusion: its kind (z-score, min-max, RRF) and dense weight, chosen with the adapter in
  place by the rule of benchmarks/fusion_study.py: the weight whose nDCG@10 averaged with its
  neighbours' (weight +-0.05) is highest, so a plateau beats a spike that would move with the
  data. With an adapter it is chosen on the validation queries only: on the queries it was
  trained on, the adapted dense ranking looks better than it will on new ones, and a weight
  chosen there leaned on dense too much (on the Debian sample: dense 0.8, and a tuned search
  below the untuned one on held-out queries); without one, on the training queries too.

The judged queries are split by a seeded shuffle: ``held_out`` of them are never trained or
chosen on, and the report gives the default search's and the tuned search's figures on them;
the rest are split again into training and validation queries.

The adapter's gradient is written by hand in NumPy: the engine never imports torch (DESIGN.md),
and the model is one matrix, whose InfoNCE gradient takes a few lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np

from .errors import InvalidInputError
from .evaluation import Query, evaluate_run, score_searches
from .indexed_collection import IndexedCollection
from .options import SEED_MAX, Progress, check_bounds, option, quiet
from .search import FUSIONS, ChunkMatch, Fusion, SearchMode, SearchOptions, _fuse, search_many
from .spaces import VectorSpace, encoder_for
from .storage import StoredTuning
from .vectors import mean_item_vectors

__all__ = ["TuneEpoch", "TuneOptions", "TuneReport", "infonce_loss", "tune"]

log = logging.getLogger(__name__)

ENCODE_BLOCK = 256
# The fusion is chosen on at most this many queries (a seeded sample): each of the 43 fusions
# is scored on all of them, in Python.
FUSION_QUERIES = 2_000
WEIGHTS = tuple(round(float(w), 2) for w in np.arange(0.0, 1.0001, 0.05))
MIN_QUERIES = 5  # in each of training, validation and held-out


@dataclass(frozen=True)
class TuneOptions:
    """How ``tune`` splits the judged queries and trains the query adapter (module docstring)."""

    space: str | None = option(None, help="The text space to tune (default: the collection's "
                               "only space, or 'text').")
    held_out: float = option(0.2, gt=0, lt=1, help="Share of the judged queries set aside (by "
                             "seed) to report on: never trained or chosen on.")
    validation: float = option(0.15, gt=0, lt=1, help="Share of the other queries that stops "
                               "the adapter's training (early stopping).")
    seed: int = option(0, ge=0, le=SEED_MAX, help="Seed of the query split and the batches.")
    adapter: Literal["linear", "none"] = option("linear", help="linear: fit a query-side linear "
                                                "adapter of the dense space; none: the fusion only.")
    negatives: int = option(20, ge=0, le=1000, help="Hard negatives per query: its best dense "
                            "results that are not judged relevant.")
    max_epochs: int = option(50, ge=1, le=10_000, help="Most passes over the training queries.")
    patience: int = option(5, ge=1, help="Epochs without a better validation nDCG@10 before "
                           "training stops.")
    batch_size: int = option(128, ge=2, le=65_536, help="Queries per training batch.")
    learning_rate: float = option(1e-4, gt=0, le=1, help="Adam's step size.")
    weight_decay: float = option(0.1, ge=0, help="Pull of the adapter towards the identity, "
                                 "per step, times the learning rate.")
    temperature: float = option(0.05, gt=0, le=1, help="Softmax temperature of the contrastive "
                                "loss.")

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.adapter not in ("linear", "none"):
            raise InvalidInputError(f"adapter must be 'linear' or 'none', not {self.adapter!r}")


@dataclass(frozen=True)
class TuneEpoch:
    epoch: int
    loss: float | None  # the mean training loss; None for epoch 0, the identity
    validation_ndcg: float  # dense nDCG@10 of the validation queries


@dataclass(frozen=True)
class TuneReport:
    """What ``tune`` fitted and how it scores. ``held_out`` holds the metrics of ``default``
    (the search with default options), ``tuned`` (``tuned=True``), and both in mode dense, on
    the held-out queries; ``queries`` the number in each part, and ``skipped`` the judged
    queries none of whose relevant items is in the collection."""

    space: str
    fusion: Fusion
    adapter: bool
    queries: dict[str, int]
    held_out: dict[str, dict[str, float]]
    curve: list[TuneEpoch] = field(default_factory=list)
    best_epoch: int = 0
    stopped_epoch: int = 0
    seconds: float = 0.0


def tune(collection: IndexedCollection, queries: Sequence[Query],
         qrels: Mapping[str, Mapping[str, int]], options: TuneOptions, *,
         progress: Progress = quiet) -> TuneReport:
    """Fit and save a text space's tuned settings from judged ``queries`` (see the module
    docstring); returns what was fitted with its figures on the held-out queries."""
    started = time.perf_counter()
    space = _tunable(collection.space(options.space))
    judged, skipped = _judged(collection, queries, qrels)
    train, validation, held_out = _split(judged, options)
    vectors = _encode(space, [*train, *validation], progress)
    train_vectors, validation_vectors = vectors[:len(train)], vectors[len(train):]
    adapter: np.ndarray | None = None
    curve: list[TuneEpoch] = []
    best = stopped = 0
    if options.adapter == "linear":
        adapter, curve, best, stopped = _fit_adapter(
            collection, space, (train, train_vectors), (validation, validation_vectors), qrels,
            options, progress)
    chosen_on = [*train, *validation] if adapter is None else validation
    mapped = vectors if adapter is None else validation_vectors @ adapter
    progress(0, 1, "fusion")
    fusion = _choose_fusion(collection, space, chosen_on, mapped, qrels, options.seed)
    progress(1, 1, "fusion")
    stored = StoredTuning(space.name, space.encoder.fingerprint, asdict(fusion), adapter,
                          {"options": asdict(options)})
    collection.tunings.save(stored)  # the tuned searches below read it
    figures = score_searches(collection, held_out, qrels, {
        "default": SearchOptions(space=space.name, k=100, return_fields=()),
        "tuned": SearchOptions(space=space.name, k=100, return_fields=(), tuned=True),
        "dense": SearchOptions(space=space.name, k=100, mode="dense", return_fields=()),
        "dense, tuned": SearchOptions(space=space.name, k=100, mode="dense", return_fields=(),
                                      tuned=True)}, progress=progress)
    counts = {"train": len(train), "validation": len(validation), "held_out": len(held_out),
              "skipped": skipped}
    report = TuneReport(space.name, fusion, adapter is not None, counts, figures, curve, best,
                        stopped, time.perf_counter() - started)
    collection.tunings.save(replace(stored, report={
        **stored.report, "queries": counts, "held_out": figures, "best_epoch": best}))
    return report


def _tunable(space: VectorSpace) -> VectorSpace:
    if space.encoder.modality != "text" or not space.source_fields:
        raise InvalidInputError(
            f"space {space.name!r} holds {space.encoder.modality} vectors without text fields; "
            "tune fits hybrid search of a text space: name one with space=... (--space)")
    if space.metric != "cosine":
        raise InvalidInputError(f"space {space.name!r} compares vectors by {space.metric}; tune "
                                "trains its adapter for cosine spaces only")
    return space


def _judged(collection: IndexedCollection, queries: Sequence[Query],
            qrels: Mapping[str, Mapping[str, int]]) -> tuple[list[Query], int]:
    """The queries with a relevant item (grade > 0) in the collection, and how many others."""
    wanted = sorted({d for q in queries for d, r in qrels.get(q.qid, {}).items() if r > 0})
    present = set(collection.existing_ids(wanted))
    judged = [q for q in queries
              if any(r > 0 and d in present for d, r in qrels.get(q.qid, {}).items())]
    return judged, len(queries) - len(judged)


def _split(judged: list[Query], options: TuneOptions) -> tuple[list[Query], ...]:
    """Training, validation and held-out queries: a seeded shuffle of the queries sorted by
    qid, so the parts depend on the seed and the queries, not on their order in the file."""
    judged = sorted(judged, key=lambda q: q.qid)
    order = np.random.default_rng(options.seed).permutation(len(judged))
    n_held = round(options.held_out * len(judged))
    n_validation = round(options.validation * (len(judged) - n_held))
    parts = (order[n_held + n_validation:], order[n_held:n_held + n_validation], order[:n_held])
    if min(len(p) for p in parts) < MIN_QUERIES:
        raise InvalidInputError(
            f"{len(judged)} judged queries have a relevant item in the collection; tune needs "
            f"at least {MIN_QUERIES} in each of training, validation and held-out (their "
            f"shares now give {', '.join(str(len(p)) for p in parts)}): judge more queries, "
            "or check that the qrels' doc_ids are the collection's item ids")
    return tuple([judged[i] for i in sorted(part)] for part in parts)


def _encode(space: VectorSpace, queries: Sequence[Query], progress: Progress) -> np.ndarray:
    encoder = encoder_for(space, "text")
    blocks = []
    for start in range(0, len(queries), ENCODE_BLOCK):
        texts = [q.text for q in queries[start:start + ENCODE_BLOCK]]
        blocks.append(np.asarray(encoder.encode(texts, role="query"), np.float32))
        progress(start + len(texts), len(queries), "encode")
    return np.concatenate(blocks)


Ranking = list[tuple[str, float, ChunkMatch | None]]


def _rankings(collection: IndexedCollection, space: VectorSpace,
              queries: np.ndarray | Sequence[str], k: int, mode: SearchMode
              ) -> list[Ranking]:
    """Each query's top ``k`` as ``(id, score, None)``: query vectors ``(n, dim)`` (normalised
    by search) in mode dense, texts in mode bm25."""
    options = SearchOptions(space=space.name, k=k, mode=mode, return_fields=())
    return [[(h.id, h.score, None) for h in hits]
            for hits in search_many(collection, list(queries), options)]


def _ndcg(rankings: Sequence[Sequence[tuple[str, float, object]]], queries: Sequence[Query],
          qrels: Mapping[str, Mapping[str, int]]) -> float:
    run = {q.qid: [i for i, _, _ in r[:10]] for q, r in zip(queries, rankings, strict=True)}
    return evaluate_run(run, {q.qid: qrels[q.qid] for q in queries}, ks=(10,))["ndcg@10"]


# -- the query adapter ------------------------------------------------------------------------
def infonce_loss(queries: np.ndarray, matrix: np.ndarray, candidates: np.ndarray,
                 targets: np.ndarray, scale: float) -> tuple[float, np.ndarray]:
    """The mean cross-entropy between ``targets`` ``(B, m)`` (rows summing to 1) and the softmax
    of ``scale * normalise(queries @ matrix) @ candidates.T``, and its gradient with respect to
    ``matrix`` ``(d, d)``; ``queries`` ``(B, d)``, ``candidates`` ``(m, d)`` unit rows."""
    mapped = queries @ matrix
    norms = np.maximum(np.linalg.norm(mapped, axis=1, keepdims=True), 1e-12)
    unit = mapped / norms
    logits = scale * unit @ candidates.T
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = float(-(targets * log_probs).sum(axis=1).mean())
    d_unit = scale * ((np.exp(log_probs) - targets) / len(queries)) @ candidates
    d_mapped = (d_unit - unit * (d_unit * unit).sum(axis=1, keepdims=True)) / norms
    return loss, queries.T @ d_mapped


@dataclass
class _Pairs:
    """The training queries' candidates: item vectors (unit rows), and per query kept (those
    with a relevant item that has a vector) the rows of its relevant items with their grades
    and the rows of its hard negatives."""

    kept: np.ndarray
    items: np.ndarray
    positives: list[dict[int, int]]
    negatives: list[list[int]]


def _pairs(collection: IndexedCollection, space: VectorSpace, queries: Sequence[Query],
           vectors: np.ndarray, qrels: Mapping[str, Mapping[str, int]], negatives: int) -> _Pairs:
    relevant = [{d: r for d, r in qrels[q.qid].items() if r > 0} for q in queries]
    found = _rankings(collection, space, vectors, negatives + max(map(len, relevant)), "dense")
    hard = [[i for i, _, _ in hits if i not in rel][:negatives]
            for hits, rel in zip(found, relevant, strict=True)]
    ids, items = mean_item_vectors(collection, space.name,
                                   sorted({i for r in relevant for i in r} | {i for h in hard for i in h}))
    row = {item: n for n, item in enumerate(ids)}
    positives = [{row[d]: r for d, r in rel.items() if d in row} for rel in relevant]
    kept = np.flatnonzero([bool(p) for p in positives])
    return _Pairs(kept, items, [positives[i] for i in kept],
                  [[row[i] for i in hard[k] if i in row] for k in kept])


def _fit_adapter(collection: IndexedCollection, space: VectorSpace,
                 train: tuple[list[Query], np.ndarray], validation: tuple[list[Query], np.ndarray],
                 qrels: Mapping[str, Mapping[str, int]], options: TuneOptions, progress: Progress
                 ) -> tuple[np.ndarray | None, list[TuneEpoch], int, int]:
    """The adapter of the best validation epoch (None if that is epoch 0, the identity), the
    curve, the best epoch and the one training stopped at."""
    (train_queries, x), (validation_queries, x_validation) = train, validation
    pairs = _pairs(collection, space, train_queries, x, qrels, options.negatives)
    x = x[pairs.kept]
    identity = np.eye(space.dim, dtype=np.float32)
    matrix: np.ndarray = identity.copy()
    moment: np.ndarray = np.zeros_like(identity)
    second: np.ndarray = np.zeros_like(identity)
    rng = np.random.default_rng(options.seed)

    def validation_ndcg(m: np.ndarray) -> float:
        return _ndcg(_rankings(collection, space, x_validation @ m, 10, "dense"),
                     validation_queries, qrels)

    best = (validation_ndcg(matrix), 0, matrix.copy())
    curve = [TuneEpoch(0, None, best[0])]
    steps, epoch = 0, 0
    for epoch in range(1, options.max_epochs + 1):
        losses = []
        for batch in np.array_split(rng.permutation(len(x)),
                                    max(1, -(-len(x) // options.batch_size))):
            rows = sorted({r for i in batch for r in (*pairs.positives[i], *pairs.negatives[i])})
            column = {r: n for n, r in enumerate(rows)}
            targets = np.zeros((len(batch), len(rows)), np.float32)
            for n, i in enumerate(batch):
                for r, grade in pairs.positives[i].items():
                    targets[n, column[r]] = grade
            targets /= targets.sum(axis=1, keepdims=True)
            loss, gradient = infonce_loss(x[batch], matrix, pairs.items[rows], targets,
                                          1 / options.temperature)
            steps += 1  # Adam (Kingma & Ba), the decay decoupled as in AdamW, towards identity
            moment = 0.9 * moment + 0.1 * gradient
            second = 0.999 * second + 0.001 * gradient ** 2
            step = (moment / (1 - 0.9 ** steps)) / (np.sqrt(second / (1 - 0.999 ** steps)) + 1e-8)
            matrix = matrix - options.learning_rate * (
                step + options.weight_decay * (matrix - identity))
            losses.append(loss)
        score = validation_ndcg(matrix)
        curve.append(TuneEpoch(epoch, float(np.mean(losses)), score))
        progress(epoch, options.max_epochs, "train")
        if score > best[0]:
            best = (score, epoch, matrix.copy())
        elif epoch - best[1] >= options.patience:
            log.info("early stop at epoch %d: no better validation nDCG@10 since epoch %d",
                     epoch, best[1])
            break
    return (None if best[1] == 0 else best[2].astype(np.float32)), curve, best[1], epoch


# -- the fusion --------------------------------------------------------------------------------
def _choose_fusion(collection: IndexedCollection, space: VectorSpace, queries: Sequence[Query],
                   vectors: np.ndarray, qrels: Mapping[str, Mapping[str, int]], seed: int
                   ) -> Fusion:
    """The fusion with the best nDCG@10 on ``queries`` (searched by ``vectors``), a weighted
    one's averaged with its neighbours' weights (module docstring); ties keep the default."""
    if len(queries) > FUSION_QUERIES:
        keep = np.sort(np.random.default_rng(seed).choice(len(queries), FUSION_QUERIES,
                                                          replace=False))
        queries, vectors = [queries[i] for i in keep], vectors[keep]
    depth = Fusion().depth
    dense = _rankings(collection, space, vectors, depth, "dense")
    bm25 = _rankings(collection, space, [q.text for q in queries], depth, "bm25")

    def score(fusion: Fusion) -> float:
        return _ndcg([_fuse(d, b, fusion) for d, b in zip(dense, bm25, strict=True)],
                     queries, qrels)

    scored: list[tuple[float, Fusion]] = [(score(FUSIONS["rrf"]), FUSIONS["rrf"])]
    for normalise in ("zscore", "minmax"):
        by_weight = [score(Fusion(normalise=normalise, dense_weight=w)) for w in WEIGHTS]
        smoothed = [float(np.mean(by_weight[max(0, n - 1):n + 2])) for n in range(len(WEIGHTS))]
        scored += [(s, Fusion(normalise=normalise, dense_weight=w))
                   for s, w in zip(smoothed, WEIGHTS, strict=True)]
    default = Fusion()
    return max(scored, key=lambda sf: (sf[0], sf[1] == default))[1]
