"""Heads saved with a collection, and applied to new texts or pictures.

``train_probe`` saves the head it fits on all labelled items (under ``ProbeOptions.save_as``,
default the label field) in the collection's ``heads`` table, beside the encoder of the space it
was trained on (spec, dimension, fingerprint). ``predict(collection, name, inputs, options)``
encodes new inputs as that space stores items (its encoder, or the partner of the other modality:
a head trained on CLIP captions reads pictures too) and returns each input's most probable
labels. A space whose encoder is not the head's (another fingerprint or dimension) is refused:
its vectors mean nothing to the head. A head that reads words beside the vectors (``lexical``)
takes texts only. A long text is encoded from its beginning, as ``embed`` encodes it.

The head is stored as arrays (``ProbeHead.to_arrays``) in an ``.npz`` blob read with
``allow_pickle=False``, and a JSON header: a store never runs code it loads.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .embedding import embed_in_space
from .encoders import EncoderInfo
from .errors import EncoderMismatchError, InvalidInputError, NotFoundError
from .heads import ProbeHead
from .indexed_collection import IndexedCollection
from .options import check_bounds, option
from .spaces import VectorSpace
from .storage import HeadTable

__all__ = ["HeadInfo", "HeadPrediction", "PredictOptions", "PredictResult", "list_heads",
           "load_head", "predict", "save_head"]


@dataclass(frozen=True)
class HeadInfo:
    """A saved head: trained on ``label_field`` over ``trained_on`` items of ``space``, whose
    vectors ``encoder`` made, in run ``run_id``; ``created_at`` in UTC."""

    name: str
    label_field: str
    space: str
    encoder: EncoderInfo
    classes: list[str]
    lexical: bool
    trained_on: int
    run_id: str
    created_at: datetime


@dataclass(frozen=True)
class PredictOptions:
    """How ``predict`` applies a saved head (see the module docstring)."""

    space: str | None = option(help=(
        "Space whose encoder reads the inputs (default: the one the head was trained on); its "
        "encoder must be the head's."))
    top: int = option(3, ge=1, le=1000, help="Labels returned per input, most probable first.")

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True)
class HeadPrediction:
    """One input's most probable ``label`` with its ``probability``; ``probabilities``: the
    ``top`` labels, most probable first."""

    label: str
    probability: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class PredictResult:
    """The head applied, the space that encoded the inputs, one prediction per input in order."""

    head: HeadInfo
    space: str
    predictions: list[HeadPrediction]


def save_head(collection: IndexedCollection, name: str, head: ProbeHead, space: VectorSpace,
              label_field: str, run_id: str, trained_on: int) -> HeadInfo:
    """Save ``head`` (fitted on vectors of ``space``) as ``name``, replacing a head of that name."""
    if not name.strip():
        raise InvalidInputError("a head needs a name that is not blank (save_as)")
    created = datetime.now(timezone.utc)
    info = HeadInfo(name, label_field, space.name, space.encoder, [str(c) for c in head.classes_],
                    head.lexical, trained_on, run_id, created)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **head.to_arrays())
    header = {key: value for key, value in vars(info).items() if key not in ("name", "created_at")}
    header["encoder"] = vars(space.encoder)
    HeadTable(collection.tables).save(name, json.dumps(header), buffer.getvalue(),
                                      created.replace(tzinfo=None))  # stored as naive UTC
    return info


def list_heads(collection: IndexedCollection) -> list[HeadInfo]:
    """The collection's saved heads, by name."""
    return [_info(name, header, created)
            for name, header, created in HeadTable(collection.tables).headers()]


def load_head(collection: IndexedCollection, name: str) -> tuple[HeadInfo, ProbeHead]:
    """The saved head ``name``: its description and the head itself."""
    table = HeadTable(collection.tables)
    found = {info.name: info for info in list_heads(collection)}
    arrays = table.arrays(name)
    if name not in found or arrays is None:
        raise NotFoundError(
            f"no head {name!r} in collection {collection.name!r}; heads: "
            f"{', '.join(map(repr, found)) or 'none (train one with classify --train)'}")
    with np.load(io.BytesIO(arrays), allow_pickle=False) as saved:
        return found[name], ProbeHead.from_arrays({key: saved[key] for key in saved.files})


def predict(collection: IndexedCollection, name: str, inputs: Sequence[Any],
            options: PredictOptions | None = None) -> PredictResult:
    """Apply the saved head ``name`` to ``inputs`` (texts, or decoded RGB pictures)."""
    o = options or PredictOptions()
    info, head = load_head(collection, name)
    space = collection.space(o.space or info.space)
    if (space.encoder.fingerprint, space.encoder.dim) != (info.encoder.fingerprint,
                                                          info.encoder.dim):
        raise EncoderMismatchError(
            f"head {name!r} of collection {collection.name!r} was trained on vectors of "
            f"{info.encoder.spec} (fingerprint {info.encoder.fingerprint}, dim "
            f"{info.encoder.dim}, space {info.space!r}); space {space.name!r} holds vectors of "
            f"{space.encoder.spec} (fingerprint {space.encoder.fingerprint}, dim "
            f"{space.encoder.dim}): predict with a space of the head's encoder, or train a head "
            f"on this space (classify --train --space {space.name})")
    texts = list(inputs) if all(isinstance(value, str) for value in inputs) else None
    if head.lexical and texts is None:
        raise InvalidInputError(
            f"head {name!r} reads the words of texts beside their vectors, and pictures have "
            "none: give it texts, or train a head without words (lexical off) for pictures")
    vectors = embed_in_space(space, inputs).vectors
    proba = head.predict_proba(vectors, texts if head.lexical else None)
    order = np.argsort(-proba, axis=1, kind="stable")[:, : o.top]
    return PredictResult(info, space.name, [
        HeadPrediction(str(head.classes_[best[0]]), float(row[best[0]]),
                       {str(head.classes_[c]): float(row[c]) for c in best})
        for row, best in zip(proba, order, strict=True)])


def _info(name: str, header: str, created: datetime) -> HeadInfo:
    fields = json.loads(header)
    return HeadInfo(name=name, encoder=EncoderInfo(**fields.pop("encoder")),
                    created_at=created.replace(tzinfo=timezone.utc), **fields)
