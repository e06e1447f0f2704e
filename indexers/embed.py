"""Encode texts that are not stored (a file of new items, a request body) as a space's items are.

Stored items are chunked and encoded chunk by chunk, and analyses compare items by the mean of
their chunks (``engine.item_vectors``); a new text gets the same treatment, so it is compared like
for like with the stored items, and bounded the same way: at most the default chunk cap of
chunks per text (an ingest given another cap is not known here).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from kinsight.engine import InvalidInputError, VectorSpace, load_encoder
from kinsight.engine.kernels import normalise_for

from .chunking import DEFAULT_MAX_CHUNKS, capped_overlap, chunk_text

__all__ = ["encode_items"]


def encode_items(space: VectorSpace, texts: Sequence[str]) -> np.ndarray:
    """One vector ``(len(texts), dim)`` per text, by the space's encoder: the mean of its chunks."""
    if space.encoder.modality != "text":
        raise InvalidInputError(f"space {space.name!r} holds {space.encoder.modality} vectors; "
                                "send vectors instead of texts")
    encoder = load_encoder(space.encoder.spec)
    space.check_encoder(encoder.info)
    chunked = [chunk_text(t, space.chunk_words, capped_overlap(space.chunk_words),
                          max_chunks=DEFAULT_MAX_CHUNKS) for t in texts]
    empty = [i for i, chunks in enumerate(chunked) if not chunks]
    if empty:
        raise InvalidInputError(f"text {empty[0] + 1} of {len(texts)} is empty; every new item "
                                "needs some text")
    flat = encoder.encode([c.text for chunks in chunked for c in chunks], role="document")
    bounds = np.cumsum([0] + [len(chunks) for chunks in chunked])
    means = np.stack([flat[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])
    return normalise_for(space, means.astype(np.float32))
