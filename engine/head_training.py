"""Train a head of any kind on frozen embeddings and a field, judge it out of fold, save it.

``train_head(collection, field, HeadOptions(kind=...))``:

- ``logistic`` — the linear probe (``probes.train_probe``, its ``ProbeResult``);
- ``knn`` — a similarity-weighted k-NN vote (``knn_head``), ``k`` by leave-one-out on each
  training part; reported like the probe: accuracy, macro-F1, per-class precision/recall/F1;
- ``regression`` — ridge regression of a number (``linear_heads.RidgeHead``), alpha by inner
  cross-validation; reported: out-of-fold R² and MAE beside the MAE of predicting each training
  part's mean;
- ``multilabel`` — one-vs-rest logistic regression of a field holding a list of labels
  (``linear_heads.MultiLabelHead``), its threshold chosen by inner cross-validation; reported:
  micro- and macro-F1 and per-label precision/recall/F1 of the labels predicted out of fold.

``kind="auto"`` (the default) takes ``regression`` for a numeric field, ``multilabel`` for a list
field, ``logistic`` otherwise. Items whose value is null are unlabelled: they are predicted by
the head fitted on all labelled items, which is saved with the collection (``saved_heads``) like
the probe's. Labels with fewer items than folds are left out (``skipped``). Folds are seeded
shuffled k-fold over the items sorted by id, stratified by label for ``knn``, with near-duplicates
in one fold as the probe's are (``folds.group_folds``; ``fold_groups`` counts the groups), so a
copy never vouches for its twin. The run is saved
(operation ``classify``) with tables ``predictions`` (every item: out of fold for the labelled
ones) and, for the classifiers, ``classes``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import InvalidInputError
from .filters import filter_to_json
from .folds import fold_groups, group_folds
from .heads import source_texts, take
from .indexed_collection import IndexedCollection
from .kernels import unit_rows
from .knn_head import KnnHead
from .linear_heads import MultiLabelHead, RidgeHead
from .options import option
from .probes import ClassReport, ProbeOptions, ProbeResult, class_reports, train_probe
from .runs import save_run
from .saved_heads import Head, HeadPrediction, apply_head, save_head
from .vectors import item_matrix

__all__ = ["KINDS", "HeadOptions", "HeadReport", "HeadResult", "ItemPrediction", "resolve_kind",
           "train_head"]

KINDS = ("auto", "logistic", "knn", "multilabel", "regression")
# DuckDB's number types; DECIMAL(p, s) is matched by its prefix.
_NUMBERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE"}


@dataclass(frozen=True)
class HeadOptions(ProbeOptions):
    """``ProbeOptions`` and the kind of head (see the module docstring); ``regularization`` is
    the C of the logistic kinds, ``doubt_below`` the probe's alone."""

    kind: str = option("auto", help=(
        "logistic, knn, multilabel or regression; auto: regression for a numeric field, "
        "multilabel for a list field, logistic otherwise."))
    neighbours: int | None = option(ge=1, le=1000, help=(
        "k of the knn head (default: chosen by leave-one-out on each training part)."))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind not in KINDS:
            raise InvalidInputError(f"unknown head kind {self.kind!r}; kinds: {', '.join(KINDS)}")
        if self.regularization is not None and self.kind in ("knn", "regression"):
            raise InvalidInputError(
                f"regularization is the C of the logistic heads; a {self.kind} head chooses its "
                f"own ({'k: set neighbours' if self.kind == 'knn' else 'alpha, by inner CV'})")


@dataclass(frozen=True)
class ItemPrediction:
    """What the head fitted on all labelled items predicts for an unlabelled item."""

    id: str
    prediction: HeadPrediction


@dataclass(frozen=True)
class HeadReport:
    """The out-of-fold report of a ``knn``, ``regression`` or ``multilabel`` head.

    ``metrics``: ``accuracy``, ``macro_f1`` (knn); ``r2``, ``mae``, ``baseline_mae`` (regression:
    the MAE of each training part's mean); ``micro_f1``, ``macro_f1`` (multilabel).
    ``fold_scores``: accuracy, R² or micro-F1 of each fold; ``fold_parameters``: what each fold
    chose, named by ``parameter`` (``k``, ``alpha``, ``threshold``). ``per_label``: the
    classifiers' per-class (or per-label) report; ``skipped``: labels with fewer items than
    folds, left out."""

    metrics: dict[str, float]
    fold_scores: list[float]
    parameter: str
    fold_parameters: list[float]
    per_label: list[ClassReport]
    skipped: dict[str, int]


@dataclass(frozen=True)
class HeadResult(HeadReport):
    """A trained ``knn``, ``regression`` or ``multilabel`` head: its ``HeadReport`` and what was
    trained, predicted and saved."""

    run_id: str
    kind: str
    label_field: str
    space: str
    labelled: int
    folds: int
    lexical: bool
    predictions: list[ItemPrediction]
    head: str  # the name the head fitted on all labelled items is saved under
    fold_groups: int  # groups of near-duplicates among the labelled items, each kept in one fold


def resolve_kind(kind: str, field: str, field_type: str) -> str:
    """The kind of head ``kind`` means for a field of DuckDB type ``field_type``, refusing a kind
    the field cannot feed."""
    is_list = field_type.endswith("[]")
    number = field_type in _NUMBERS or field_type.startswith("DECIMAL")
    if kind == "auto":
        return "multilabel" if is_list else "regression" if number else "logistic"
    if kind == "multilabel" and not is_list:
        raise InvalidInputError(
            f"field {field!r} holds {field_type}, not lists; a multilabel head needs a list of "
            "labels per item (a JSON array such as [\"a\", \"b\"]): store them as lists, or "
            "train --kind logistic for one label per item")
    if kind != "multilabel" and is_list:
        raise InvalidInputError(
            f"field {field!r} holds lists ({field_type}); a {kind} head needs one "
            f"{'number' if kind == 'regression' else 'label'} per item: train --kind multilabel")
    return kind


def train_head(collection: IndexedCollection, label_field: str,
               options: HeadOptions | None = None) -> ProbeResult | HeadResult:
    """Train, judge and save a head on ``label_field``; see the module docstring."""
    o = options or HeadOptions()
    fields = collection.fields()
    if label_field not in fields:
        raise InvalidInputError(f"collection {collection.name!r} has no field {label_field!r}; "
                                f"fields: {', '.join(fields) or 'none'}")
    kind = resolve_kind(o.kind, label_field, fields[label_field])
    if kind != "logistic" and o.text_fields:
        raise InvalidInputError(
            f"text_fields are read by the logistic head only; a {kind} head reads the source "
            "text's words alone: leave text_fields out, or train --kind logistic")
    if kind == "logistic":
        return train_probe(collection, label_field, ProbeOptions(**{
            f.name: getattr(o, f.name) for f in dataclasses.fields(ProbeOptions)}))
    space = collection.space(o.space)
    selected = sorted(collection.ids_matching(o.where))  # the folds depend on the order
    values = dict(zip(selected, collection.field_values(label_field, selected), strict=True))
    ids, vectors = item_matrix(collection, space, selected)
    texts = source_texts(collection, space, ids) if o.lexical and kind != "knn" else None
    stored = [values[i] for i in ids]
    labelled = np.array([v is not None for v in stored], dtype=bool)
    trainer = {"knn": _knn, "regression": _regression, "multilabel": _multilabel}[kind]
    fit_rows = np.flatnonzero(labelled)
    fit_ids = [ids[i] for i in fit_rows]
    groups = fold_groups(collection, fit_ids, unit_rows(vectors[fit_rows]))
    report = trainer(label_field, fit_ids, [stored[i] for i in fit_rows], vectors[fit_rows],
                     take(texts, fit_rows), groups.codes, o)
    unlabelled = np.flatnonzero(~labelled)
    new = apply_head(report.final, vectors[unlabelled], take(texts, unlabelled), 3) \
        if len(unlabelled) else []
    predictions = [ItemPrediction(ids[i], p) for i, p in zip(unlabelled, new, strict=True)]
    run = save_run(collection, "classify", {
        "kind": kind, "label_field": label_field, "space": space.name,
        "where": filter_to_json(o.where), "folds": o.folds, "seed": o.seed,
        "lexical": texts is not None, "regularization": o.regularization,
        "neighbours": o.neighbours, report.parameter: report.fold_parameters}, {
        "predictions": _predictions_table(report, predictions),
        **({"classes": pa.Table.from_pylist([vars(c) for c in report.per_label])}
           if report.per_label else {}),
    }, {**report.metrics, "labelled": len(report.ids), "unlabelled": len(predictions),
        "skipped": report.skipped, "fold_groups": groups.merged,
        "items_in_fold_groups": groups.items_merged})
    head = save_head(collection, o.save_as or label_field, report.final, space, label_field,
                     run.run_id, len(report.ids))
    return HeadResult(
        **{f.name: getattr(report, f.name) for f in dataclasses.fields(HeadReport)},
        run_id=run.run_id, kind=kind, label_field=label_field, space=space.name,
        labelled=len(report.ids), folds=o.folds, lexical=texts is not None,
        predictions=predictions, head=head.name, fold_groups=groups.merged)


@dataclass(frozen=True)
class _Report(HeadReport):
    """What one kind's trainer found: its ``HeadReport``, the items it trained on, their stored
    and out-of-fold values as text (lists joined by ", ") for the run's table, and the head
    fitted on all."""

    ids: list[str]
    stored: list[str]
    out_of_fold: list[str]
    final: Head


def _enough(label_field: str, n: int, folds: int, what: str) -> None:
    if n < 2 * folds:
        raise InvalidInputError(
            f"field {label_field!r} has {n} items with {what}; cross-validating {folds} folds "
            f"needs at least {2 * folds}: label more items or lower folds")


# The trainers' folds: ``folds.group_folds`` over ``groups`` (``fold_groups`` codes, one per item).


def _knn(label_field: str, ids: list[str], stored: list[Any], vectors: np.ndarray,
         texts: Sequence[str] | None, groups: np.ndarray, o: HeadOptions) -> _Report:
    labels = np.array([str(v) for v in stored], dtype=object)
    counts = Counter(labels)
    skipped = {label: n for label, n in counts.items() if n < o.folds}
    keep = np.flatnonzero([label not in skipped for label in labels])
    labels, vectors, groups = labels[keep].astype(str), vectors[keep], groups[keep]
    classes = np.unique(labels)
    if len(classes) < 2:
        raise InvalidInputError(
            f"field {label_field!r} has {len(classes)} class(es) with at least {o.folds} labelled "
            "items; a knn head needs two or more: label more items or lower folds")
    proba = np.zeros((len(labels), len(classes)))
    scores, chosen = [], []
    for fit, held in group_folds(labels, groups, o.folds, o.seed):
        head = KnnHead(o.neighbours).fit(vectors[fit], labels[fit])
        proba[np.ix_(held, np.searchsorted(classes, head.classes_))] = head.predict_proba(
            vectors[held])
        scores.append(float(np.mean(classes[proba[held].argmax(axis=1)] == labels[held])))
        chosen.append(float(head.k_))
    predicted = classes[proba.argmax(axis=1)]
    per_label = class_reports(labels, predicted, list(classes))
    return _Report(
        metrics={"accuracy": float(np.mean(predicted == labels)),
                 "macro_f1": float(np.mean([c.f1 for c in per_label]))},
        fold_scores=scores, parameter="k", fold_parameters=chosen, per_label=per_label,
        skipped=skipped, ids=[ids[i] for i in keep], stored=list(labels),
        out_of_fold=list(predicted), final=KnnHead(o.neighbours).fit(vectors, labels))


def _regression(label_field: str, ids: list[str], stored: list[Any], vectors: np.ndarray,
                texts: Sequence[str] | None, groups: np.ndarray, o: HeadOptions) -> _Report:
    from sklearn.metrics import mean_absolute_error, r2_score

    y = np.array([_number(label_field, item, value) for item, value in zip(ids, stored, strict=True)])
    _enough(label_field, len(y), o.folds, "a number")
    predicted, baseline = np.zeros(len(y)), np.zeros(len(y))
    scores, chosen = [], []
    for fit, held in group_folds(None, groups, o.folds, o.seed):
        head = RidgeHead(seed=o.seed).fit(vectors[fit], y[fit], take(texts, fit))
        predicted[held] = head.predict(vectors[held], take(texts, held))
        baseline[held] = y[fit].mean()
        scores.append(float(r2_score(y[held], predicted[held])))
        chosen.append(float(head.alpha_))
    metrics = {"r2": float(r2_score(y, predicted)), "mae": float(mean_absolute_error(y, predicted)),
               "baseline_mae": float(mean_absolute_error(y, baseline))}
    return _Report(metrics=metrics, fold_scores=scores, parameter="alpha",
                   fold_parameters=chosen, per_label=[], skipped={}, ids=ids,
                   stored=[repr(v) for v in y.tolist()],
                   out_of_fold=[repr(v) for v in predicted.tolist()],
                   final=RidgeHead(seed=o.seed).fit(vectors, y, texts))


def _number(label_field: str, item: str, value: Any) -> float:
    """``value`` as a finite float, or an error naming the item and the fix."""
    try:
        number = float(value)
        if isinstance(value, bool) or not math.isfinite(number):
            raise ValueError(value)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(
            f"item {item!r}: field {label_field!r} holds {value!r}, not a number; a regression "
            "head needs a finite number per labelled item: fix the value, set it to null "
            "(unlabelled), or train --kind logistic to treat the values as labels") from e
    return number


def _multilabel(label_field: str, ids: list[str], stored: list[Any], vectors: np.ndarray,
                texts: Sequence[str] | None, groups: np.ndarray, o: HeadOptions) -> _Report:
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    sets = [_label_set(label_field, item, value) for item, value in zip(ids, stored, strict=True)]
    counts = Counter(label for labels in sets for label in labels)
    skipped = {label: n for label, n in counts.items() if n < o.folds}
    classes = sorted(set(counts) - set(skipped))
    if not classes:
        raise InvalidInputError(
            f"no label of field {label_field!r} is held by at least {o.folds} items; a multilabel "
            "head needs some: label more items or lower folds")
    _enough(label_field, len(sets), o.folds, "labels")
    column = {label: j for j, label in enumerate(classes)}
    y = np.zeros((len(sets), len(classes)), dtype=np.int8)
    for i, labels in enumerate(sets):
        y[i, [column[label] for label in labels if label in column]] = 1
    predicted = np.zeros(y.shape, dtype=bool)
    scores, chosen = [], []
    for fit, held in group_folds(None, groups, o.folds, o.seed):
        head = MultiLabelHead(classes, o.regularization, seed=o.seed).fit(
            vectors[fit], y[fit], take(texts, fit))
        predicted[held] = head.predict_proba(vectors[held], take(texts, held)) >= head.threshold_
        scores.append(float(f1_score(y[held], predicted[held], average="micro", zero_division=0)))
        chosen.append(head.threshold_)
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, zero_division=0)
    per_label = [ClassReport(c, float(p), float(r), float(f), int(s))
                 for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)]
    names = np.array(classes, dtype=object)
    return _Report(
        metrics={"micro_f1": float(f1_score(y, predicted, average="micro", zero_division=0)),
                 "macro_f1": float(f1_score(y, predicted, average="macro", zero_division=0))},
        fold_scores=scores, parameter="threshold", fold_parameters=chosen, per_label=per_label,
        skipped=skipped, ids=ids, stored=[", ".join(sorted(labels)) for labels in sets],
        out_of_fold=[", ".join(names[row]) for row in predicted],
        final=MultiLabelHead(classes, o.regularization, seed=o.seed).fit(vectors, y, texts))


def _label_set(label_field: str, item: str, value: Any) -> set[str]:
    """The labels of a list value, or an error naming the item and the fix."""
    fix = ("set the field to null to leave the item unlabelled, or filter it out (e.g. where "
           f"len({label_field}) > 0)")
    if not isinstance(value, list | tuple):
        raise InvalidInputError(f"item {item!r}: field {label_field!r} holds {value!r}, not a "
                                f"list of labels; store a JSON array of labels, or {fix}")
    if not value:
        raise InvalidInputError(f"item {item!r}: field {label_field!r} is an empty list; a "
                                f"multilabel head needs at least one label per labelled item: {fix}")
    if any(label is None or not str(label).strip() for label in value):
        raise InvalidInputError(f"item {item!r}: field {label_field!r} holds a null or blank "
                                f"label in {value!r}; remove it, or {fix}")
    return {str(label) for label in value}


def _predictions_table(report: _Report, predictions: list[ItemPrediction]) -> pa.Table:
    """Every item: labelled ones with their out-of-fold prediction, then the unlabelled ones
    (a number, a label or labels joined by ", ", as text)."""
    def shown(p: HeadPrediction) -> str:
        return repr(p.value) if p.value is not None else ", ".join(p.labels)

    n = len(predictions)
    return pa.table({
        "id": pa.array([*report.ids, *(p.id for p in predictions)], pa.string()),
        "predicted": pa.array([*report.out_of_fold, *(shown(p.prediction) for p in predictions)],
                              pa.string()),
        "labelled": pa.array([True] * len(report.ids) + [False] * n, pa.bool_()),
        "stored_label": pa.array([*report.stored, *([None] * n)], pa.string()),
    })
