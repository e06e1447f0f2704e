"""Anomalies: which items do not look like a reference set? Fit a detector, score, keep the run.

``anomalies(collection, AnomalyOptions(...), reference=..., targets=...)`` fits a detector (see
``detectors``; the options choose it and its parameters) on the reference items' vectors — a
filter on the collection, or another collection built by the same encoder — and scores the
targets: a filter on the collection (every item when None) or new vectors (``NewVectors``: a file
of new items or a request body, encoded by the caller). Targets that are reference items get
their out-of-sample score, so no item scores against itself.

The default method, ``auto``, is ``combined`` in a text space (k-NN on the vectors and the rarity
of the words they came from, calibrated together: ``text_detectors``) and ``knn`` elsewhere, and
for new items given as vectors alone. ``combined`` also weighs the words of the collection's
other free-text fields (``lexical.free_text_fields``: a title beside the description the
vectors came from), each as a view of its own; new items sent with their texts alone are
scored without them.

Each score comes with its percentile among the reference (comparable across methods and runs),
whether it passes the threshold, and what shows why it stands out: the nearest reference items
and, for the text detectors, the item's words rarest in the reference (``unusual_words``, for
anomalies). The summary says whether the batch drifted (``drift``: the share flagged against the
expected ``1 - threshold_percentile/100``, by a binomial test). The run is saved
(``runs.save_run``) with two tables, read back by reports:

- ``anomalies_scores``: id, score, percentile, is_anomaly, in_reference, neighbour_ids,
  neighbour_similarities, unusual_words, x, y (2-D map: PCA of the reference), worst first;
- ``anomalies_reference``: id, score (out of sample), x, y of every reference item.

A fitted ``ReferenceModel`` can be saved and loaded to score later batches (the online case);
loading checks that the space was built by the same encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pyarrow as pa

from .detectors import (
    AnomalyMethod,
    Detector,
    detector_parameters,
    load_detector_arrays,
    make_detector,
    resolve_method,
)
from .drift import drift
from .encoders import EncoderInfo
from .errors import EncoderMismatchError, InvalidInputError
from .filters import FilterInput, filter_to_json
from .indexed_collection import IndexedCollection
from .kernels import normalise_for
from .lexical import field_texts, free_text_fields
from .options import SEED_MAX, check_bounds, option
from .runs import save_run
from .spaces import VectorSpace
from .vectors import item_matrix

__all__ = [
    "AnomalyOptions",
    "AnomalyResult",
    "AnomalyScore",
    "Neighbour",
    "NewVectors",
    "ReferenceModel",
    "anomalies",
    "fit_reference",
]


ANOMALY_METHODS: tuple[str, ...] = get_args(AnomalyMethod)
UNUSUAL_WORDS = 5  # words listed with each anomaly a text detector flags


@dataclass(frozen=True)
class NewVectors:
    """Items that are not in the collection, as vectors ``(n, dim)`` (a file of new items, a
    request body: the caller encodes them); ``ids`` name them (default ``new-0``, ``new-1``...);
    ``texts`` are what they were encoded from, which the text detectors read."""

    vectors: np.ndarray
    ids: Sequence[str] | None = None
    texts: Sequence[str] | None = None


@dataclass(frozen=True)
class Neighbour:
    """A reference item near a scored item; ``similarity`` in the space's metric (higher: closer)."""

    id: str
    similarity: float


@dataclass(frozen=True)
class AnomalyScore:
    """``score``: the detector's raw normality (higher: more normal); ``percentile``: share
    (0-100) of reference items more normal than this one; ``in_reference``: a reference item,
    scored out of sample; ``unusual_words``: of an anomaly a text detector flagged, its words
    rarest in the reference texts, rarest first."""

    id: str
    score: float
    percentile: float
    is_anomaly: bool
    in_reference: bool
    neighbours: tuple[Neighbour, ...]
    unusual_words: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnomalyResult:
    """Every target's score, worst first; ``threshold`` is the raw score at
    ``threshold_percentile``; ``drift`` compares the share flagged with the expected one."""

    run_id: str
    method: str
    threshold_percentile: float
    threshold: float
    n_reference: int
    scores: list[AnomalyScore]
    drift: Any = None  # drift.DriftRow of the whole batch

    @property
    def anomalies(self) -> list[AnomalyScore]:
        return [s for s in self.scores if s.is_anomaly]


@dataclass(frozen=True)
class ReferenceModel:
    """A detector fitted on reference items of a space: reusable on later batches.
    ``selection`` records how the reference was chosen (a filter, a collection), as JSON."""

    detector: Detector
    encoder: EncoderInfo
    reference_collection: str
    reference_ids: tuple[str, ...]
    selection: Any = None

    def save(self, path: str | Path) -> Path:
        """One ``.npz`` file: the detector's arrays and a JSON header with the encoder."""
        return self.detector.save(path, {
            "encoder": vars(self.encoder), "reference_collection": self.reference_collection,
            "reference_ids": list(self.reference_ids), "selection": self.selection})

    @classmethod
    def load(cls, path: str | Path, space: VectorSpace) -> ReferenceModel:
        """Load a saved model to score vectors of ``space``; refused when another encoder built it."""
        detector, meta = load_detector_arrays(path)
        encoder = EncoderInfo(**meta["encoder"])
        try:
            space.check_encoder(encoder)
        except EncoderMismatchError as e:
            raise EncoderMismatchError(f"detector {path} was fitted on another space: {e}") from e
        return cls(detector, encoder, meta["reference_collection"], tuple(meta["reference_ids"]),
                   {"detector_file": str(path), **(meta.get("selection") or {})})


@dataclass(frozen=True)
class AnomalyOptions:
    """What ``anomalies`` (and ``fit_reference``) do. A detector parameter left None takes its
    method's default (``detectors``); each belongs to the methods named in its help."""

    space: str | None = option(help="Vector space (default: the only one).")
    method: AnomalyMethod = option("auto", help=(
        f"Detector: {' | '.join(ANOMALY_METHODS)}; auto is combined (vectors and words) in a "
        "text space, knn elsewhere."))
    threshold_percentile: float = option(95.0, gt=0, lt=100, help=(
        "Items beyond this percentile of the reference's out-of-sample scores are anomalies."))
    n_neighbors: int | None = option(
        ge=1, help="knn, lof and combined: neighbours the detector looks at (default 10, 20, 20).")
    vector_weight: float | None = option(gt=0, help=(
        "combined: times the vectors' percentile counts in the mean, each text field's words once "
        "(default 2)."))
    aggregate: Literal["mean", "kth"] | None = option(
        help="knn: the neighbours' mean similarity, or the k-th one's alone (default mean).")
    n_estimators: int | None = option(ge=1, help="iforest: trees in the forest (default 200).")
    seed: int | None = option(ge=0, le=SEED_MAX, help="iforest: seed of the forest (default 0).")
    n_components: int | None = option(
        ge=1, help="mahalanobis: principal components kept (default 50).")
    neighbours: int = option(
        5, ge=1, le=100, help="Nearest reference items listed with each scored item.")

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.method not in ANOMALY_METHODS:
            raise InvalidInputError(f"unknown anomaly method {self.method!r}; use one of "
                                    f"{', '.join(ANOMALY_METHODS)}")
        own = detector_parameters(self.method)
        everyone = {p for m in ANOMALY_METHODS for p in detector_parameters(m)}
        for name in sorted(everyone - set(own)):
            if getattr(self, name) is not None:
                takers = [m for m in ANOMALY_METHODS if name in detector_parameters(m)]
                raise InvalidInputError(f"method {self.method!r} does not take {name}; it "
                                        f"applies to {' and '.join(takers)}")

    def detector_params(self) -> dict[str, Any]:
        """The method's own parameters that were given (the detector's defaults fill the rest)."""
        return {name: getattr(self, name) for name in detector_parameters(self.method)
                if getattr(self, name) is not None}


def fit_reference(
    collection: IndexedCollection, options: AnomalyOptions | None = None, *,
    reference: FilterInput | IndexedCollection = None,
) -> ReferenceModel:
    """Fit the detector ``options`` describe on the reference: items of ``collection`` matching
    a filter (all when None), or every item of another collection whose space was built by the
    same encoder."""
    o = options or AnomalyOptions()
    target_space = collection.space(o.space)
    if isinstance(reference, IndexedCollection):
        source, where = reference, None
        reference_space = reference.space(target_space.name)
        target_space.check_encoder(reference_space.encoder)
    else:
        source, reference_space, where = collection, target_space, reference
    ref_ids, vectors = item_matrix(source, reference_space, where=where)
    if not ref_ids:
        raise InvalidInputError(f"the reference ({_describe(reference)}) matches no item with a "
                                f"vector in space {reference_space.name!r}; widen the filter")
    metric = "l2" if target_space.metric == "l2" else "ip"
    method = resolve_method(o.method, _has_texts(target_space))
    detector = make_detector(method, threshold_percentile=o.threshold_percentile, metric=metric,
                             language=target_space.keyword_language, **o.detector_params())
    texts = _texts(source, reference_space, ref_ids) if detector.needs_texts else None
    fields = field_texts(source.tables, free_text_fields(
        source.tables, exclude=reference_space.source_fields), ref_ids) if detector.reads_fields else None
    return ReferenceModel(detector.fit(vectors, texts=texts, fields=fields), target_space.encoder,
                          source.name, tuple(ref_ids), _describe(reference))


def anomalies(
    collection: IndexedCollection, options: AnomalyOptions | None = None, *,
    reference: FilterInput | IndexedCollection = None, targets: FilterInput | NewVectors = None,
    model: ReferenceModel | None = None,
) -> AnomalyResult:
    """Score ``targets`` against the reference and save the run; see the module docstring.

    The reference and the targets are what is compared, the options how. Pass a fitted
    ``model`` (e.g. ``ReferenceModel.load``) to reuse it instead of fitting on ``reference``
    (the method, its parameters and the threshold then come from it)."""
    o = options or AnomalyOptions()
    target_space = collection.space(o.space)
    if model is None:
        vectors_alone = isinstance(targets, NewVectors) and targets.texts is None
        model = fit_reference(collection, replace(o, method="knn") if vectors_alone
                              and o.method == "auto" else o, reference=reference)
    else:
        target_space.check_encoder(model.encoder)
    ids, vectors = _targets(collection, target_space, targets)
    if not ids:
        raise InvalidInputError(f"the targets ({_describe(targets)}) match no item with a vector "
                                f"in space {target_space.name!r}; check the filter")
    detector = model.detector
    texts = _target_texts(collection, target_space, targets, ids) if detector.needs_texts \
        else None
    fields = None if isinstance(targets, NewVectors) or texts is None else field_texts(
        collection.tables, [f for f in detector.text_fields() if f in collection.fields()], ids)
    scores = detector.score_samples(vectors, texts=texts, fields=fields)
    own_rows = _reference_rows(collection, model, ids)
    in_reference = own_rows >= 0
    scores[in_reference] = detector.reference_scores_[own_rows[in_reference]]
    percentiles = detector.percentiles(scores)
    near = _neighbours(model, vectors, own_rows, o.neighbours)
    order = np.argsort(scores, kind="stable")  # worst (least normal) first
    terms = detector.reference_terms()
    results = []
    for i in order:
        flagged = bool(scores[i] < detector.threshold_)
        words = terms.unusual_words(texts[i], UNUSUAL_WORDS) if flagged and terms and texts \
            else ()
        results.append(AnomalyScore(ids[i], float(scores[i]), float(percentiles[i]), flagged,
                                    bool(in_reference[i]), near[i], words))
    params_out = {
        "method": detector.method, "detector": detector.get_params(),
        "threshold_percentile": detector.threshold_percentile, "space": target_space.name,
        "reference": model.selection,
        "targets": _describe(targets), "neighbours": o.neighbours}
    batch = drift("batch", len(ids), sum(r.is_anomaly for r in results),
                  1 - detector.threshold_percentile / 100)
    summary = {"targets": len(ids), "anomalies": batch.flagged,
               "reference": len(model.reference_ids), "threshold": detector.threshold_,
               "expected_share": batch.expected, "drift_p_value": batch.p_value}
    reference_xy, target_xy = _map(detector.reference_, vectors)
    run = save_run(collection, "anomalies", params_out, {
        "scores": _scores_table(results, target_xy[order]),
        "reference": pa.table({"id": pa.array(model.reference_ids, pa.string()),
                               "score": detector.reference_scores_,
                               "x": reference_xy[:, 0], "y": reference_xy[:, 1]}),
    }, summary)
    return AnomalyResult(run.run_id, detector.method, detector.threshold_percentile,
                         detector.threshold_, len(model.reference_ids), results, batch)


def _has_texts(space: VectorSpace) -> bool:
    """Whether a space's items have source texts the text detectors can read."""
    return space.encoder.modality == "text" and bool(space.source_fields)


def _texts(collection: IndexedCollection, space: VectorSpace, ids: Sequence[str]) -> list[str]:
    """The source texts of stored items: their source fields joined, as the BM25 index has them."""
    if not _has_texts(space):
        raise InvalidInputError(f"space {space.name!r} holds {space.encoder.modality} vectors, "
                                "not texts: the lexical and combined detectors read texts; use "
                                "a vector method such as knn")
    known = [f for f in space.source_fields if f in collection.fields()]
    columns = [collection.field_values(f, ids) for f in known]
    return [" ".join(str(value or "") for value in values) for values in zip(*columns, strict=True)
            ] if columns else [""] * len(ids)


def _target_texts(collection: IndexedCollection, space: VectorSpace,
                  targets: FilterInput | NewVectors, ids: list[str]) -> list[str]:
    if not isinstance(targets, NewVectors):
        return _texts(collection, space, ids)
    if targets.texts is None:
        raise InvalidInputError("new items given as vectors alone cannot be scored by a detector "
                                "that reads texts (lexical, combined, the default auto of a text "
                                "space): send their texts, or choose method knn")
    if len(targets.texts) != len(ids):
        raise InvalidInputError(f"{len(targets.texts)} texts for {len(ids)} new items; give "
                                "one text each")
    return list(targets.texts)


def _targets(collection: IndexedCollection, space: VectorSpace, targets: FilterInput | NewVectors
             ) -> tuple[list[str], np.ndarray]:
    if not isinstance(targets, NewVectors):
        return item_matrix(collection, space, where=targets)
    vectors = np.atleast_2d(np.asarray(targets.vectors, dtype=np.float32))
    if vectors.shape[1] != space.dim:
        raise InvalidInputError(f"new vectors have {vectors.shape[1]} dimensions; space "
                                f"{space.name!r} has {space.dim}")
    ids = list(targets.ids) if targets.ids is not None else [f"new-{i}" for i in range(len(vectors))]
    if len(ids) != len(vectors):
        raise InvalidInputError(f"{len(ids)} ids for {len(vectors)} new vectors; give one id each")
    return ids, normalise_for(space, vectors)


def _reference_rows(collection: IndexedCollection, model: ReferenceModel, ids: list[str]) -> np.ndarray:
    """Row of each target in the reference, -1 for targets that are not reference items."""
    if model.reference_collection != collection.name:
        return np.full(len(ids), -1, dtype=np.int64)
    row_of = {item_id: row for row, item_id in enumerate(model.reference_ids)}
    return np.array([row_of.get(i, -1) for i in ids], dtype=np.int64)


def _neighbours(model: ReferenceModel, vectors: np.ndarray, own_rows: np.ndarray, n: int
                ) -> list[tuple[Neighbour, ...]]:
    similarities, rows = model.detector.nearest_reference(vectors, n + 1)
    found = []
    for own, sims, near in zip(own_rows, similarities, rows, strict=True):
        pairs = [(model.reference_ids[r], float(s)) for r, s in zip(near, sims, strict=True)
                 if r >= 0 and r != own]
        found.append(tuple(Neighbour(i, s) for i, s in pairs[:n]))
    return found


def _map(reference: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates of the reference and the targets: the reference's two principal axes."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, svd_solver="covariance_eigh").fit(reference)
    return pca.transform(reference), pca.transform(targets)


def _scores_table(results: list[AnomalyScore], xy: np.ndarray) -> pa.Table:
    return pa.table({
        "id": pa.array([r.id for r in results], pa.string()),
        "score": pa.array([r.score for r in results], pa.float64()),
        "percentile": pa.array([r.percentile for r in results], pa.float64()),
        "is_anomaly": pa.array([r.is_anomaly for r in results], pa.bool_()),
        "in_reference": pa.array([r.in_reference for r in results], pa.bool_()),
        "neighbour_ids": pa.array([[n.id for n in r.neighbours] for r in results],
                                  pa.list_(pa.string())),
        "neighbour_similarities": pa.array([[n.similarity for n in r.neighbours] for r in results],
                                           pa.list_(pa.float64())),
        "unusual_words": pa.array([list(r.unusual_words) for r in results],
                                  pa.list_(pa.string())),
        "x": pa.array(xy[:, 0], pa.float64()),
        "y": pa.array(xy[:, 1], pa.float64()),
    })


def _describe(selection: Any) -> Any:
    """How a reference or target set was chosen, as JSON for the run's parameters."""
    if isinstance(selection, NewVectors):
        return {"new_items": len(selection.vectors)}
    if isinstance(selection, IndexedCollection):
        return {"collection": selection.name}
    return {"filter": filter_to_json(selection)}
