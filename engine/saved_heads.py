"""Heads saved with a collection, and applied to new texts or pictures.

``train_probe`` and ``train_head`` save the head they fit on all labelled items (under
``save_as``, default the label field) in the collection's ``heads`` table, beside the encoder of
the space it was trained on (spec, dimension, fingerprint) and its ``kind`` (``HEAD_KINDS``:
``logistic``, ``knn``, ``multilabel``, ``regression``). ``predict(collection, name, inputs,
options)`` encodes new inputs as that space stores items (its encoder, or the partner of the
other modality: a head trained on CLIP captions reads pictures too) and returns, per input, the
most probable labels (and, for a multilabel head, every label above its threshold) or the
predicted number of a regression head. Inputs are texts, pictures, or records (dicts of field
values, like the items' fields): a record's text is its values of the space's source fields,
joined by spaces, and a logistic head that reads free-text fields beside it (``text_fields``)
reads theirs, an empty block for a field the record lacks, as for a plain text. A space whose
encoder is not the head's (another fingerprint or dimension) is refused: its vectors mean
nothing to the head. A head that reads words beside the vectors (``lexical``) takes texts or
records only. A long text is encoded from its
beginning, as ``embed`` encodes it, unless the caller passes ``vectors`` made as ingest makes
them (``encode``: ``kinsight predict`` passes the mean of each text's chunks, the vector a head
trains on).

The head is stored as arrays (its ``to_arrays``) in an ``.npz`` blob read with
``allow_pickle=False``, and a JSON header: a store never runs code it loads.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .embedding import embed_in_space
from .encoders import EncoderInfo
from .errors import EncoderMismatchError, InvalidInputError, NotFoundError
from .heads import ProbeHead
from .indexed_collection import IndexedCollection
from .knn_head import KnnHead
from .linear_heads import MultiLabelHead, RidgeHead
from .options import check_bounds, option
from .spaces import VectorSpace
from .storage import HeadTable

__all__ = ["HEAD_KINDS", "EncodeInputs", "Head", "HeadInfo", "HeadPrediction", "PredictOptions",
           "PredictResult", "apply_head", "list_heads", "load_head", "predict", "save_head"]

Head = ProbeHead | KnnHead | MultiLabelHead | RidgeHead
HEAD_KINDS: dict[str, type[Head]] = {
    head.kind: head for head in (ProbeHead, KnnHead, MultiLabelHead, RidgeHead)}
# Encodes inputs for a space, one vector per input (``predict``'s ``encode``).
EncodeInputs = Callable[[VectorSpace, Sequence[Any]], np.ndarray]


@dataclass(frozen=True)
class HeadInfo:
    """A saved head of ``kind`` (``HEAD_KINDS``): trained on ``label_field`` over ``trained_on``
    items of ``space``, whose vectors ``encoder`` made, in run ``run_id``; ``created_at`` in UTC.
    ``classes``: the labels it tells apart (none for a regression head); ``threshold``: the
    probability from which a multilabel head predicts a label (None for the other kinds);
    ``text_fields``: the free-text fields whose words a logistic head reads beside the source
    text (none for heads saved before there were such blocks)."""

    name: str
    label_field: str
    space: str
    encoder: EncoderInfo
    classes: list[str]
    lexical: bool
    trained_on: int
    run_id: str
    created_at: datetime
    kind: str = "logistic"  # heads saved before there were kinds are logistic
    threshold: float | None = None
    text_fields: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PredictOptions:
    """How ``predict`` applies a saved head (see the module docstring)."""

    space: str | None = option(help=(
        "Space whose encoder reads the inputs (default: the one the head was trained on); its "
        "encoder must be the head's."))
    top: int = option(3, ge=1, le=1000, help=(
        "Labels returned per input with their probabilities, most probable first (a "
        "regression head returns its number)."))

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True)
class HeadPrediction:
    """One input's most probable ``label`` with its ``probability``; ``probabilities``: the
    ``top`` labels, most probable first. ``labels``: what the head predicts, every label at or
    above a multilabel head's threshold (maybe none), the one ``label`` of the other classifiers.
    A regression head gives ``value`` and no labels (``label`` and ``probability`` None)."""

    label: str | None
    probability: float | None
    probabilities: dict[str, float]
    labels: list[str]
    value: float | None = None


@dataclass(frozen=True)
class PredictResult:
    """The head applied, the space that encoded the inputs, one prediction per input in order."""

    head: HeadInfo
    space: str
    predictions: list[HeadPrediction]


def save_head(collection: IndexedCollection, name: str, head: Head, space: VectorSpace,
              label_field: str, run_id: str, trained_on: int) -> HeadInfo:
    """Save ``head`` (fitted on vectors of ``space``) as ``name``, replacing a head of that name."""
    if not name.strip():
        raise InvalidInputError("a head needs a name that is not blank (save_as)")
    created = datetime.now(timezone.utc)
    threshold = head.threshold_ if isinstance(head, MultiLabelHead) else None
    text_fields = head.text_fields if isinstance(head, ProbeHead) else []
    info = HeadInfo(name, label_field, space.name, space.encoder, [str(c) for c in head.classes_],
                    head.lexical, trained_on, run_id, created, head.kind, threshold, text_fields)
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


def load_head(collection: IndexedCollection, name: str) -> tuple[HeadInfo, Head]:
    """The saved head ``name``: its description and the head itself."""
    table = HeadTable(collection.tables)
    found = {info.name: info for info in list_heads(collection)}
    arrays = table.arrays(name)
    if name not in found or arrays is None:
        raise NotFoundError(
            f"no head {name!r} in collection {collection.name!r}; heads: "
            f"{', '.join(map(repr, found)) or 'none (train one with classify --train)'}")
    with np.load(io.BytesIO(arrays), allow_pickle=False) as saved:
        arrays_of = {key: saved[key] for key in saved.files}
    return found[name], HEAD_KINDS[found[name].kind].from_arrays(arrays_of)


def predict(collection: IndexedCollection, name: str, inputs: Sequence[Any],
            options: PredictOptions | None = None, *, encode: EncodeInputs | None = None
            ) -> PredictResult:
    """Apply the saved head ``name`` to ``inputs`` (texts, records, or decoded RGB pictures; see
    the module docstring). ``encode``,
    when given, makes the inputs' vectors ``(len(inputs), dim)`` in the head's space once the
    head and space are checked (``indexers.embed.encode_items`` makes them as ingest would, the
    mean of a long text's chunks, on any executor); otherwise the space's encoder encodes each
    input's beginning here."""
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
    fields = None
    if any(isinstance(value, Mapping) for value in inputs):
        inputs, fields = _records(name, space, info.text_fields, inputs)
    texts = list(inputs) if all(isinstance(value, str) for value in inputs) else None
    if head.lexical and texts is None:
        raise InvalidInputError(
            f"head {name!r} reads the words of texts beside their vectors, and pictures have "
            "none: give it texts, or train a head without words (lexical off) for pictures")
    vectors = embed_in_space(space, inputs).vectors if encode is None else encode(space, inputs)
    if vectors.shape != (len(inputs), space.encoder.dim):
        raise InvalidInputError(
            f"{vectors.shape[0]} vectors of {vectors.shape[-1]} dimensions for {len(inputs)} "
            f"inputs; head {name!r} reads one vector of {space.encoder.dim} per input")
    return PredictResult(info, space.name, apply_head(head, vectors, texts, o.top, fields))


def _records(name: str, space: VectorSpace, text_fields: Sequence[str], inputs: Sequence[Any]
             ) -> tuple[list[str], dict[str, list[str]]]:
    """The texts of records ``inputs`` (their source fields of ``space``, joined) and their
    values of ``text_fields`` as text ("" where missing or null)."""
    texts = []
    for n, record in enumerate(inputs):
        if not isinstance(record, Mapping):
            raise InvalidInputError(
                f"input {n} is a {type(record).__name__} among records; head {name!r} takes "
                "all texts, all records (dicts of fields) or all pictures: send one kind")
        text = " ".join(str(record[f]) for f in space.source_fields if record.get(f) is not None)
        if not text.strip():
            raise InvalidInputError(
                f"record {n} has no text in {', '.join(map(repr, space.source_fields)) or 'no field'}"
                f", the field(s) space {space.name!r} encodes: add the text to label there")
        texts.append(text)
    fields = {f: ["" if record.get(f) is None else str(record[f]) for record in inputs]
              for f in text_fields}
    return texts, fields


def apply_head(head: Head, vectors: np.ndarray, texts: Sequence[str] | None, top: int,
               fields: Mapping[str, Sequence[str]] | None = None) -> list[HeadPrediction]:
    """What ``head`` predicts for each of ``vectors`` ``(n, d)`` (and their ``texts``, and
    ``fields``: free-text fields' values, read by a lexical head only; a field left out reads
    as empty), with the ``top`` most probable labels of a classifier."""
    texts = texts if head.lexical else None
    if isinstance(head, RidgeHead):
        return [HeadPrediction(None, None, {}, [], float(v)) for v in head.predict(vectors, texts)]
    proba = (head.predict_proba(vectors, texts, fields) if isinstance(head, ProbeHead) else
             head.predict_proba(vectors, texts))
    order = np.argsort(-proba, axis=1, kind="stable")[:, :top]
    classes = [str(c) for c in head.classes_]
    predictions = []
    for row, best in zip(proba, order, strict=True):
        chosen = ([classes[c] for c in np.argsort(-row, kind="stable") if row[c] >= head.threshold_]
                  if isinstance(head, MultiLabelHead) else [classes[best[0]]])
        predictions.append(HeadPrediction(classes[best[0]], float(row[best[0]]),
                                          {classes[c]: float(row[c]) for c in best}, chosen))
    return predictions


def _info(name: str, header: str, created: datetime) -> HeadInfo:
    fields = json.loads(header)
    return HeadInfo(name=name, encoder=EncoderInfo(**fields.pop("encoder")),
                    created_at=created.replace(tzinfo=timezone.utc), **fields)
