"""Anomaly detection on the Debian corpus: kinsight's calibrated detectors next to PyOD's.

Reference ("normal") = the packages of the three largest sections, chosen before looking at any
result: perl, python and libs. Half of them (seeded split) is the reference the detectors are
fitted on; the other half are normal targets, never seen in fitting. Anomalies = a seeded sample of
packages of every other section, one for every nine normal targets (10% of the targets). Vectors
are the bundled all-MiniLM-L6-v2 item vectors (mean of chunks, unit length).

For each method: AUROC of the anomaly score, and at the threshold each method sets for "5% of
normal items" (kinsight: the 95th percentile of out-of-sample reference scores; PyOD:
``contamination=0.05``, its threshold from in-sample training scores) the precision and recall on
anomalies and the share of normal targets flagged (which should be 5%).

    KINSIGHT_DATA=/work/shared/data nice -n 10 .venv/bin/python benchmarks/anomalies.py
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import debian_store, item_vectors, missing_extra, print_table, save
from sklearn.metrics import roc_auc_score

from kinsight.engine.detectors import METHODS, make_detector

REFERENCE_SECTIONS = ("perl", "python", "libs")  # the three largest, fixed a priori
CONTAMINATION = 0.10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-pyod", action="store_true", help="kinsight's detectors only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with debian_store() as store:
        collection = store.collection("debian")
        ids, vectors = item_vectors(collection)
        section_of = dict(store.cursor().execute("SELECT id, section FROM debian.items").fetchall())
        sections = np.array([section_of[i] for i in ids], dtype=object)
    rng = np.random.default_rng(args.seed)
    normal = np.flatnonzero(np.isin(sections, REFERENCE_SECTIONS))
    rng.shuffle(normal)
    reference, held_out = normal[: len(normal) // 2], normal[len(normal) // 2:]
    others = np.flatnonzero(~np.isin(sections, REFERENCE_SECTIONS))
    n_anomalies = round(len(held_out) * CONTAMINATION / (1 - CONTAMINATION))
    anomalous = rng.choice(others, n_anomalies, replace=False)
    targets = np.concatenate([held_out, anomalous])
    is_anomaly = np.r_[np.zeros(len(held_out), bool), np.ones(len(anomalous), bool)]
    X_ref, X_target = vectors[reference], vectors[targets]
    print(f"reference {len(reference)} ({', '.join(REFERENCE_SECTIONS)}), targets "
          f"{len(targets)} ({len(held_out)} held-out normal, {len(anomalous)} from "
          f"{len(set(sections[anomalous]))} other sections)")

    candidates: list[tuple[str, Callable[[], Any]]] = [
        (f"kinsight {m}", lambda m=m: _kinsight(m)) for m in METHODS]
    if not args.no_pyod:
        try:
            candidates += _pyod_candidates()
        except ImportError:
            print(missing_extra("pyod"))
    rows, results = [], {}
    for name, build in candidates:
        started = time.perf_counter()
        detector = build().fit(X_ref)
        outlying, flagged = _outlying(detector, X_target)
        seconds = time.perf_counter() - started
        metrics = _metrics(outlying, flagged, is_anomaly)
        results[name] = {**metrics, "seconds": seconds}
        rows.append((name, metrics["auroc"], metrics["precision"], metrics["recall"],
                     metrics["normal_flagged"], f"{seconds:.1f}"))
        print(f"  {name}: AUROC {metrics['auroc']:.3f} ({seconds:.1f}s)", flush=True)
    print_table("Debian anomalies: reference perl+python+libs, 10% anomalies from other sections",
                ["method", "AUROC", "precision", "recall", "normal flagged", "seconds"], rows)
    save("anomalies", {
        "reference_sections": REFERENCE_SECTIONS, "reference": len(reference),
        "normal_targets": len(held_out), "anomalies": len(anomalous), "seed": args.seed,
        "results": results, "command": "benchmarks/anomalies.py"})


def _kinsight(method: str) -> Any:
    return make_detector(method, threshold_percentile=95.0)


def _pyod_candidates() -> list[tuple[str, Callable[[], Any]]]:
    """PyOD's detectors with their defaults (k as kinsight's), thresholded at 5% contamination."""
    from pyod.models.ecod import ECOD
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN
    from pyod.models.lof import LOF
    from pyod.models.pca import PCA

    return [
        ("pyod KNN (mean, k=10)", lambda: KNN(n_neighbors=10, method="mean", algorithm="brute",
                                              contamination=0.05)),
        ("pyod LOF (k=20)", lambda: LOF(n_neighbors=20, algorithm="brute", contamination=0.05)),
        ("pyod IForest", lambda: IForest(n_estimators=200, random_state=0, contamination=0.05)),
        ("pyod PCA", lambda: PCA(contamination=0.05, random_state=0)),
        ("pyod ECOD", lambda: ECOD(contamination=0.05)),
    ]


def _outlying(detector: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(higher-is-more-anomalous score, flagged) for either library's convention."""
    if hasattr(detector, "score_samples"):  # kinsight: higher is more normal
        return -detector.score_samples(X), detector.predict(X) == -1
    return detector.decision_function(X), detector.predict(X) == 1  # PyOD: 1 is an outlier


def _metrics(outlying: np.ndarray, flagged: np.ndarray, is_anomaly: np.ndarray) -> dict[str, float]:
    true_positives = int(np.sum(flagged & is_anomaly))
    return {
        "auroc": float(roc_auc_score(is_anomaly, outlying)),
        "precision": true_positives / max(1, int(flagged.sum())),
        "recall": true_positives / int(is_anomaly.sum()),
        "normal_flagged": float(flagged[~is_anomaly].mean()),
    }


if __name__ == "__main__":
    main()
