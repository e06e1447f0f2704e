"""Clusters of clusters: which of a clustering run's clusters belong together.

A run with dozens of clusters is easier to read grouped: "python, django" and "perl, module" under
one heading, "network, ip" and "dns, server" under another. The groups come from average-linkage
agglomeration (scipy) of the clusters' centroids by cosine, recomputed from the items' stored
vectors (a run keeps assignments, not centroids), cut into about the square root of the number of
clusters. Each group is named by the terms its clusters share most, weighted by their sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cluster_methods import cluster_centroids
from .clustering import ClusterResult
from .indexed_collection import IndexedCollection
from .kernels import unit_rows
from .vectors import mean_item_vectors

__all__ = ["ClusterGroup", "cluster_groups"]

GROUP_NAME_TERMS = 3


@dataclass(frozen=True)
class ClusterGroup:
    """Clusters that belong together: their numbers (largest first), items in all, a name."""

    name: str
    clusters: tuple[int, ...]
    size: int


def cluster_groups(collection: IndexedCollection, result: ClusterResult,
                   groups: int | None = None) -> list[ClusterGroup]:
    """The run's clusters in ``groups`` groups (default: about the square root of their number),
    largest group first; empty for a run of fewer than three clusters (nothing to group)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(result.clusters) < 3:
        return []
    cluster_of = {a.id: a.cluster for a in result.assignments if a.cluster >= 0}
    ids, vectors = mean_item_vectors(collection, result.space, list(cluster_of))
    labels = np.array([cluster_of[i] for i in ids], dtype=np.int64)
    centroids = cluster_centroids(unit_rows(vectors), labels)
    present = [c.cluster for c in result.clusters if c.cluster < len(centroids)
               and np.any(labels == c.cluster)]
    wanted = groups or max(2, round(len(present) ** 0.5))
    tree = linkage(centroids[present], method="average", metric="cosine")
    cut = fcluster(tree, t=min(wanted, len(present)), criterion="maxclust")
    by_number = {c.cluster: c for c in result.clusters}
    found = []
    for group in np.unique(cut):
        members = sorted((present[i] for i in np.flatnonzero(cut == group)),
                         key=lambda c: -by_number[c].size)
        weights: dict[str, float] = {}
        for c in members:
            for rank, term in enumerate(by_number[c].terms):
                weights[term] = weights.get(term, 0.0) + by_number[c].size / (rank + 1)
        name = ", ".join(sorted(weights, key=lambda t: -weights[t])[:GROUP_NAME_TERMS]) \
            or ", ".join(f"cluster {c}" for c in members[:GROUP_NAME_TERMS])
        found.append(ClusterGroup(name, tuple(members), sum(by_number[c].size for c in members)))
    return sorted(found, key=lambda g: (-g.size, g.clusters))
