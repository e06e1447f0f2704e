"""Label mismatch: items whose label disagrees with what their vectors (and words) say it should be.

Two witnesses, each giving every item a distribution over the labels, never using the item's own
label to judge it:

- ``knn``: the labels of the item's ``k`` nearest other items (cosine, the item itself left out),
  as shares of the vote: "21 of 30 neighbours say games". ``k`` is capped at the other labelled
  items there are (``neighbours_for``): a collection of 12 items gets a vote of the 11 others.
- ``probe``: a classifier head's out-of-fold probabilities (``heads.cross_validated_probe``:
  logistic regression on the vectors, beside TF-IDF of the source text and a word block of each
  other free-text field, ``lexical.free_text_fields``, in a text space), each item
  predicted by the head of the fold that did not see it, as confident learning prescribes; an
  item's near-duplicates are in its fold (``folds.fold_groups``), so a copy's label never vouches
  for it.

``knn+probe``, the default, blends them (``KNN_WEIGHT`` of the vote, ``k=30``). On the
development sample of Debian sections (1,967 packages, 5% of labels flipped, three seeded flips;
near-duplicates in one fold by single linkage) the precision of the top 5% was 0.647 for the
probe alone and 0.660 blended with 30 neighbours (better on two seeds, even on the third; 20
neighbours 0.660, 10 0.653; weights 0.2-0.4 alike), and 0.337 for the vote of 30 neighbours
alone against 0.150 for 10 (so ``k`` is 30 for both). An earlier study there (group folds by
average linkage: probe 0.660, blend 0.683): ranking by normalised margin (0.503), by entropy over
self-confidence (0.643), by self-confidence over its label's threshold (0.500), or 10 folds
instead of 5 (0.667) did not help. A word block of the packages' titles beside the long
description's raised the blend from 0.650 to 0.707 (means of the three seeds); character n-grams
did not (0.653 alone, 0.703 with the titles), so the probe reads words only. Then, as confident
learning (Northcutt et al., 2021; cleanlab) does with a classifier's probabilities:

- ranking by self-confidence: an item's ``support`` is the weight its own label gets, its
  ``score = 1 - support``, worst first;
- per-class thresholds: the mean support of each label's own items. A label is *confident* for an
  item when its weight reaches that label's threshold; ``suggested`` is the confident label of
  highest weight (the label of highest weight when none is), and ``confidence`` its weight.

What is flagged: the first N items of that ranking (the N most likely errors): ``budget=N``, or
by default as many as confident learning estimates are wrong (``estimated_errors``: the
off-diagonal count of the calibrated confident joint, cleanlab's ``num_label_issues``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pyarrow as pa

from ..errors import InvalidInputError
from ..filters import FilterInput, filter_to_json
from ..folds import fold_groups
from ..heads import FieldTexts, cross_validated_probe, source_texts
from ..indexed_collection import IndexedCollection
from ..kernels import leave_one_out
from ..lexical import field_texts, free_text_fields
from ..options import SEED_MAX, check_bounds, option
from ..runs import save_run
from ._items import selected_unit_vectors

__all__ = ["KNN_WEIGHT", "LabelMethod", "LabelMismatch", "LabelMismatchOptions",
           "LabelMismatchResult", "confident_labels", "estimated_errors", "knn_label_votes",
           "label_mismatch", "neighbours_for", "probe_probabilities"]

LabelMethod = Literal["knn", "probe", "knn+probe"]
PROBE_FOLDS = 5
# The probe's C for label checks (one fit per fold: an inner search would cost ~6 times as
# much). Chosen, like KNN_WEIGHT and k, on the development split of Debian sections with 5% of the
# labels flipped (benchmarks/label_mismatch.py; figures in the module docstring).
PROBE_REGULARIZATION = {False: 1.0, True: 10.0}
# Label checks read the words alone (no character n-grams): the features their figures were
# measured with; the probe's character block has not been measured on flipped labels.
KNN_WEIGHT = 0.3


@dataclass(frozen=True)
class LabelMismatch:
    """One item: its ``label``, the ``suggested`` one with its ``confidence`` (weight in [0, 1]),
    the ``support`` its own label gets and ``score = 1 - support``; ``flagged``: among the most
    likely errors (the budget's, or as many as confident learning estimates). ``knn_support``
    and ``probe_support`` are the two witnesses' weights for the given label (``probe_support`` is
    None without a probe)."""

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
    """A label-mismatch run; ``items`` worst first, the first ``flagged`` of them flagged (the
    ``budget``, or confident learning's estimate of the wrong labels when it is None); ``lexical``
    says the probe read the source text too. ``unlabelled`` counts selected items with vectors
    but no label (left out)."""

    run_id: str
    label_field: str
    space: str
    method: str
    k: int
    budget: int | None
    lexical: bool
    items: list[LabelMismatch]
    flagged: int
    unlabelled: int
    warnings: list[str]
    seconds: float
    fold_groups: int  # groups of near-duplicates the probe kept in one fold (0 without a probe)


@dataclass(frozen=True)
class LabelMismatchOptions:
    """Which witnesses ``label_mismatch`` asks and what it flags (see the module docstring)."""

    space: str | None = option(help="Vector space (default: the only one, or 'text').")
    method: LabelMethod = option("knn+probe", help=(
        "Witnesses: knn+probe (both, blended), probe (a cross-validated classifier head) or "
        "knn (neighbours' votes)."))
    k: int = option(30, ge=1, help=(
        "Neighbours that vote (at most every other labelled item: fewer in a smaller set)."))
    lexical: bool = option(True, help=(
        "Let the probe read TF-IDF weights of the text the vectors came from (text spaces)."))
    budget: int | None = option(ge=1, help=(
        "Flag this many items, the most likely errors first; default: as many as confident "
        "learning estimates are wrong."))
    where: FilterInput = option(help="Which items to judge (default: all).")
    seed: int = option(0, ge=0, le=SEED_MAX, help="Seed of the probe's folds.")

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int):
            raise InvalidInputError(f"k (neighbours) must be a positive whole number, not {self.k!r}")
        if self.method not in get_args(LabelMethod):
            raise InvalidInputError(f"unknown label mismatch method {self.method!r}; use one of "
                                    f"{', '.join(get_args(LabelMethod))}")
        check_bounds(self)


def label_mismatch(collection: IndexedCollection, label_field: str,
                   options: LabelMismatchOptions | None = None) -> LabelMismatchResult:
    """Find the items whose ``label_field`` disagrees with their witnesses (``options.method``);
    saves the run (operation ``label_mismatch``, table ``items``) and returns the items worst
    first."""
    o = options or LabelMismatchOptions()
    started = time.perf_counter()
    vs = collection.space(o.space)
    ids, vectors = selected_unit_vectors(collection, vs.name, o.where, at_least=0,
                                         what="label mismatch")
    raw = collection.field_values(label_field, ids)  # NotFoundError names the fields there are
    labelled = [i for i, value in enumerate(raw) if value is not None and str(value).strip()]
    labels = np.array([str(raw[i]) for i in labelled], dtype=object)
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise InvalidInputError(
            f"label mismatch needs at least two different values of {label_field!r}; the "
            f"{len(labelled)} labelled items selected have {classes or 'none'}")
    k = neighbours_for(o.k, len(labelled))
    vectors = vectors[labelled]
    codes = np.searchsorted(classes, labels)
    knn_weights = knn_label_votes(vectors, codes, len(classes), k)
    probe_weights, texts, merged = None, None, 0
    if o.method != "knn":
        labelled_ids = [ids[i] for i in labelled]
        texts = source_texts(collection, vs, labelled_ids) if o.lexical else None
        names = [] if texts is None else free_text_fields(
            collection.tables, exclude={label_field, *vs.source_fields})
        groups = fold_groups(collection, labelled_ids, vectors)
        probe_weights = probe_probabilities(
            vectors, codes, len(classes), o.seed, texts, groups.codes,
            field_texts(collection.tables, names, labelled_ids) if names else None)
        merged = groups.merged
    weights = (knn_weights if probe_weights is None else probe_weights if o.method == "probe"
               else KNN_WEIGHT * knn_weights + (1 - KNN_WEIGHT) * probe_weights)
    rows = np.arange(len(codes))
    support = weights[rows, codes]
    confident = confident_labels(weights, codes)
    suggested = np.where(confident >= 0, confident, weights.argmax(axis=1))
    order = np.lexsort((rows, -weights[rows, suggested], support))  # least support first
    flagged = np.zeros(len(codes), dtype=bool)
    flagged[order[:o.budget if o.budget is not None else estimated_errors(confident, codes)]] = True
    items = [LabelMismatch(
        id=ids[labelled[i]], label=labels[i], suggested=classes[suggested[i]],
        confidence=float(weights[i, suggested[i]]), support=float(support[i]),
        score=float(1 - support[i]), flagged=bool(flagged[i]),
        knn_support=float(knn_weights[i, codes[i]]),
        probe_support=None if probe_weights is None else float(probe_weights[i, codes[i]]),
    ) for i in order]
    lexical = texts is not None
    warnings_out = vs.encoder.warnings()
    params = {"label_field": label_field, "space": vs.name, "method": o.method, "k": k,
              "lexical": lexical, "budget": o.budget, "where": filter_to_json(o.where),
              "seed": o.seed}
    summary = {"items": len(items), "flagged": int(flagged.sum()), "classes": len(classes),
               "unlabelled": len(ids) - len(labelled), "warnings": warnings_out,
               "fold_groups": merged}
    run = save_run(collection, "label_mismatch", params, {"items": _table(items)},
                   {**summary, "seconds": time.perf_counter() - started})
    return LabelMismatchResult(run.run_id, label_field, vs.name, o.method, k, o.budget, lexical,
                               items, int(flagged.sum()), len(ids) - len(labelled), warnings_out,
                               time.perf_counter() - started, merged)


def neighbours_for(k: int, labelled: int) -> int:
    """The neighbours that vote among ``labelled`` items when ``k`` are asked for: at most every
    other labelled item (``labelled - 1``), so no collection is too small for the default ``k``
    (a vote of all the others is the labels' shares without the item's own)."""
    return min(k, labelled - 1)


def confident_labels(weights: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Confident learning's label for each item ``(n,)``: among the labels whose weight
    ``(n, classes)`` reaches their threshold (the mean weight a label gets from its own items),
    the one of highest weight; -1 where none reaches its threshold."""
    n_classes = weights.shape[1]
    own = np.bincount(codes, minlength=n_classes)
    thresholds = np.bincount(codes, weights=weights[np.arange(len(codes)), codes],
                             minlength=n_classes) / np.maximum(own, 1)
    confident = np.where(weights >= thresholds[None, :], weights, -1.0)
    return np.where(confident.max(axis=1) >= 0, confident.argmax(axis=1), -1)


def estimated_errors(confident: np.ndarray, codes: np.ndarray) -> int:
    """How many labels confident learning estimates are wrong, from each item's confident label
    (``confident_labels``; -1: none) and given label ``codes``: the off-diagonal count of the
    confident joint (given x confident label, over items with a confident label) after each row is
    scaled to its label's item count (calibration: items with no confident label are spread
    like the rest of their label)."""
    n_classes = int(max(codes.max(), confident.max())) + 1
    counted = confident >= 0
    joint = np.zeros((n_classes, n_classes))
    np.add.at(joint, (codes[counted], confident[counted]), 1.0)
    given = np.bincount(codes, minlength=n_classes).astype(np.float64)
    counted_per_label = joint.sum(axis=1)
    kept = np.where(counted_per_label > 0,
                    np.diag(joint) * given / np.maximum(counted_per_label, 1), given)
    return round(float(np.sum(given - kept)))


def knn_label_votes(vectors: np.ndarray, codes: np.ndarray, n_classes: int, k: int) -> np.ndarray:
    """``(n, n_classes)`` shares of each item's ``k`` nearest other items (unit ``vectors``, exact
    cosine search) carrying each label code; the item itself is never its own neighbour."""
    _, neighbours = leave_one_out(vectors, k)
    rows = np.arange(len(vectors))
    votes = np.zeros((len(vectors), n_classes))
    np.add.at(votes, (np.repeat(rows, k), codes[neighbours].ravel()), 1.0)
    return votes / k


def probe_probabilities(vectors: np.ndarray, codes: np.ndarray, n_classes: int, seed: int,
                        texts: list[str] | None = None, groups: np.ndarray | None = None,
                        fields: FieldTexts | None = None) -> np.ndarray:
    """``(n, n_classes)`` out-of-sample probabilities of the probe head (on the vectors, beside
    TF-IDF of ``texts`` and a word block of each of ``fields`` when given; every code in
    ``0..n_classes-1`` present among ``codes``): each item is predicted by a head fitted on the
    other folds of a stratified
    ``PROBE_FOLDS``-fold split (fewer folds when a label has fewer items; a label absent from a
    fold's training part gets 0 there), the items of one of ``groups`` ``(n,)`` in one fold."""
    smallest = int(np.bincount(codes, minlength=n_classes).min())
    with warnings.catch_warnings():
        # A label with fewer items than folds: scikit-learn warns, and gives it 0 where a fold's
        # training part lacks it, as documented above.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        probabilities, _, _ = cross_validated_probe(
            vectors, codes, texts, seed=seed,
            folds=min(PROBE_FOLDS, max(2, smallest),
                      len(np.unique(groups)) if groups is not None else PROBE_FOLDS),
            regularization=PROBE_REGULARIZATION[texts is not None], groups=groups,
            characters=False, fields=fields)
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
