"""Zero-shot classification: label names become prompts, scored against items in their space.

Every label is written into every template ("a photo of a {}."), the prompts are encoded by the
space's text encoder (the space's own for a text space; the text tower or adapter side of the same
embedding space for a picture space, see ``spaces.encoder_for``), each label's prompts are
averaged and normalised (CLIP's prompt ensembling), and an item's probabilities are the softmax
over labels of its cosine similarities divided by the space's temperature. No example is needed,
so the labels can change from one run to the next.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .errors import InvalidInputError
from .filters import FilterInput, filter_to_json
from .indexed_collection import IndexedCollection
from .kernels import unit_rows
from .options import check_bounds, option
from .runs import save_run
from .spaces import encoder_for
from .vectors import item_matrix

__all__ = [
    "IMAGE_TEMPLATES",
    "TEXT_TEMPLATES",
    "ZeroShotOptions",
    "ZeroShotPrediction",
    "ZeroShotResult",
    "zero_shot",
]

# An ensemble in the spirit of CLIP's ImageNet prompts, short enough for the small text encoders.
IMAGE_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "a drawing of a {}.",
                   "an illustration of a {}.", "an icon of a {}.", "{}")
# A text space compares texts with texts: the label itself, and the label as a topic.
TEXT_TEMPLATES = ("{}", "about {}.")
# CLIP's learned logit scale is 100 (temperature 0.01); used when the encoder states none.
DEFAULT_TEMPERATURE = 0.01
# A logit scale of 10,000, far past any model's (CLIP caps its own at 100); below it cosines
# divided by the temperature leave float range and the probabilities come out NaN.
MIN_TEMPERATURE = 1e-4


@dataclass(frozen=True)
class ZeroShotPrediction:
    id: str
    label: str
    probability: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class ZeroShotResult:
    """``accuracy`` is set when a ``label_field`` was given: the share of items whose stored
    label is the predicted one (items whose label is not among ``labels`` count as wrong)."""

    run_id: str
    space: str
    labels: list[str]
    templates: list[str]
    temperature: float
    predictions: list[ZeroShotPrediction]
    accuracy: float | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ZeroShotOptions:
    """How ``zero_shot`` prompts and scores (see the module docstring)."""

    space: str | None = option(help="Vector space (default: the only one, or 'text').")
    templates: Sequence[str] | None = option(help=(
        "Prompt templates with {} for the label (default: an ensemble suited to the space: "
        "photo/drawing/icon prompts for pictures, the label for text)."))
    where: FilterInput = option(help="Items to label (default: all).")
    temperature: float | None = option(ge=MIN_TEMPERATURE, help=(
        f"Softmax temperature, {MIN_TEMPERATURE:g} or more (default: the space's own, else "
        f"{DEFAULT_TEMPERATURE:g})."))
    label_field: str | None = option(help="Score the labels against this field.")

    def __post_init__(self) -> None:
        check_bounds(self)


def zero_shot(collection: IndexedCollection, labels: Sequence[str],
              options: ZeroShotOptions | None = None) -> ZeroShotResult:
    """Label every item (of ``options.where``) with the closest of ``labels``; saved as a
    ``zero_shot`` run with a ``predictions`` table (id, label, probability, probabilities in
    the order of the run's ``labels`` parameter)."""
    o = options or ZeroShotOptions()
    space, templates, where, label_field = o.space, o.templates, o.where, o.label_field
    names = [str(label).strip() for label in labels]
    if len(names) < 2 or any(not n for n in names) or len(set(names)) != len(names):
        raise InvalidInputError(f"zero-shot needs at least two different, non-empty labels; "
                                f"got {list(labels)!r}")
    vs = collection.space(space)
    chosen = list(templates) if templates else list(
        TEXT_TEMPLATES if vs.encoder.modality == "text" else IMAGE_TEMPLATES)
    bad = [t for t in chosen if t.count("{}") != 1]
    if bad:
        raise InvalidInputError(f"each template needs exactly one {{}} for the label; fix {bad!r}")
    encoder = encoder_for(vs, "text")
    # An encoder's own temperature is held to the option's bound too (a learned one never is
    # that small, and one that were would overflow just the same).
    temp = max(float(o.temperature if o.temperature is not None
                     else encoder.info.temperature or DEFAULT_TEMPERATURE), MIN_TEMPERATURE)

    prompts = encoder.encode([t.format(n) for n in names for t in chosen], role="query")
    label_vectors = unit_rows(prompts.reshape(len(names), len(chosen), -1).mean(axis=1))
    ids, vectors = item_matrix(collection, vs, where=where)
    if not ids:
        raise InvalidInputError(f"no item of collection {collection.name!r} has a vector in "
                                f"space {vs.name!r}{' and matches the filter' if where else ''}")
    # In float64, and shifted by each row's largest before exp: every exponent is <= 0, so no
    # temperature the bound admits can overflow (vectors of an l2 space need not be unit).
    logits = vectors.astype(np.float64) @ label_vectors.T.astype(np.float64) / temp
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    best = probabilities.argmax(axis=1)
    predictions = [ZeroShotPrediction(i, names[b], float(p[b]), dict(zip(names, map(float, p),
                                                                         strict=True)))
                   for i, b, p in zip(ids, best, probabilities, strict=True)]

    accuracy, warnings = None, []
    if label_field is not None:
        stored = collection.field_values(label_field, ids)
        accuracy = float(np.mean([s == p.label for s, p in zip(stored, predictions, strict=True)]))
        warnings = _unmatched_labels(stored, names, label_field)
    table = pa.table({"id": ids, "label": [names[b] for b in best],
                      "probability": probabilities[np.arange(len(ids)), best].astype(float),
                      # One column for any labels: the run's params list them in this order.
                      "probabilities": [row.tolist() for row in probabilities]})
    run = save_run(collection, "zero_shot", {
        "labels": names, "templates": chosen, "space": vs.name, "temperature": temp,
        "where": filter_to_json(where), "label_field": label_field,
    }, {"predictions": table}, {"items": len(ids), "accuracy": accuracy})
    return ZeroShotResult(run.run_id, vs.name, names, chosen, temp, predictions, accuracy,
                          warnings)


def _unmatched_labels(stored: list[object], labels: list[str], label_field: str) -> list[str]:
    """A warning when stored labels are not among ``labels`` (they count as wrong), naming the
    label each is closest to in spelling: 'animal' scored against 'animals' is a common slip."""
    missing = Counter(str(s) for s in stored if s not in labels)
    if not missing:
        return []
    examples = []
    for value, _ in missing.most_common(5):
        close = difflib.get_close_matches(value, labels, n=1, cutoff=0.75)
        examples.append(f"{value!r}" + (f" (the label {close[0]!r}?)" if close else ""))
    return [f"{sum(missing.values())} of {len(stored)} items have a {label_field} that is none "
            f"of the labels, e.g. {', '.join(examples)}, and count as wrong in the accuracy: "
            f"name the labels exactly as the {label_field} values"]
