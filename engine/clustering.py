"""Clustering: which groups are there among the items, and what are they about?

Each item is one point (the mean of its chunk vectors, see ``vectors``). Two methods:

- ``kmeans`` (default): FAISS k-means, spherical in cosine spaces (centroids kept unit-length, so
  items join the centroid of highest cosine). ``k="auto"`` fits k-means for each k of a grid over
  ``k_range`` and keeps the k of highest **silhouette** (cosine in cosine spaces), measured on a
  seeded sample of at most 5,000 items so the cost stays flat as collections grow; when the best
  is the largest k of the range, larger ones (x1.5 each) are tried while the score still rises,
  up to a tenth of the items, so the range does not decide the answer. Silhouette is
  the usual label-free criterion; it prefers clear separation, so on corpora whose topics blend
  into one another it tends to pick few, broad clusters.
- ``hdbscan``: scikit-learn's HDBSCAN, for "find the natural groups and leave noise out". Items
  in no dense group get cluster ``-1`` (noise): they are kept in the assignments, counted as
  ``noise`` and left out of the clusters. The vectors are first reduced to 32 dimensions by PCA:
  HDBSCAN's neighbour searches slow down sharply with dimension, and distances between a few
  hundred dimensions concentrate until density means little (the BERTopic recipe reduces too).
  Density comes from each item's nearest neighbour (``min_samples`` 2), and no cluster may hold
  more than half the items, so the selection cannot settle on one giant group (see ``hdbscan``).

In a text space both methods see the words too: each item's point joins its vector to the LSA of
its text's TF-IDF at ``lexical_weight`` (``cluster_methods.with_lexical_view``), so clusters follow
what the texts name as well as what the encoder finds similar. Centroids, cohesion and
representatives are always of the vectors alone.

Clusters are numbered by size (0 is the largest). Each gets a name from its most distinctive terms
(class-based TF-IDF over a text field, as in BERTopic), optionally the nearest of a list of label
prompts, its size, its cohesion (mean cosine of members to the centroid) and representative items
(the members nearest the centroid). Every run is saved with ``runs.save_run`` as three tables:
``cluster_assignments`` (id, cluster, similarity), ``cluster_clusters`` and ``cluster_map`` (id, x,
y: a 2-D projection of the items by PCA, or UMAP when installed and asked for)::

    SELECT c.name, i.section, count(*) FROM docs.cluster_assignments a
    JOIN docs.cluster_clusters c USING (run_id, cluster) JOIN docs.items i USING (id)
    WHERE a.run_id = ? GROUP BY ALL ORDER BY 3 DESC
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pyarrow as pa

from .cluster_methods import (
    NOISE,
    best_k,
    cluster_centroids,
    hdbscan,
    kmeans_search,
    numbered_by_size,
    with_lexical_view,
)
from .encoders import load_encoder
from .errors import InvalidInputError, NotFoundError
from .filters import FilterInput, filter_to_json
from .indexed_collection import IndexedCollection
from .kernels import unit_rows
from .options import SEED_MAX, Progress, check_bounds, option, quiet
from .runs import get_run, list_runs, read_run_table, save_run
from .spaces import VectorSpace
from .vectors import mean_item_vectors

__all__ = [
    "NOISE",
    "Assignment",
    "ClusterInfo",
    "ClusterMethod",
    "ClusterOptions",
    "ClusterResult",
    "Projection",
    "cluster",
    "read_cluster_run",
]

ClusterMethod = Literal["kmeans", "hdbscan"]
Projection = Literal["pca", "umap"]

REPRESENTATIVES = 5  # members nearest the centroid shown for each cluster
TERMS = 10  # distinctive terms kept for each cluster; the first NAME_TERMS make its name
NAME_TERMS = 3
MAX_K_TRIED = 16  # a wider k_range is covered by a geometric grid of this many values
SILHOUETTE_CRITERION = "silhouette"


@dataclass(frozen=True)
class ClusterInfo:
    """One cluster: ``name`` joins its first distinctive ``terms``; ``cohesion`` is the mean cosine
    of its members to its centroid; ``representatives`` are the ids of the members nearest the
    centroid, nearest first; ``label`` is the nearest label prompt and ``label_score`` its cosine
    to the centroid (None when no prompts were given)."""

    cluster: int
    name: str
    terms: tuple[str, ...]
    size: int
    cohesion: float
    representatives: tuple[str, ...]
    label: str | None = None
    label_score: float | None = None


@dataclass(frozen=True)
class Assignment:
    """An item's cluster (``NOISE`` for HDBSCAN's noise) and its cosine to that cluster's centroid
    (None for noise)."""

    id: str
    cluster: int
    similarity: float | None


@dataclass(frozen=True, eq=False)
class ClusterResult:
    """A clustering run. ``coordinates`` is float32 ``(len(assignments), 2)``: the 2-D map, row i
    for ``assignments[i]``. ``k_scores`` maps each k tried by ``k="auto"`` to its ``criterion``
    score (empty when k was given or for HDBSCAN)."""

    run_id: str
    space: str
    method: ClusterMethod
    clusters: list[ClusterInfo]
    assignments: list[Assignment]
    coordinates: np.ndarray
    noise: int
    criterion: str | None
    k_scores: dict[int, float]
    seconds: float

    @property
    def chosen_k(self) -> int | None:
        """The k that ``k="auto"`` picked (None when k was given, or for HDBSCAN)."""
        return best_k(self.k_scores) if self.k_scores else None


@dataclass(frozen=True)
class ClusterOptions:
    """What ``cluster`` does (see the module docstring for the methods)."""

    space: str | None = option(help="Vector space (default: the only one, or 'text').")
    k: int | Literal["auto"] = option(
        "auto", help="k-means: number of clusters, or 'auto' to pick it by silhouette.")
    k_range: tuple[int, int] = option(
        (2, 40), help="With k='auto': smallest and largest k of the grid tried (past the largest, "
                      "k goes on up while the silhouette still rises).")
    method: ClusterMethod = option(
        "kmeans", help="kmeans | hdbscan (finds dense groups and leaves noise out).")
    where: FilterInput = option(help="Which items to cluster (default: all).")
    name_field: str | None = option(
        help="Text field the names come from (default: the space's first source field; a space "
             "without one gets numbered names).")
    label_prompts: Sequence[str] | None = option(
        help="Label prompts (text spaces only): each cluster gets the nearest one.")
    min_cluster_size: int | None = option(
        ge=2, help="HDBSCAN: smallest group (default: 0.5% of the items, at least 5).")
    lexical_weight: float = option(
        0.6, ge=0.0, le=4.0,
        help="Text spaces: weight of the words of each item's text beside its vector (0: the "
             "vectors alone).")
    projection: Projection = option("pca", help="2-D map: pca | umap (needs umap-learn).")
    seed: int = option(0, ge=0, le=SEED_MAX, help="Seed of k-means and the samples it scores.")

    def __post_init__(self) -> None:
        check_bounds(self)
        _check_choices(self.method, self.projection)


def cluster(collection: IndexedCollection, options: ClusterOptions | None = None, *,
            progress: Progress = quiet) -> ClusterResult:
    """Cluster the items of a space (those ``options.where`` selects), name the clusters, save
    the run. ``progress`` is told of each step done."""
    o = options or ClusterOptions()
    space, k, k_range, method, where = o.space, o.k, o.k_range, o.method, o.where
    seed, projection = o.seed, o.projection
    started = time.perf_counter()
    vs = collection.space(space)
    text_field = _name_field(collection, vs, o.name_field)
    prompts = _check_prompts(o.label_prompts, vs)
    ids, vectors = mean_item_vectors(collection, vs.name, where=where)
    if not ids:
        raise InvalidInputError(
            f"nothing to cluster: {'the filter selects no' if where is not None else 'no'} items "
            f"with vectors in space {vs.name!r} of collection {collection.name!r}")
    unit = unit_rows(vectors)
    texts = collection.field_values(text_field, ids) if text_field else None
    points, metric = vectors, vs.metric
    if texts and o.lexical_weight > 0 and vs.encoder.modality == "text" \
            and text_field in vs.source_fields:
        points, metric = with_lexical_view(unit, texts, o.lexical_weight, seed), "cosine"
    grid = _k_grid(k, k_range, len(ids)) if method == "kmeans" else []
    steps = _Steps(progress, max(len(grid), 1) + 3)
    k_scores: dict[int, float] = {}
    if method == "kmeans":
        labels, k_scores = kmeans_search(points, grid, metric, seed, steps.done)
        min_size = None
    else:
        min_size = (o.min_cluster_size if o.min_cluster_size is not None
                    else max(5, round(0.005 * len(ids))))
        labels = hdbscan(points, min_size)
        steps.done("hdbscan")
    labels = numbered_by_size(labels)
    centroids = cluster_centroids(unit, labels)
    similarity = (np.einsum("ij,ij->i", unit, centroids[np.maximum(labels, 0)]) if len(centroids)
                  else np.zeros(len(ids), dtype=np.float32))
    similarity = np.where(labels >= 0, similarity, np.nan)
    terms = _distinctive_terms(texts, labels, len(centroids)) if texts else [()] * len(centroids)
    nearest_labels = _nearest_prompts(vs, centroids, prompts) if prompts else None
    steps.done("names")
    coordinates = _project(vectors, projection, seed)
    steps.done("map")

    clusters = []
    for c in range(len(centroids)):
        members = np.flatnonzero(labels == c)
        nearest = members[np.argsort(-similarity[members], kind="stable")[:REPRESENTATIVES]]
        label, label_score = nearest_labels[c] if nearest_labels else (None, None)
        clusters.append(ClusterInfo(
            cluster=c, name=", ".join(terms[c][:NAME_TERMS]) or f"cluster {c}", terms=terms[c],
            size=len(members), cohesion=float(similarity[members].mean()),
            representatives=tuple(ids[i] for i in nearest), label=label, label_score=label_score))
    assignments = [Assignment(i, int(c), None if c == NOISE else float(s))
                   for i, c, s in zip(ids, labels, similarity, strict=True)]
    noise = int(np.sum(labels == NOISE))
    criterion = SILHOUETTE_CRITERION if k_scores else None
    seconds = time.perf_counter() - started
    params = {"space": vs.name, "method": method, "k": k if method == "kmeans" else None,
              "k_range": list(k_range) if k == "auto" and method == "kmeans" else None,
              "where": filter_to_json(where), "name_field": text_field,
              "label_prompts": list(prompts) if prompts else None,
              "min_cluster_size": min_size, "lexical_weight": o.lexical_weight,
              "projection": projection, "seed": seed}
    summary = {"items": len(ids), "clusters": len(clusters), "noise": noise, "criterion": criterion,
               "k_scores": {str(kk): s for kk, s in k_scores.items()}, "seconds": seconds}
    run = save_run(collection, "cluster", params, _tables(clusters, assignments, coordinates), summary)
    steps.done("saved")
    return ClusterResult(run.run_id, vs.name, method, clusters, assignments, coordinates, noise,
                         criterion, k_scores, seconds)


def read_cluster_run(collection: IndexedCollection, run_id: str | None = None) -> ClusterResult:
    """A saved clustering run, read back from its tables (the latest one when no id is given),
    so any past run can be shown, exported or reported on."""
    if run_id is None:
        runs = list_runs(collection, "cluster")
        if not runs:
            raise NotFoundError(f"collection {collection.name!r} has no clustering run yet; "
                                "make one with `kinsight cluster`")
        run = runs[0]
    else:
        run = get_run(collection, run_id)
        if run.operation != "cluster":
            raise InvalidInputError(f"run {run_id!r} is a {run.operation} run, not a clustering run")
    clusters_table = read_run_table(collection, run.run_id, "clusters").to_pylist()
    assigned = read_run_table(collection, run.run_id, "assignments")
    points = read_run_table(collection, run.run_id, "map")
    clusters = [ClusterInfo(cluster=r["cluster"], name=r["name"], terms=tuple(r["terms"]),
                            size=r["size"], cohesion=r["cohesion"],
                            representatives=tuple(r["representatives"]), label=r["label"],
                            label_score=r["label_score"]) for r in clusters_table]
    assignments = [Assignment(i, c, s) for i, c, s in zip(
        assigned.column("id").to_pylist(), assigned.column("cluster").to_pylist(),
        assigned.column("similarity").to_pylist(), strict=True)]
    coordinates = np.stack([points.column("x").to_numpy(), points.column("y").to_numpy()], axis=1)
    summary = run.summary
    return ClusterResult(run.run_id, run.params["space"], run.params["method"], clusters, assignments,
                         coordinates.astype(np.float32), summary["noise"], summary["criterion"],
                         {int(kk): s for kk, s in summary["k_scores"].items()}, summary["seconds"])


# -- checks ---------------------------------------------------------------------------------------
def _check_choices(method: str, projection: str) -> None:
    if method not in get_args(ClusterMethod):
        raise InvalidInputError(f"unknown clustering method {method!r}; use kmeans or hdbscan")
    if projection not in get_args(Projection):
        raise InvalidInputError(f"unknown projection {projection!r}; use pca or umap")


def _name_field(collection: IndexedCollection, vs: VectorSpace, name_field: str | None) -> str | None:
    if name_field is None:
        return vs.source_fields[0] if vs.source_fields else None
    fields = collection.fields()
    if name_field not in fields:
        raise NotFoundError(f"collection {collection.name!r} has no field {name_field!r} to name "
                            f"clusters from; fields: {', '.join(fields) or 'none'}")
    return name_field


def _check_prompts(prompts: Sequence[str] | None, vs: VectorSpace) -> list[str]:
    if not prompts:
        return []
    if isinstance(prompts, str) or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise InvalidInputError("label_prompts must be a list of non-empty texts, e.g. "
                                "['network tools', 'games']")
    if vs.encoder.modality != "text":
        raise InvalidInputError(
            f"space {vs.name!r} holds {vs.encoder.modality} vectors, which text label prompts "
            "cannot be compared with; use a text space, or leave the prompts out")
    return list(prompts)


def _k_grid(k: int | str, k_range: tuple[int, int], n: int) -> list[int]:
    """The k values to fit: ``[k]``, or for ``"auto"`` every k of ``k_range`` that the items
    allow (silhouette needs k < n), thinned to a geometric grid past ``MAX_K_TRIED`` values."""
    if k != "auto":
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidInputError(f"k must be a positive whole number or 'auto', not {k!r}")
        if k > n:
            raise InvalidInputError(f"k={k} is more than the {n} items selected; ask for at most "
                                    f"{n} clusters")
        return [k]
    low, high = k_range
    if not 2 <= low <= high:
        raise InvalidInputError(f"k_range must be (low, high) with 2 <= low <= high, not {k_range}")
    if n < 3:
        raise InvalidInputError(f"k='auto' needs at least 3 items, {n} selected; give k")
    high = min(high, n - 1)
    low = min(low, high)
    if high - low + 1 <= MAX_K_TRIED:
        return list(range(low, high + 1))
    return sorted({int(v) for v in np.rint(np.geomspace(low, high, MAX_K_TRIED))})


class _Steps:
    """Counts the steps of a run for its ``Progress`` callback."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress, self.total, self.finished = progress, total, 0

    def done(self, stage: str) -> None:
        self.finished += 1
        self.total = max(self.total, self.finished)  # k=auto may try more k than planned
        self.progress(self.finished, self.total, stage)


# -- names and labels -----------------------------------------------------------------------------
def _distinctive_terms(texts: list[Any], labels: np.ndarray, n_clusters: int
                       ) -> list[tuple[str, ...]]:
    """Each cluster's ``TERMS`` most distinctive words by class-based TF-IDF (BERTopic's c-TF-IDF):
    all members' texts form one document per cluster; a term weighs its frequency in the cluster
    (L1-normalised, so large clusters do not win) times ``log(1 + A / f)``, with ``A`` the mean
    number of words per cluster and ``f`` the term's frequency over all clusters. It is a few
    lines over scikit-learn's counts; BERTopic itself would bring UMAP, HDBSCAN and torch along."""
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.preprocessing import normalize

    members = np.flatnonzero(labels >= 0)
    if n_clusters == 0:
        return []
    # Words of two or more characters starting with a letter: version numbers name nothing.
    vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_]\w+\b")
    try:
        counts = vectorizer.fit_transform([str(texts[i] or "") for i in members])
    except ValueError:  # no words at all (empty texts, only stop words)
        return [()] * n_clusters
    indicator = sparse.csr_matrix((np.ones(len(members)), (labels[members], np.arange(len(members)))),
                                  shape=(n_clusters, len(members)))
    per_cluster = indicator @ counts
    frequency = np.asarray(per_cluster.sum(axis=0)).ravel()
    mean_words = per_cluster.sum() / n_clusters
    weights = normalize(per_cluster, norm="l1") @ sparse.diags(np.log1p(mean_words / frequency))
    vocabulary = vectorizer.get_feature_names_out()
    terms: list[tuple[str, ...]] = []
    for row in sparse.csr_matrix(weights):
        top = row.indices[np.argsort(-row.data, kind="stable")[:TERMS]]
        terms.append(tuple(str(vocabulary[t]) for t in top))
    return terms


def _nearest_prompts(vs: VectorSpace, centroids: np.ndarray, prompts: list[str]
                     ) -> list[tuple[str, float]]:
    """The label prompt of highest cosine to each centroid, encoded by the space's own model."""
    encoder = load_encoder(vs.encoder.spec)
    vs.check_encoder(encoder.info)
    encoded = unit_rows(np.asarray(encoder.encode(prompts, role="query"), dtype=np.float32))
    scores = centroids @ encoded.T
    best = np.argmax(scores, axis=1)
    return [(prompts[b], float(scores[c, b])) for c, b in enumerate(best)]


# -- the map and the saved tables -----------------------------------------------------------------
def _project(vectors: np.ndarray, projection: Projection, seed: int) -> np.ndarray:
    """2-D coordinates ``(n, 2)`` float32 for the map: PCA, or UMAP when asked and installed."""
    if projection == "umap":
        try:
            import umap  # an optional extra: heavy (numba) and slow to import
        except ImportError as e:
            raise InvalidInputError("projection='umap' needs the umap-learn package: "
                                    "pip install umap-learn (or use projection='pca')") from e
        return np.asarray(umap.UMAP(n_components=2, random_state=seed).fit_transform(vectors),
                          dtype=np.float32)
    from sklearn.decomposition import PCA

    if len(vectors) < 2:
        return np.zeros((len(vectors), 2), dtype=np.float32)
    xy = PCA(n_components=min(2, vectors.shape[1]), random_state=seed).fit_transform(vectors)
    return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1]))).astype(np.float32)


def _tables(clusters: list[ClusterInfo], assignments: list[Assignment], coordinates: np.ndarray
            ) -> dict[str, pa.Table]:
    # Explicit types: a first run with no labels must not create all-NULL columns that a later
    # run's labels could not go into.
    ids = pa.array([a.id for a in assignments], pa.string())
    return {
        "assignments": pa.table({
            "id": ids,
            "cluster": pa.array([a.cluster for a in assignments], pa.int32()),
            "similarity": pa.array([a.similarity for a in assignments], pa.float32()),
        }),
        "clusters": pa.table({
            "cluster": pa.array([c.cluster for c in clusters], pa.int32()),
            "name": pa.array([c.name for c in clusters], pa.string()),
            "terms": pa.array([list(c.terms) for c in clusters], pa.list_(pa.string())),
            "size": pa.array([c.size for c in clusters], pa.int64()),
            "cohesion": pa.array([c.cohesion for c in clusters], pa.float64()),
            "representatives": pa.array([list(c.representatives) for c in clusters],
                                        pa.list_(pa.string())),
            "label": pa.array([c.label for c in clusters], pa.string()),
            "label_score": pa.array([c.label_score for c in clusters], pa.float64()),
        }),
        "map": pa.table({"id": ids, "x": pa.array(coordinates[:, 0], pa.float32()),
                         "y": pa.array(coordinates[:, 1], pa.float32())}),
    }
