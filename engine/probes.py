"""Linear probes: a small classifier head trained on frozen embeddings and a label field.

``train_probe(collection, label_field, ProbeOptions(...))`` fits the head of ``heads`` (logistic
regression on the item vectors, beside TF-IDF of their source text in a text space with
``lexical``; its ``C`` chosen by inner cross-validation unless ``regularization`` is given) on the
items whose label is set, and reports:

- cross-validated accuracy (stratified k-fold) and the per-class report of the out-of-fold
  predictions (precision, recall, F1, support) — an honest estimate, no item predicts itself, nor
  its near-duplicates: they share a fold (``folds.fold_groups``; ``fold_groups`` counts them);
- predictions with probabilities for the unlabelled items (label null), by the head fitted on all
  labelled items;
- disagreements: labelled items whose stored label gets a low out-of-fold probability, with the
  label the head suggests and its confidence — candidates for mislabels.

Classes with fewer labelled items than folds cannot be cross-validated: they are left out and
listed in ``skipped_classes``. The run is saved (``runs.save_run``, operation ``classify``) with
tables ``predictions`` (every item), ``classes`` and ``disagreements``, and the head fitted on all
labelled items is saved with the collection (``saved_heads``, under ``save_as``) to label new
texts or pictures later.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .errors import InvalidInputError
from .filters import FilterInput, filter_to_json
from .folds import fold_groups
from .heads import (
    ProbeHead,
    choose_regularization,
    cross_validated_probe,
    source_texts,
    take,
    take_fields,
)
from .indexed_collection import IndexedCollection
from .kernels import unit_rows
from .lexical import field_texts, free_text_fields
from .options import SEED_MAX, check_bounds, option
from .runs import save_run
from .saved_heads import save_head
from .vectors import item_matrix

__all__ = ["ClassReport", "Disagreement", "Prediction", "ProbeOptions", "ProbeResult",
           "class_reports", "train_probe"]


@dataclass(frozen=True)
class ClassReport:
    """Out-of-fold precision, recall and F1 of one class; ``support``: its labelled items."""

    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Prediction:
    """The head's label for an unlabelled item and its probability."""

    id: str
    label: str
    probability: float


@dataclass(frozen=True)
class Disagreement:
    """A labelled item the head doubts: its ``stored_label`` got ``stored_probability`` out of
    fold; the head suggests ``suggested_label`` with probability ``confidence``."""

    id: str
    stored_label: str
    suggested_label: str
    confidence: float
    stored_probability: float


@dataclass(frozen=True)
class ProbeResult:
    run_id: str
    label_field: str
    classes: list[str]
    labelled: int
    folds: int
    accuracy: float
    fold_accuracies: list[float]
    fold_regularizations: list[float]
    lexical: bool
    per_class: list[ClassReport]
    predictions: list[Prediction]
    disagreements: list[Disagreement]
    skipped_classes: dict[str, int]
    head: str  # the name the head fitted on all labelled items is saved under
    fold_groups: int  # groups of near-duplicates among the labelled items, each kept in one fold
    text_fields: list[str]  # the free-text fields with a word block of their own


@dataclass(frozen=True)
class ProbeOptions:
    """How ``train_probe`` trains and judges its head (see the module docstring)."""

    space: str | None = option(help="Vector space (default: the only one, or 'text').")
    where: FilterInput = option(help="Items to train on and predict (default: all).")
    folds: int = option(5, ge=2, le=20, help="Cross-validation folds.")
    regularization: float | None = option(gt=0, help=(
        "scikit-learn's C of the logistic regression (smaller: stronger); default: chosen by "
        "inner cross-validation on each training part."))
    lexical: bool = option(True, help=(
        "Add TF-IDF weights of the text the vectors came from to the features (text spaces)."))
    text_fields: Sequence[str] | None = option(help=(
        "Free-text fields whose words get a TF-IDF block of their own beside the source text's "
        "(logistic heads with lexical on; none: an empty list). Default: every string field but "
        "the label and source fields whose values average two words or more."))
    doubt_below: float = option(0.1, gt=0, lt=1, help=(
        "List labelled items whose stored label gets a probability below this out of fold."))
    seed: int = option(0, ge=0, le=SEED_MAX, help="Seed of the cross-validation folds.")
    save_as: str | None = option(help=(
        "Name the head fitted on all labelled items is saved under, replacing one of that name "
        "(default: the label field); apply it to new items with predict."))

    def __post_init__(self) -> None:
        check_bounds(self)


def train_probe(collection: IndexedCollection, label_field: str,
                options: ProbeOptions | None = None) -> ProbeResult:
    """Train and evaluate a linear probe on ``label_field``; see the module docstring."""
    o = options or ProbeOptions()
    space, where, folds, regularization, doubt_below, seed = (
        o.space, o.where, o.folds, o.regularization, o.doubt_below, o.seed)
    chosen_space = collection.space(space)
    labels = _labels(collection, label_field, where)
    ids, vectors = item_matrix(collection, chosen_space, list(labels))
    stored = np.array([labels[i] for i in ids], dtype=object)
    counts = Counter(label for label in stored if label is not None)
    skipped = {label: n for label, n in counts.items() if n < folds}
    train = np.array([label is not None and label not in skipped for label in stored], dtype=bool)
    classes = sorted(set(stored[train]))
    if len(classes) < 2:
        raise InvalidInputError(
            f"field {label_field!r} has {len(classes)} class(es) with at least {folds} labelled "
            f"items{' (' + ', '.join(map(repr, classes)) + ')' if classes else ''}; a probe needs "
            "two or more: label more items or lower folds")
    y = stored[train].astype(str)
    X = vectors[train]
    texts = source_texts(collection, chosen_space, ids) if o.lexical else None
    names = [] if texts is None else chosen_text_fields(collection, label_field, chosen_space.source_fields,
                                                        o.text_fields)
    fields = field_texts(collection.tables, names, ids) if names else None
    train_rows = np.flatnonzero(train)
    train_texts, train_fields = take(texts, train_rows), take_fields(fields, train_rows)
    train_ids = np.array(ids, dtype=object)[train]
    groups = fold_groups(collection, list(train_ids), unit_rows(X))
    out_of_fold, fold_accuracies, fold_regularizations = cross_validated_probe(
        X, y, train_texts, folds=folds, seed=seed, regularization=regularization,
        groups=groups.codes, fields=train_fields)
    predicted = np.array(classes)[out_of_fold.argmax(axis=1)]
    per_class = class_reports(y, predicted, classes)
    stored_probability = out_of_fold[np.arange(len(y)), np.searchsorted(classes, y)]
    doubts = [Disagreement(str(train_ids[i]), str(y[i]), str(predicted[i]), float(out_of_fold[i].max()),
                           float(stored_probability[i]))
              for i in np.argsort(stored_probability, kind="stable")
              if stored_probability[i] < doubt_below and predicted[i] != y[i]]
    unlabelled = np.array([label is None for label in stored], dtype=bool)
    predictions: list[Prediction] = []
    c = regularization if regularization is not None else choose_regularization(
        X, y, train_texts, seed=seed, groups=groups.codes, fields=train_fields)
    final = ProbeHead(c).fit(X, y, train_texts, train_fields)
    if unlabelled.any():
        rows = np.flatnonzero(unlabelled)
        proba = final.predict_proba(vectors[unlabelled], take(texts, rows), take_fields(fields, rows))
        best = proba.argmax(axis=1)
        predictions = [Prediction(str(i), str(final.classes_[b]), float(p[b])) for i, b, p in
                       zip(np.array(ids, dtype=object)[unlabelled], best, proba, strict=True)]
    accuracy = float(np.mean(predicted == y))
    run = save_run(collection, "classify", {
        "label_field": label_field, "space": chosen_space.name, "where": filter_to_json(where),
        "folds": folds, "regularization": regularization, "doubt_below": doubt_below,
        "seed": seed, "lexical": texts is not None, "fold_regularizations": fold_regularizations,
        "text_fields": final.text_fields,
        "head": "logistic regression on " + ("vectors+words" if texts is not None else "vectors")}, {
        "predictions": _predictions_table(train_ids, y, predicted, out_of_fold, stored_probability,
                                          predictions),
        "classes": pa.Table.from_pylist([vars(c) for c in per_class]),
        "disagreements": pa.Table.from_pylist([vars(d) for d in doubts], schema=pa.schema([
            ("id", pa.string()), ("stored_label", pa.string()), ("suggested_label", pa.string()),
            ("confidence", pa.float64()), ("stored_probability", pa.float64())])),
    }, {"accuracy": accuracy, "labelled": len(y), "unlabelled": len(predictions),
        "classes": len(classes), "disagreements": len(doubts), "skipped_classes": skipped,
        "fold_groups": groups.merged, "items_in_fold_groups": groups.items_merged})
    head = save_head(collection, o.save_as or label_field, final, chosen_space, label_field,
                     run.run_id, len(y))
    return ProbeResult(run.run_id, label_field, classes, len(y), folds, accuracy, fold_accuracies,
                       fold_regularizations, texts is not None, per_class, predictions, doubts,
                       skipped, head.name, groups.merged, final.text_fields)


def chosen_text_fields(collection: IndexedCollection, label_field: str,
                       source_fields: Sequence[str], text_fields: Sequence[str] | None
                       ) -> list[str]:
    """The free-text fields a probe reads words of: ``text_fields`` as given (checked: existing
    fields, not the label), or by ``lexical.free_text_fields`` without the label and
    ``source_fields`` (their words are the source text's block already)."""
    if text_fields is None:
        return free_text_fields(collection.tables, exclude={label_field, *source_fields})
    fields = collection.fields()
    for name in text_fields:
        if name not in fields:
            raise InvalidInputError(
                f"text_fields: collection {collection.name!r} has no field {name!r}; fields: "
                f"{', '.join(fields) or 'none'}")
        if name == label_field:
            raise InvalidInputError(
                f"text_fields: {name!r} is the label field; a head must not read its own "
                "label: leave it out of text_fields")
    return list(dict.fromkeys(text_fields))


def class_reports(y: np.ndarray, predicted: np.ndarray, classes: list[str]) -> list[ClassReport]:
    """The ``ClassReport`` of each of ``classes`` for labels ``y`` ``(n,)`` predicted as
    ``predicted`` ``(n,)`` (scikit-learn's ``classification_report``)."""
    from sklearn.metrics import classification_report

    report = classification_report(y, predicted, labels=classes, output_dict=True, zero_division=0)
    return [ClassReport(c, report[c]["precision"], report[c]["recall"], report[c]["f1-score"],
                        int(report[c]["support"])) for c in classes]


def _labels(collection: IndexedCollection, label_field: str, where: FilterInput) -> dict[str, str | None]:
    """Label of every selected item (None where it is null), as text."""
    fields = collection.fields()
    if label_field not in fields:
        raise InvalidInputError(f"collection {collection.name!r} has no field {label_field!r}; "
                                f"fields: {', '.join(fields) or 'none'}")
    if fields[label_field].endswith("[]"):
        raise InvalidInputError(f"field {label_field!r} holds lists ({fields[label_field]}); a "
                                "probe needs one label per item")
    ids = collection.ids_matching(where)
    return dict(zip(ids, collection.tables.field_values(label_field, ids, as_text=True),
                    strict=True))


def _predictions_table(train_ids: np.ndarray, y: np.ndarray, predicted: np.ndarray,
                       out_of_fold: np.ndarray, stored_probability: np.ndarray,
                       predictions: list[Prediction]) -> pa.Table:
    """Every item: labelled ones with their out-of-fold prediction, then the unlabelled ones."""
    n = len(predictions)
    return pa.table({
        "id": pa.array([*train_ids, *(p.id for p in predictions)], pa.string()),
        "predicted": pa.array([*predicted, *(p.label for p in predictions)], pa.string()),
        "probability": pa.array([*out_of_fold.max(axis=1), *(p.probability for p in predictions)],
                                pa.float64()),
        "labelled": pa.array([True] * len(y) + [False] * n, pa.bool_()),
        "stored_label": pa.array([*y, *([None] * n)], pa.string()),
        "stored_probability": pa.array([*stored_probability, *([None] * n)], pa.float64()),
    })
