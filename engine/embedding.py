"""Embeddings as a service: the vectors kinsight would store for given texts or pictures.

A caller that caches vectors, or uses them in another system, wants exactly those a space holds:
by the space's encoder (or its partner of the other modality: a CLIP tower, an adapter's side),
encoded as documents, unit-length in a cosine space. ``embed_in_space`` gives them for a space of a
collection; ``embed_with`` for an encoder spec alone, as a new space of that encoder would store
them. Each input is one vector: ingest splits a text longer than the encoder reads into chunks,
embed encodes its beginning (what the encoder reads), as a query is encoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .encoders import EncoderInfo, Modality, Role, load_encoder
from .errors import InvalidInputError
from .kernels import unit_rows
from .spaces import METRICS, VectorSpace, encoder_for

__all__ = ["Embeddings", "embed_in_space", "embed_with"]


@dataclass(frozen=True)
class Embeddings:
    """``vectors`` float32 ``(len(inputs), dim)``, one per input in order, made by ``encoder``;
    unit-length rows when ``metric`` is cosine."""

    vectors: np.ndarray
    encoder: EncoderInfo
    metric: str


def embed_in_space(space: VectorSpace, inputs: Sequence[Any], *, role: Role = "document"
                   ) -> Embeddings:
    """The vectors ``space`` would store for ``inputs`` (texts, or decoded RGB pictures)."""
    encoder = encoder_for(space, _modality(inputs))
    return _encoded(encoder.encode(list(inputs), role=role), encoder.info, space.metric)


def embed_with(spec: str, inputs: Sequence[Any], *, metric: str = "cosine",
               role: Role = "document") -> Embeddings:
    """The vectors a new space of the encoder ``spec`` with ``metric`` would store."""
    if metric not in METRICS:
        raise InvalidInputError(f"unknown metric {metric!r}; use one of {list(METRICS)}")
    modality = _modality(inputs)
    encoder = load_encoder(spec)
    if encoder.info.modality != modality:
        raise InvalidInputError(f"encoder {spec} embeds {encoder.info.modality}, not {modality}; "
                                f"give it {encoder.info.modality} or name another encoder")
    return _encoded(encoder.encode(list(inputs), role=role), encoder.info, metric)


def _encoded(vectors: np.ndarray, info: EncoderInfo, metric: str) -> Embeddings:
    vectors = np.asarray(vectors, dtype=np.float32)
    return Embeddings(unit_rows(vectors) if metric == "cosine" else vectors, info, metric)


def _modality(inputs: Sequence[Any]) -> Modality:
    if not inputs:
        raise InvalidInputError("nothing to embed: give at least one text or picture")
    texts = sum(isinstance(value, str) for value in inputs)
    if texts not in (0, len(inputs)):
        raise InvalidInputError("give texts or pictures to embed, not both in one call")
    return "text" if texts else "image"
