"""One vector per item, for the analyses that compare whole items (cluster, anomalies, probes,
recommendations).

A long item is stored as one vector per chunk; the analyses want one point per item. The item's
vector is the mean of its chunk vectors, normalised again in cosine spaces (the mean of unit vectors
is shorter than one, and shorter the more its chunks disagree), which is also how ``ById`` queries
represent an item.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InvalidInputError
from .filters import FilterInput
from .indexed_collection import IndexedCollection
from .kernels import normalise_for
from .spaces import VectorSpace

__all__ = ["item_matrix", "mean_item_vectors"]


def mean_item_vectors(collection: IndexedCollection, space: str, ids: Sequence[str] | None = None, *,
                      where: FilterInput = None) -> tuple[list[str], np.ndarray]:
    """``(ids, vectors)``: the items that have vectors in ``space`` (all, those of ``ids``, or
    those ``where`` selects), sorted by id, and their mean vectors, float32 ``(len(ids), dim)``."""
    vs = collection.space(space)
    ids = _selected(collection, ids, where)
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
    return [str(i) for i in unique], normalise_for(vs, means.astype(np.float32))


def item_matrix(collection: IndexedCollection, space: VectorSpace, ids: Sequence[str] | None = None, *,
                where: FilterInput = None) -> tuple[list[str], np.ndarray]:
    """Like ``mean_item_vectors``, but in the order of ``ids`` (or of the filter's matches) when
    given, sorted otherwise; items without a vector in the space are left out of both."""
    ids = _selected(collection, ids, where)
    found, vectors = mean_item_vectors(collection, space.name, ids)
    if ids is None:
        return found, vectors
    row = {item: n for n, item in enumerate(found)}
    order = [i for i in ids if i in row]
    return order, vectors[[row[i] for i in order]] if order else vectors[:0]


def _selected(collection: IndexedCollection, ids: Sequence[str] | None, where: FilterInput
              ) -> Sequence[str] | None:
    """The ids to read: those given, those a filter matches, or None for every item."""
    if ids is not None and where is not None:
        raise InvalidInputError("select items by ids or by where=, not both")
    return collection.ids_matching(where) if where is not None else ids
