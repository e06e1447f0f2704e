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
from .executors import EncodeExecutor, EncodeJob

__all__ = ["TEXTS_PER_JOB", "encode_items"]

TEXTS_PER_JOB = 256  # chunks per executor job: enough to keep a worker busy, a few in flight


def encode_items(space: VectorSpace, texts: Sequence[str], *,
                 executor: EncodeExecutor | None = None) -> np.ndarray:
    """One vector ``(len(texts), dim)`` per text, by the space's encoder: the mean of its chunks.
    ``executor`` (e.g. ``ray_executor.RayExecutor``) encodes the chunks instead of this process,
    in jobs of ``TEXTS_PER_JOB``, and is closed at the end."""
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
    flat_texts = [c.text for chunks in chunked for c in chunks]
    if executor is None:
        flat = encoder.encode(flat_texts, role="document")
    else:
        jobs = (EncodeJob(texts={space.name: flat_texts[start:start + TEXTS_PER_JOB]})
                for start in range(0, len(flat_texts), TEXTS_PER_JOB))
        try:
            flat = np.concatenate([block[space.name] for block in executor.encode_stream(jobs)])
        finally:
            executor.close()
    bounds = np.cumsum([0] + [len(chunks) for chunks in chunked])
    means = np.stack([flat[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])
    return normalise_for(space, means.astype(np.float32))
