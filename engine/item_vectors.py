"""One vector per item, for the analyses that compare whole items (anomalies, probes).

A long item is stored as one vector per chunk; analyses of items use their mean, normalised to
unit length in cosine spaces (the same vector ``ById`` search queries with).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .collection import Collection
    from .spaces import VectorSpace

__all__ = ["item_matrix", "normalise_for"]


def item_matrix(collection: Collection, space: VectorSpace, ids: Sequence[str] | None = None
                ) -> tuple[list[str], np.ndarray]:
    """``(ids, vectors (n, dim) float32)`` of the given items (all when None), in the order
    asked; items without a vector in the space are left out of both."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for _, vectors, owners in collection.vector_blocks(space.name, ids=ids):
        for owner, vector in zip(owners, vectors, strict=True):
            if owner in sums:
                sums[owner] += vector
                counts[owner] += 1
            else:
                sums[owner] = vector.copy()
                counts[owner] = 1
    order = [i for i in (ids if ids is not None else sorted(sums)) if i in sums]
    if not order:
        return [], np.zeros((0, space.dim), dtype=np.float32)
    matrix = np.stack([sums[i] / counts[i] for i in order]).astype(np.float32)
    return order, normalise_for(space, matrix)


def normalise_for(space: VectorSpace, vectors: np.ndarray) -> np.ndarray:
    """Unit-length rows in a cosine space (as stored), unchanged otherwise."""
    if space.metric != "cosine":
        return vectors
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)
