"""Clustering quality and speed on the Debian corpus: NMI and ARI against package sections.

Clusters the bundled all-MiniLM-L6-v2 vectors of the packages of ``--split`` (``test``: those
outside the development sample the defaults were chosen on) of a ``--docs`` sample's store (0: all
33,265) with kinsight's ``cluster`` (k-means with k = the number of sections, with and without the
words of the text beside the vectors, k-means with k chosen by silhouette, HDBSCAN), and side by
side in the same run two baselines: scikit-learn's MiniBatchKMeans on the same vectors, and
MiniBatchKMeans on TF-IDF of the text (what one would do without embeddings).

    .venv/bin/python benchmarks/clustering.py --docs 6000            # 4,000 test packages
    .venv/bin/python benchmarks/clustering.py --docs 2000 --split dev   # where defaults are chosen

Sections are a coarse, imperfect ground truth (``libs`` and ``misc`` span every topic), so the
figures compare methods with each other, not with a ceiling of 1. HDBSCAN's scores are computed on
the items it clusters (noise left out), and its coverage says how many those are; the row below
it scores every item, each noise item joined to the cluster of the nearest centroid. kinsight's times
are whole calls (reading vectors, clustering, naming, the 2-D map, saving the run); the baselines'
are the fit alone.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import debian_store, git_state, item_vectors, print_table, save, split_rows
from sklearn.cluster import MiniBatchKMeans
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from kinsight.engine import Item, Store
from kinsight.engine.cluster_methods import cluster_centroids
from kinsight.engine.clustering import NOISE, ClusterResult
from kinsight.engine.kernels import unit_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=0,
                        help="the seeded sample's store to read (0: all packages)")
    parser.add_argument("--split", choices=("dev", "test", "all"), default="test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with debian_store(args.docs or None) as source:
        debian = source.collection("debian")
        ids, vectors = item_vectors(debian)
        keep = split_rows(ids, args.split)
        ids, vectors = [ids[i] for i in keep], vectors[keep]
        texts = debian.field_values("text", ids)
        sections = np.array(debian.field_values("section", ids))
        encoder = debian.space("text").encoder
    n_sections = len(np.unique(sections))
    print(f"{len(ids)} packages ({args.split}), {n_sections} sections")

    # cluster() saves its run, and the shared store opens read-only: cluster a copy in memory,
    # one mean vector per item (the vector cluster() would compute from the chunks anyway).
    with Store(":memory:") as store:
        coll = store.create_collection("debian")
        coll.ensure_space("text", encoder, source_fields=["text"])
        for start in range(0, len(ids), 5_000):
            stop = start + 5_000
            coll.upsert(Item(id=i, fields={"text": t}, vectors={"text": v}) for i, t, v in
                        zip(ids[start:stop], texts[start:stop], vectors[start:stop], strict=True))
        rows: list[dict[str, Any]] = []

        def kinsight(label: str, **options: Any) -> np.ndarray:
            started = time.perf_counter()
            result = coll.cluster(seed=args.seed, **options)
            seconds = time.perf_counter() - started
            labels = _labels(result, ids)
            rows.append(_scores(label, sections, labels, seconds, result=result))
            return labels

        kinsight(f"kinsight k-means, k={n_sections} (default: vectors + words)", k=n_sections)
        kinsight(f"kinsight k-means, k={n_sections}, vectors alone", k=n_sections,
                 lexical_weight=0)
        kinsight("kinsight k-means, k=auto (silhouette, 2..40)", k="auto")
        labels = kinsight("kinsight HDBSCAN (PCA 32-d, defaults)", method="hdbscan")
        rows.append(_scores("  the same, noise joined to its nearest cluster", sections,
                            _noise_to_nearest(vectors, labels), 0.0))

    def baseline(label: str, fit: Callable[[], np.ndarray]) -> None:
        started = time.perf_counter()
        labels = fit()
        rows.append(_scores(label, sections, labels, time.perf_counter() - started))

    baseline(f"sklearn MiniBatchKMeans, k={n_sections}, same vectors", lambda: MiniBatchKMeans(
        n_sections, n_init=3, random_state=args.seed).fit_predict(vectors))
    baseline(f"TF-IDF + MiniBatchKMeans, k={n_sections}", lambda: MiniBatchKMeans(
        n_sections, n_init=3, random_state=args.seed).fit_predict(TfidfVectorizer(
            stop_words="english", sublinear_tf=True, min_df=2).fit_transform(texts)))

    print_table(f"Debian sections vs clusters ({len(ids)} packages, {n_sections} sections)",
                ["method", "clusters", "coverage", "NMI", "ARI", "seconds"],
                [(r["method"], r["clusters"], r["coverage"], r["nmi"], r["ari"], r["seconds"])
                 for r in rows])
    save(f"clustering-{args.docs or 'full'}-{args.split}", {
        "items": len(ids), "sections": n_sections, "split": args.split, "results": rows,
        "git": git_state(),
        "command": f"benchmarks/clustering.py --docs {args.docs} --split {args.split}"})


def _labels(result: ClusterResult, ids: list[str]) -> np.ndarray:
    by_id = {a.id: a.cluster for a in result.assignments}
    return np.array([by_id[i] for i in ids])


def _noise_to_nearest(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``labels`` with each noise item given the cluster of highest cosine to its centroid: how
    well HDBSCAN's groups cover the items it left out, scored over every item."""
    unit = unit_rows(vectors)
    centroids = cluster_centroids(unit, labels)
    if not len(centroids):
        return labels
    return np.where(labels == NOISE, np.argmax(unit @ centroids.T, axis=1), labels)


def _scores(method: str, truth: np.ndarray, labels: np.ndarray, seconds: float,
            result: ClusterResult | None = None) -> dict[str, Any]:
    clustered = labels != NOISE
    row: dict[str, Any] = {
        "method": method, "clusters": len(np.unique(labels[clustered])),
        "coverage": float(clustered.mean()),
        "nmi": float(normalized_mutual_info_score(truth[clustered], labels[clustered])),
        "ari": float(adjusted_rand_score(truth[clustered], labels[clustered])),
        "seconds": seconds}
    if result is not None:
        row["k_scores"] = result.k_scores
        row["largest_clusters"] = [(c.name, c.size) for c in result.clusters[:10]]
    return row


if __name__ == "__main__":
    main()
