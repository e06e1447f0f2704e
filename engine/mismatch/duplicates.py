"""Near-duplicates: groups of items that are copies, or nearly, of one another.

Two items are linked when they are exact duplicates — the same content hash (``_hash``: ingest
hashes every field but the id, so one record stored under two ids matches) or identical vectors —
or when the cosine of their item vectors (chunk means) reaches ``threshold``, found by an exact FAISS
range search. Groups are the connected components of these links (single linkage: a chain of near
copies forms one group; ``min_similarity`` shows how far apart its members may be). Each group gets a
**representative**, its medoid: the member of highest mean cosine to the other members, the one that
best stands for all of them (ties: the smallest id).

The default threshold, 0.95, asks that two vectors be less than ~18° apart (distance between unit
vectors below 0.32): far above what two items on the same topic reach with the bundled text model,
where related packages sit around 0.6-0.8, and still below the 0.98-1.0 of a re-encoded, resized or
re-worded copy. It is a fixed angle rather than a rank in the collection's similarities, so it
means the same in every collection; ``benchmarks/near_duplicates.py`` shows precision and recall
around it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from ..errors import InvalidInputError
from ..filters import FilterInput, filter_to_json
from ..indexed_collection import IndexedCollection
from ..options import check_bounds, option
from ..runs import save_run
from ._items import selected_unit_vectors

__all__ = ["DEFAULT_THRESHOLD", "DuplicateGroup", "DuplicateOptions", "DuplicatesResult",
           "duplicate_groups", "near_duplicates"]

DEFAULT_THRESHOLD = 0.95


@dataclass(frozen=True)
class DuplicateGroup:
    """Items that duplicate one another: ``members`` sorted by similarity to the ``representative``
    (first), ``exact`` when they all share one content hash or one vector; ``mean_similarity`` is the
    mean cosine over all pairs of members, ``min_similarity`` the lowest cosine of a member to the
    representative."""

    group: int
    representative: str
    members: tuple[str, ...]
    similarities: tuple[float, ...]  # of each member to the representative
    exact: bool
    mean_similarity: float
    min_similarity: float

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class DuplicatesResult:
    """A near-duplicates run: ``groups`` closest first (mean similarity, then size); ``duplicates``
    counts the items that are not their group's representative (what removing copies would drop)."""

    run_id: str
    space: str
    threshold: float
    items: int
    groups: list[DuplicateGroup]
    duplicates: int
    warnings: list[str]
    seconds: float


@dataclass(frozen=True)
class DuplicateOptions:
    """What ``near_duplicates`` links (see the module docstring for the threshold)."""

    space: str | None = option(help="Vector space (default: the only one, or 'text').")
    threshold: float = option(DEFAULT_THRESHOLD, gt=0, le=1, help=(
        "Cosine at or above which two items are near-duplicates."))
    where: FilterInput = option(help="Which items to group (default: all).")

    def __post_init__(self) -> None:
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) \
                or not 0 < threshold <= 1:
            raise InvalidInputError(f"threshold must be a cosine in (0, 1], not {threshold!r}; "
                                    f"{DEFAULT_THRESHOLD} means nearly identical")
        check_bounds(self)


def near_duplicates(collection: IndexedCollection,
                    options: DuplicateOptions | None = None) -> DuplicatesResult:
    """Group the items ``options.where`` selects (with vectors in ``options.space``) that
    duplicate one another; saves the run (operation ``duplicates``, tables ``groups`` and
    ``members``)."""
    o = options or DuplicateOptions()
    space, threshold, where = o.space, o.threshold, o.where
    started = time.perf_counter()
    vs = collection.space(space)
    ids, vectors = selected_unit_vectors(collection, vs.name, where, at_least=1,
                                         what="near-duplicate search")
    groups = duplicate_groups(ids, vectors, _content_hashes(collection, ids), float(threshold))
    duplicates = sum(g.size - 1 for g in groups)
    warnings = vs.encoder.warnings()
    params = {"space": vs.name, "threshold": threshold, "where": filter_to_json(where)}
    summary = {"items": len(ids), "groups": len(groups), "duplicates": duplicates,
               "exact_groups": sum(g.exact for g in groups), "warnings": warnings}
    run = save_run(collection, "duplicates", params, _tables(groups),
                   {**summary, "seconds": time.perf_counter() - started})
    return DuplicatesResult(run.run_id, vs.name, float(threshold), len(ids), groups, duplicates,
                            warnings, time.perf_counter() - started)


def duplicate_groups(ids: list[str], vectors: np.ndarray, hashes: list[str | None], threshold: float
                     ) -> list[DuplicateGroup]:
    """The groups among ``ids`` (sorted), with unit ``vectors`` ``(n, d)`` and content ``hashes``
    (None: unknown), closest first; items in no group are left out."""
    import faiss
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(ids)
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    # A hair below the threshold: float32 cosines of identical unit vectors can fall just short of 1.
    lims, _, found = index.range_search(data, threshold - 1e-6)
    sources = [np.repeat(np.arange(n), np.diff(lims).astype(np.int64)), found.astype(np.int64)]
    hash_codes = _codes([h if h is not None else f"\0no-hash-{i}" for i, h in enumerate(hashes)])
    vector_codes = np.unique(data, axis=0, return_inverse=True)[1].ravel()
    for codes in (hash_codes, vector_codes):  # exact duplicates, whatever the threshold
        first_of_code = np.unique(codes, return_index=True)[1]  # codes are 0..u-1
        sources = [np.r_[sources[0], np.arange(n)], np.r_[sources[1], first_of_code[codes]]]
    links = coo_matrix((np.ones(len(sources[0])), (sources[0], sources[1])), shape=(n, n))
    _, component = connected_components(links, directed=False)

    groups = []
    for members in _components(component):
        unit = data[members].astype(np.float64)
        total = unit.sum(axis=0)
        # Mean cosine of each member to the others, from the sum of the vectors: linear in the
        # group's size, so a large chained group costs no more than its members.
        to_others = (unit @ total - 1.0) / (len(members) - 1)
        best = members[int(np.argmax(to_others))]  # members are in id order: ties go to the smallest
        similarity = unit @ data[best].astype(np.float64)
        order = np.lexsort((members, -similarity))
        exact = bool(len(set(hash_codes[members])) == 1 or len(set(vector_codes[members])) == 1)
        groups.append(DuplicateGroup(
            group=0, representative=ids[best], members=tuple(ids[members[i]] for i in order),
            similarities=tuple(float(min(similarity[i], 1.0)) for i in order), exact=exact,
            mean_similarity=float(min(to_others.mean(), 1.0)),
            min_similarity=float(min(similarity.min(), 1.0))))
    groups.sort(key=lambda g: (-g.mean_similarity, -g.size, g.representative))
    return [replace(g, group=number) for number, g in enumerate(groups)]


def _components(component: np.ndarray) -> list[np.ndarray]:
    """Members (sorted indices) of each component with at least two of them."""
    order = np.argsort(component, kind="stable")
    bounds = np.flatnonzero(np.diff(component[order])) + 1
    return [m for m in np.split(order, bounds) if len(m) > 1]


def _codes(values: list[str]) -> np.ndarray:
    return np.unique(np.asarray(values, dtype=object), return_inverse=True)[1].ravel()


def _content_hashes(collection: IndexedCollection, ids: list[str]) -> list[str | None]:
    """The ``_hash`` of each item, in the order of ``ids`` (None for items written without one)."""
    found = collection.content_hashes(ids)
    return [found.get(i) for i in ids]


def _tables(groups: list[DuplicateGroup]) -> dict[str, pa.Table]:
    return {
        "groups": pa.table({
            "group": pa.array([g.group for g in groups], pa.int32()),
            "representative": pa.array([g.representative for g in groups], pa.string()),
            "size": pa.array([g.size for g in groups], pa.int64()),
            "exact": pa.array([g.exact for g in groups], pa.bool_()),
            "mean_similarity": pa.array([g.mean_similarity for g in groups], pa.float64()),
            "min_similarity": pa.array([g.min_similarity for g in groups], pa.float64()),
        }),
        "members": pa.table({
            "group": pa.array([g.group for g in groups for _ in g.members], pa.int32()),
            "id": pa.array([m for g in groups for m in g.members], pa.string()),
            "similarity": pa.array([s for g in groups for s in g.similarities], pa.float64()),
            "representative": pa.array([m == g.representative for g in groups for m in g.members],
                                       pa.bool_()),
        }),
    }
