"""Near-duplicates: groups of items that are copies, or nearly, of one another.

Two items are linked when they are exact duplicates — the same content hash (``_hash``: ingest
hashes every field but the id, so one record stored under two ids matches) or identical vectors —
or when the cosine of their item vectors (chunk means) reaches the threshold, found by an exact
FAISS range search. Exact duplicates always share a group. Inside each connected component of
the links, ``linkage`` says which near copies share one: ``average`` (the default) joins two
groups while the mean cosine between their members reaches the threshold, ``complete`` while
every pair of them does, and ``single`` takes the component whole, so that a chain of near
copies (A~B~C with A far from C) is one group. Each group gets a **representative**, its medoid:
the member of highest mean cosine to the other members (ties: the smallest id).

**The threshold** is chosen from the vectors themselves by default (``threshold="auto"``, no
labels needed). How close a copy comes depends on the encoder: a half-size picture sits ~0.85-0.9
from its original in EfficientNet's features, where half the pictures have a neighbour above 0.87
anyway, while unrelated texts in MiniLM sit far lower. So the cut is set relative to how far apart
items usually are in this space: the median cosine distance ``D`` of each distinct vector to its
``AUTO_NEIGHBOUR``-th nearest other one (past the few copies an item may have), and two items are
linked when their distance is below ``AUTO_RATIO * D``. Average or complete linkage then keeps
the groups tight. The ratio and the default linkage were chosen on development halves of the
Debian families and of augmented pictures, and are reported on the other halves
(``benchmarks/near_duplicates.py``). The chosen threshold is in the result. A fixed ``threshold``
means the same angle in every collection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import numpy as np
import pyarrow as pa

from ..errors import InvalidInputError
from ..filters import FilterInput, filter_to_json
from ..indexed_collection import IndexedCollection
from ..kernels import leave_one_out
from ..options import option
from ..runs import save_run
from ._items import selected_unit_vectors

__all__ = ["AUTO_RATIO", "DuplicateGroup", "DuplicateOptions", "DuplicatesResult", "Linkage",
           "auto_threshold", "duplicate_groups", "near_duplicates"]

Linkage = Literal["average", "complete", "single"]
AUTO_RATIO = 0.4
AUTO_NEIGHBOUR = 10
# Fewer distinct vectors than this give no distribution to read a threshold from; then
# FEW_ITEMS_THRESHOLD (an angle under ~18°) is used, with a warning.
AUTO_MIN_ITEMS = 20
FEW_ITEMS_THRESHOLD = 0.95
# Average and complete linkage hold a component's pairwise distances in memory (m² floats).
MAX_COMPONENT = 5_000


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
    counts the items that are not their group's representative (what removing copies would drop).
    ``threshold`` is the cosine used, ``auto_threshold`` whether it was chosen from the data."""

    run_id: str
    space: str
    threshold: float
    auto_threshold: bool
    linkage: Linkage
    items: int
    groups: list[DuplicateGroup]
    duplicates: int
    warnings: list[str]
    seconds: float


@dataclass(frozen=True)
class DuplicateOptions:
    """What ``near_duplicates`` links and groups (see the module docstring)."""

    space: str | None = option(help="Vector space (default: the only one, or 'text').")
    threshold: float | Literal["auto"] = option("auto", help=(
        "Cosine at or above which two items are near-duplicates, or 'auto' to choose it from the "
        "space's nearest-neighbour similarities."))
    linkage: Linkage = option("average", help=(
        "Which linked items share a group: average (mean cosine between two groups reaches the "
        "threshold) | complete (every pair does) | single (any chain of links)."))
    where: FilterInput = option(help="Which items to group (default: all).")

    def __post_init__(self) -> None:
        threshold = self.threshold
        if threshold != "auto" and (isinstance(threshold, bool)
                                    or not isinstance(threshold, int | float)
                                    or not 0 < threshold <= 1):
            raise InvalidInputError(f"threshold must be a cosine in (0, 1] or 'auto', not "
                                    f"{threshold!r}; 0.95 means nearly identical")
        if self.linkage not in get_args(Linkage):
            raise InvalidInputError(f"unknown linkage {self.linkage!r}; use "
                                    f"{', '.join(get_args(Linkage))}")


def near_duplicates(collection: IndexedCollection,
                    options: DuplicateOptions | None = None) -> DuplicatesResult:
    """Group the items ``options.where`` selects (with vectors in ``options.space``) that
    duplicate one another; saves the run (operation ``duplicates``, tables ``groups`` and
    ``members``)."""
    o = options or DuplicateOptions()
    started = time.perf_counter()
    vs = collection.space(o.space)
    ids, vectors = selected_unit_vectors(collection, vs.name, o.where, at_least=1,
                                         what="near-duplicate search")
    warnings = vs.encoder.warnings()
    if o.threshold == "auto":
        chosen = auto_threshold(vectors)
        if chosen is None:
            chosen = FEW_ITEMS_THRESHOLD
            warnings = [*warnings, f"only {len(ids)} items: too few to choose the threshold from "
                                   f"their similarities, {FEW_ITEMS_THRESHOLD} used; pass a "
                                   f"threshold to choose it yourself"]
    else:
        chosen = float(o.threshold)
    groups = duplicate_groups(ids, vectors, _content_hashes(collection, ids), chosen, o.linkage)
    duplicates = sum(g.size - 1 for g in groups)
    params = {"space": vs.name, "threshold": o.threshold, "linkage": o.linkage,
              "where": filter_to_json(o.where)}
    summary = {"items": len(ids), "threshold": chosen, "groups": len(groups),
               "largest": max((g.size for g in groups), default=0), "duplicates": duplicates,
               "exact_groups": sum(g.exact for g in groups), "warnings": warnings}
    run = save_run(collection, "duplicates", params, _tables(groups),
                   {**summary, "seconds": time.perf_counter() - started})
    return DuplicatesResult(run.run_id, vs.name, chosen, o.threshold == "auto", o.linkage, len(ids),
                            groups, duplicates, warnings, time.perf_counter() - started)


def auto_threshold(vectors: np.ndarray, ratio: float = AUTO_RATIO) -> float | None:
    """The cosine that ``threshold="auto"`` links at, for unit ``vectors`` ``(n, d)``: ``1 - ratio
    * D``, where D is the median cosine distance of a distinct vector to its ``AUTO_NEIGHBOUR``-th
    nearest other one (module docstring); None below ``AUTO_MIN_ITEMS`` distinct vectors."""
    distinct = np.unique(np.asarray(vectors, dtype=np.float32), axis=0)
    if len(distinct) < AUTO_MIN_ITEMS:
        return None
    neighbour = leave_one_out(distinct, AUTO_NEIGHBOUR)[0][:, -1].astype(np.float64)
    typical = float(np.median(np.maximum(1.0 - neighbour, 0.0)))
    return float(min(1.0, 1.0 - ratio * typical))


def duplicate_groups(ids: list[str], vectors: np.ndarray, hashes: list[str | None], threshold: float,
                     linkage: Linkage = "average") -> list[DuplicateGroup]:
    """The groups among ``ids`` (sorted), with unit ``vectors`` ``(n, d)`` and content ``hashes``
    (None: unknown), closest first; items in no group are left out."""
    import faiss
    from scipy.sparse.csgraph import connected_components

    n = len(ids)
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    hash_codes = _codes([h if h is not None else f"\0no-hash-{i}" for i, h in enumerate(hashes)])
    vector_codes = np.unique(data, axis=0, return_inverse=True)[1].ravel()
    exact_links = [np.r_[np.arange(n), np.arange(n)],
                   np.r_[_first_of(hash_codes)[hash_codes], _first_of(vector_codes)[vector_codes]]]
    exact_class = connected_components(_graph(exact_links, n), directed=False)[1]
    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    # A hair below the threshold: float32 cosines of identical unit vectors can fall just short of 1.
    lims, _, found = index.range_search(data, threshold - 1e-6)
    near_links = [np.repeat(np.arange(n), np.diff(lims).astype(np.int64)), found.astype(np.int64)]
    links = [np.r_[exact_links[0], near_links[0]], np.r_[exact_links[1], near_links[1]]]
    component = connected_components(_graph(links, n), directed=False)[1]

    groups = []
    for members in _components(component):
        for part in _split(members, data, exact_class, threshold, linkage):
            groups.append(_group(part, ids, data, hash_codes, vector_codes))
    groups.sort(key=lambda g: (-g.mean_similarity, -g.size, g.representative))
    return [replace(g, group=number) for number, g in enumerate(groups)]


def _split(members: np.ndarray, data: np.ndarray, exact_class: np.ndarray, threshold: float,
           linkage: Linkage) -> list[np.ndarray]:
    """The groups (sorted indices, two or more) of one connected component under ``linkage``:
    scipy's hierarchical clustering of the members' cosine distances, cut at the threshold. Exact
    duplicates are one item to it, as near to another as the nearest of them, so they always stay
    together."""
    classes = np.unique(exact_class[members], return_inverse=True)[1].ravel()
    if linkage == "single" or classes.max() == 0:
        return [members]
    if len(members) > MAX_COMPONENT:
        raise InvalidInputError(
            f"{len(members)} items are linked into one component at threshold {threshold:.3f}, "
            f"more than {linkage} linkage groups at once ({MAX_COMPONENT}); raise the threshold "
            f"or use linkage 'single'")
    from scipy.cluster.hierarchy import fcluster
    from scipy.cluster.hierarchy import linkage as hierarchy
    from scipy.spatial.distance import squareform

    order = np.argsort(classes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(classes[order]) != 0])
    unit = data[members[order]]
    distance = np.maximum(1.0 - (unit @ unit.T).astype(np.float64), 0.0)
    distance = np.minimum.reduceat(np.minimum.reduceat(distance, starts, axis=0), starts, axis=1)
    np.fill_diagonal(distance, 0.0)
    tree = hierarchy(squareform(distance, checks=False), method=linkage)
    labels = fcluster(tree, t=1.0 - threshold + 1e-6, criterion="distance")
    return _components(labels[classes], members)


def _group(members: np.ndarray, ids: list[str], data: np.ndarray, hash_codes: np.ndarray,
           vector_codes: np.ndarray) -> DuplicateGroup:
    unit = data[members].astype(np.float64)
    total = unit.sum(axis=0)
    # Mean cosine of each member to the others, from the sum of the vectors: linear in the
    # group's size, so a large group costs no more than its members.
    to_others = (unit @ total - 1.0) / (len(members) - 1)
    best = members[int(np.argmax(to_others))]  # members are in id order: ties go to the smallest
    similarity = unit @ data[best].astype(np.float64)
    order = np.lexsort((members, -similarity))
    exact = bool(len(set(hash_codes[members])) == 1 or len(set(vector_codes[members])) == 1)
    return DuplicateGroup(
        group=0, representative=ids[best], members=tuple(ids[members[i]] for i in order),
        similarities=tuple(float(min(similarity[i], 1.0)) for i in order), exact=exact,
        mean_similarity=float(min(to_others.mean(), 1.0)),
        min_similarity=float(min(similarity.min(), 1.0)))


def _components(labels: np.ndarray, rows: np.ndarray | None = None) -> list[np.ndarray]:
    """The ``rows`` (default: the indices of ``labels``, kept sorted) of each label held by two
    or more of them."""
    rows = np.arange(len(labels)) if rows is None else rows
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    return [rows[m] for m in np.split(order, bounds) if len(m) > 1]


def _graph(links: list[np.ndarray], n: int) -> Any:
    """The sparse ``(n, n)`` graph of the links ``[sources, targets]``."""
    from scipy.sparse import coo_matrix

    return coo_matrix((np.ones(len(links[0])), (links[0], links[1])), shape=(n, n))


def _first_of(codes: np.ndarray) -> np.ndarray:
    """The first row of each code (codes are 0..u-1)."""
    return np.unique(codes, return_index=True)[1]


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
