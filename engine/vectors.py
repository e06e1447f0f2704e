"""One vector per item, for the analyses that compare whole items (cluster, anomalies, probes).

A long item is stored as one vector per chunk; the analyses want one point per item. The item's
vector is the mean of its chunk vectors, normalised again in cosine spaces (the mean of unit vectors
is shorter than one, and shorter the more its chunks disagree), which is also how ``ById`` queries
represent an item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .collection import Collection

__all__ = ["mean_item_vectors"]


def mean_item_vectors(collection: Collection, space: str, ids: Sequence[str] | None = None
                      ) -> tuple[list[str], np.ndarray]:
    """``(ids, vectors)``: the items that have vectors in ``space`` (all, or those of ``ids``),
    sorted by id, and their mean vectors, float32 of shape ``(len(ids), dim)``."""
    vs = collection.space(space)
    owners: list[str] = []
    blocks: list[np.ndarray] = []
    for _, vectors, block_ids in collection.vector_blocks(vs.name, ids=ids):
        owners += block_ids
        blocks.append(vectors)
    if not blocks:
        return [], np.zeros((0, vs.dim), dtype=np.float32)
    unique, inverse = np.unique(np.asarray(owners, dtype=object), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    # Chunks sorted by owner: reduceat sums each owner's run of rows in one vectorised pass.
    stacked = np.concatenate(blocks)[order]
    starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])
    sums = np.add.reduceat(stacked.astype(np.float64), starts, axis=0)
    means = sums / np.diff(np.r_[starts, len(stacked)])[:, None]
    if vs.metric == "cosine":
        norms = np.linalg.norm(means, axis=1, keepdims=True)
        means /= np.where(norms == 0, 1, norms)
    return [str(i) for i in unique], means.astype(np.float32)
