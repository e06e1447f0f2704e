"""Label mismatch: items whose label disagrees with what their vectors say it should be.

Two witnesses, each giving every item a distribution over the labels, never using the item's own
label to judge it:

- ``knn`` (always): the labels of the item's ``k`` nearest other items (cosine, the item itself left
  out), as shares of the vote: "7 of 10 neighbours say games".
- ``probe`` (``probe=True``): a linear probe's out-of-sample probabilities — scikit-learn's
  ``LogisticRegression`` on standardised item vectors, each item predicted by the model of the
  cross-validation fold that did not see it (``kernels.cross_validated_probe``), as cleanlab
  recommends.

With both, the method is ``knn+probe`` and the distributions are averaged. An item's ``support`` is
the weight its own label gets (1: everyone agrees; 0: nobody does); its ``score`` is ``1 - support``,
worst first. ``suggested`` is the label of highest weight and ``confidence`` that weight; ``flagged``
says the suggestion differs from the given label.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import InvalidInputError
from ..filters import FilterInput, filter_to_json
from ..indexed_collection import IndexedCollection
from ..kernels import cross_validated_probe, leave_one_out
from ..options import SEED_MAX, check_bounds, option
from ..runs import save_run
from ._items import selected_unit_vectors

__all__ = ["LabelMismatch", "LabelMismatchOptions", "LabelMismatchResult", "knn_label_votes",
           "label_mismatch", "probe_probabilities"]

PROBE_FOLDS = 5
PROBE_MAX_ITER = 1000


@dataclass(frozen=True)
class LabelMismatch:
    """One item: its ``label``, the ``suggested`` one with its ``confidence`` (weight in [0, 1]),
    the ``support`` its own label gets and ``score = 1 - support``; ``flagged`` when the
    suggestion is not the given label. ``knn_support`` and ``probe_support`` are the two witnesses'
    weights for the given label (``probe_support`` is None without a probe)."""

    id: str
    label: str
    suggested: str
    confidence: float
    support: float
    score: float
    flagged: bool
    knn_support: float
    probe_support: float | None


@dataclass(frozen=True)
class LabelMismatchResult:
    """A label-mismatch run; ``items`` worst first, ``flagged`` of them disagree with the witnesses.
    ``unlabelled`` counts selected items with vectors but no label (left out)."""

    run_id: str
    label_field: str
    space: str
    method: str
    k: int
    items: list[LabelMismatch]
    flagged: int
    unlabelled: int
    warnings: list[str]
    seconds: float


@dataclass(frozen=True)
class LabelMismatchOptions:
    """Which witnesses ``label_mismatch`` asks (see the module docstring)."""

    space: str | None = option(help="Vector space (default: the only one, or 'text').")
    k: int = option(10, ge=1, help="Neighbours that vote.")
    probe: bool = option(False, help="Also ask a cross-validated logistic-regression probe "
                                     "(slower).")
    where: FilterInput = option(help="Which items to judge (default: all).")
    seed: int = option(0, ge=0, le=SEED_MAX, help="Seed of the probe's folds.")

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int):
            raise InvalidInputError(f"k (neighbours) must be a positive whole number, not {self.k!r}")
        check_bounds(self)


def label_mismatch(collection: IndexedCollection, label_field: str,
                   options: LabelMismatchOptions | None = None) -> LabelMismatchResult:
    """Find the items whose ``label_field`` disagrees with their neighbours (and with a
    cross-validated linear probe with ``options.probe``); saves the run (operation
    ``label_mismatch``, table ``items``) and returns the items worst first."""
    o = options or LabelMismatchOptions()
    space, k, probe, where, seed = o.space, o.k, o.probe, o.where, o.seed
    started = time.perf_counter()
    vs = collection.space(space)
    ids, vectors = selected_unit_vectors(collection, vs.name, where, at_least=0, what="label mismatch")
    raw = collection.field_values(label_field, ids)  # NotFoundError names the fields there are
    labelled = [i for i, value in enumerate(raw) if value is not None and str(value).strip()]
    labels = np.array([str(raw[i]) for i in labelled], dtype=object)
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise InvalidInputError(
            f"label mismatch needs at least two different values of {label_field!r}; the "
            f"{len(labelled)} labelled items selected have {classes or 'none'}")
    if len(labelled) <= k:
        raise InvalidInputError(f"label mismatch with k={k} neighbours needs more than {k} labelled "
                                f"items; {len(labelled)} are selected: lower k")
    vectors = vectors[labelled]
    codes = np.searchsorted(classes, labels)
    weights = knn_label_votes(vectors, codes, len(classes), k)
    knn_weights = weights
    probe_weights = None
    if probe:
        probe_weights = probe_probabilities(vectors, codes, len(classes), seed)
        weights = (knn_weights + probe_weights) / 2
    rows = np.arange(len(codes))
    support = weights[rows, codes]
    best = np.argmax(weights, axis=1)
    order = np.lexsort((rows, -weights[rows, best], support))  # least support first
    items = [LabelMismatch(
        id=ids[labelled[i]], label=labels[i], suggested=classes[best[i]],
        confidence=float(weights[i, best[i]]), support=float(support[i]),
        score=float(1 - support[i]), flagged=bool(best[i] != codes[i]),
        knn_support=float(knn_weights[i, codes[i]]),
        probe_support=None if probe_weights is None else float(probe_weights[i, codes[i]]),
    ) for i in order]
    method = "knn+probe" if probe else "knn"
    flagged = sum(item.flagged for item in items)
    warnings_out = vs.encoder.warnings()
    params = {"label_field": label_field, "space": vs.name, "method": method, "k": k,
              "where": filter_to_json(where), "seed": seed}
    summary = {"items": len(items), "flagged": flagged, "classes": len(classes),
               "unlabelled": len(ids) - len(labelled), "warnings": warnings_out}
    run = save_run(collection, "label_mismatch", params, {"items": _table(items)},
                   {**summary, "seconds": time.perf_counter() - started})
    return LabelMismatchResult(run.run_id, label_field, vs.name, method, k, items, flagged,
                               len(ids) - len(labelled), warnings_out, time.perf_counter() - started)


def knn_label_votes(vectors: np.ndarray, codes: np.ndarray, n_classes: int, k: int) -> np.ndarray:
    """``(n, n_classes)`` shares of each item's ``k`` nearest other items (unit ``vectors``, exact
    cosine search) carrying each label code; the item itself is never its own neighbour."""
    _, neighbours = leave_one_out(vectors, k)
    rows = np.arange(len(vectors))
    votes = np.zeros((len(vectors), n_classes))
    np.add.at(votes, (np.repeat(rows, k), codes[neighbours].ravel()), 1.0)
    return votes / k


def probe_probabilities(vectors: np.ndarray, codes: np.ndarray, n_classes: int, seed: int
                        ) -> np.ndarray:
    """``(n, n_classes)`` out-of-sample probabilities of a logistic-regression probe (every code in
    ``0..n_classes-1`` present among ``codes``): each item is predicted by a model fitted on the
    other folds of a stratified ``PROBE_FOLDS``-fold split (fewer folds when a label has fewer
    items; a label absent from a fold's training part gets 0 there)."""
    smallest = int(np.bincount(codes, minlength=n_classes).min())
    with warnings.catch_warnings():
        # A label with fewer items than folds: scikit-learn warns, and gives it 0 where a fold's
        # training part lacks it, as documented above.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        probabilities, _ = cross_validated_probe(
            vectors, codes, folds=min(PROBE_FOLDS, max(2, smallest)), seed=seed,
            max_iter=PROBE_MAX_ITER)
    return probabilities


def _table(items: list[LabelMismatch]) -> pa.Table:
    column: dict[str, Any] = {
        "id": pa.array([i.id for i in items], pa.string()),
        "label": pa.array([i.label for i in items], pa.string()),
        "suggested": pa.array([i.suggested for i in items], pa.string()),
        "confidence": pa.array([i.confidence for i in items], pa.float64()),
        "support": pa.array([i.support for i in items], pa.float64()),
        "score": pa.array([i.score for i in items], pa.float64()),
        "flagged": pa.array([i.flagged for i in items], pa.bool_()),
        "knn_support": pa.array([i.knn_support for i in items], pa.float64()),
        "probe_support": pa.array([i.probe_support for i in items], pa.float64()),
    }
    return pa.table(column)
