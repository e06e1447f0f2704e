"""The items an analysis looks at: those a filter selects that have vectors in a space, each as one
unit vector (the normalised mean of its chunks), so cosines are plain dot products."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from ..filters import FilterInput
from ..indexed_collection import IndexedCollection
from ..kernels import unit_rows
from ..vectors import mean_item_vectors

__all__ = ["selected_unit_vectors"]


def selected_unit_vectors(collection: IndexedCollection, space: str, where: FilterInput,
                          *, at_least: int, what: str) -> tuple[list[str], np.ndarray]:
    """``(ids, unit vectors (n, dim))`` of the items ``where`` selects that have vectors in ``space``,
    ids sorted; fewer than ``at_least`` items is the caller's error, named after ``what``."""
    ids, vectors = mean_item_vectors(collection, space, where=where)
    if len(ids) < at_least:
        chosen = "the filter selects" if where is not None else "there are"
        raise InvalidInputError(
            f"{what} needs at least {at_least} items with vectors in space {space!r} of collection "
            f"{collection.name!r}; {chosen} {len(ids)}")
    return ids, unit_rows(vectors)
