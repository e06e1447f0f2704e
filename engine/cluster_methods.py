"""The clustering methods on item vectors: FAISS k-means (k given, or chosen by silhouette) and
HDBSCAN, and the cluster numbering and centroids both share. See ``clustering`` for what they are
used for and why; this module deals in arrays only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import InvalidInputError
from .kernels import unit_rows

__all__ = ["NOISE", "best_k", "cluster_centroids", "hdbscan", "kmeans", "kmeans_search", "numbered_by_size",
           "with_lexical_view"]

NOISE = -1
SILHOUETTE_SAMPLE = 5_000  # silhouette is quadratic in items: score a seeded sample
KMEANS_ITERATIONS = 25
KMEANS_RESTARTS = 5  # FAISS keeps the best of this many seeded starts (k-means has local optima)
KMEANS_TRAIN_POINTS = 100_000  # FAISS trains on a sample of this many points beyond it
HDBSCAN_DIMS = 32
HDBSCAN_MIN_SAMPLES = 2  # scikit-learn counts the point itself: density from its nearest neighbour
K_GROWTH = 1.5  # k=auto: each k tried past the top of the grid is this much larger
LEXICAL_DIMS = 100  # the TF-IDF view is reduced to this many dimensions (LSA) before joining


def kmeans_search(vectors: np.ndarray, grid: list[int], metric: str, seed: int,
                  done: Callable[[str], None]) -> tuple[np.ndarray, dict[int, float]]:
    """Labels of k-means at the single k of ``grid``, or at its k of best silhouette (the
    smallest such k on ties), with the score of each k tried."""
    from sklearn.metrics import silhouette_score

    spherical = metric == "cosine"
    if len(grid) == 1:
        labels = kmeans(vectors, grid[0], spherical=spherical, seed=seed)
        done(f"k-means k={grid[0]}")
        return labels, {}
    fits: dict[int, np.ndarray] = {}
    scores: dict[int, float] = {}

    def fit(k: int) -> None:
        fits[k] = kmeans(vectors, k, spherical=spherical, seed=seed)
        # Fewer distinct clusters than 2 (all points on one centroid) has no silhouette.
        scores[k] = float(silhouette_score(
            vectors, fits[k], metric="cosine" if spherical else "euclidean",
            sample_size=min(len(vectors), SILHOUETTE_SAMPLE), random_state=seed)
        ) if 1 < len(np.unique(fits[k])) < len(vectors) else -1.0
        done(f"k-means k={k}")

    for k in grid:
        fit(k)
    # A best k at the top of the grid says the grid stopped too soon: go on up while the score
    # still rises (Debian's 2,000 development packages: silhouette peaks at 40-60 clusters).
    top = max(grid)
    while best_k(scores) == top and (larger := round(top * K_GROWTH)) <= len(vectors) // 10:
        fit(larger)
        top = larger
    return fits[best_k(scores)], scores


def best_k(scores: dict[int, float]) -> int:
    return max(sorted(scores), key=lambda k: scores[k])  # the smallest k among equal scores


def kmeans(vectors: np.ndarray, k: int, *, spherical: bool, seed: int) -> np.ndarray:
    import faiss

    dim = vectors.shape[1]
    km = faiss.Kmeans(dim, k, niter=KMEANS_ITERATIONS, nredo=KMEANS_RESTARTS, seed=seed,
                      spherical=spherical, min_points_per_centroid=1,
                      max_points_per_centroid=max(256, -(-KMEANS_TRAIN_POINTS // k)))
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    km.train(data)
    # Unit vectors in a spherical run: the nearest centroid by L2 is the one of highest cosine.
    _, nearest = km.index.search(data, 1)
    return nearest[:, 0].astype(np.int64)


def hdbscan(vectors: np.ndarray, min_cluster_size: int) -> np.ndarray:
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA

    if isinstance(min_cluster_size, bool) or not isinstance(min_cluster_size, int) \
            or min_cluster_size < 2:
        raise InvalidInputError(f"min_cluster_size must be a whole number of at least 2, not "
                                f"{min_cluster_size!r}")
    if len(vectors) < 2:
        raise InvalidInputError(f"HDBSCAN needs at least 2 items, {len(vectors)} selected")
    if min_cluster_size > len(vectors):
        raise InvalidInputError(
            f"min_cluster_size {min_cluster_size} is more than the {len(vectors)} items selected: "
            "no group could form; lower it, or select more items")
    dims = min(HDBSCAN_DIMS, len(vectors))
    reduced = (PCA(n_components=dims, random_state=0).fit_transform(vectors)
               if vectors.shape[1] > dims else vectors)
    # Density from each item's nearest neighbour (min_samples 2) smooths it least, so neighbouring
    # topics stay apart; the default (min_samples = min_cluster_size) blurred them into one. And a
    # cluster of more than half the items is the collection, not a group found in it: without
    # that cap the selection kept one giant cluster and 1-2 small ones on Debian's 2,000
    # development packages and on 1 to 3 of 5 random halves and quarters of them.
    return np.asarray(HDBSCAN(min_cluster_size=min_cluster_size, min_samples=HDBSCAN_MIN_SAMPLES,
                              max_cluster_size=max(min_cluster_size, len(vectors) // 2),
                              copy=True).fit_predict(reduced), dtype=np.int64)


def with_lexical_view(unit: np.ndarray, texts: list[str], weight: float, seed: int
                      ) -> np.ndarray:
    """The rows of ``unit`` (unit vectors) joined by their texts' TF-IDF, reduced by truncated SVD
    (LSA) to unit rows of ``LEXICAL_DIMS`` and scaled by ``weight``, the result unit-length again:
    a cosine between two items becomes a weighted mix of their vectors' and their words' cosines.
    Words name what a topic is about where a sentence encoder blurs it (package sections: NMI
    0.468 -> 0.485 on the development sample at weight 0.6, see benchmarks/clustering.py). Texts
    too few or too empty for a vocabulary leave the vectors as they are."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        tfidf = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=2
                                ).fit_transform([str(t or "") for t in texts])
    except ValueError:  # no word occurs twice: no vocabulary
        return unit
    dims = min(LEXICAL_DIMS, tfidf.shape[1] - 1, len(texts) - 1)
    if dims < 2:
        return unit
    words = TruncatedSVD(dims, random_state=seed).fit_transform(tfidf)
    words = unit_rows(words) * weight
    return unit_rows(np.hstack([unit, words])).astype(np.float32)


def numbered_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, ... from the largest down (ties by first member); noise stays -1."""
    found, first, counts = np.unique(labels[labels >= 0], return_index=True, return_counts=True)
    order = found[np.lexsort((first, -counts))]
    mapping = np.full(labels.max() + 2 if len(labels) else 1, NOISE, dtype=np.int64)
    mapping[order] = np.arange(len(order))
    return np.where(labels >= 0, mapping[np.maximum(labels, 0)], NOISE)


def cluster_centroids(unit: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unit mean direction of each cluster's members, ``(clusters, dim)``: similarities to it are
    cosines whatever the space's metric, so cohesion means the same in every space."""
    n_clusters = int(labels.max()) + 1 if np.any(labels >= 0) else 0
    sums = np.zeros((n_clusters, unit.shape[1]), dtype=np.float64)
    np.add.at(sums, labels[labels >= 0], unit[labels >= 0])
    return unit_rows(sums)
