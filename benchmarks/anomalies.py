"""Anomaly detection on the Debian corpus: kinsight's calibrated detectors next to PyOD's and a
TF-IDF + GMM baseline, on the same items in the same run.

Reference ("normal") = the packages of the six largest sections, fixed before looking at any
result: perl, python, libs, utils, golang, javascript (``--sections 3``: the first three). Half of
them (seeded split) is the reference the detectors are fitted on; the other half are normal
targets, never seen in fitting. Anomalies = a seeded sample of packages of every other section,
one for every nine normal targets (10% of the targets). Vectors are the bundled all-MiniLM-L6-v2
item vectors (mean of chunks, unit length); texts are the packages' long descriptions (what the
vectors were encoded from).

Defaults were chosen on ``--split dev`` (the development sample of ``_common.split_rows``) and are
reported on ``--split test`` (every other package of the store). For each method, averaged over
``--seeds`` splits: AUROC and average precision (AP) of the anomaly score, and at the threshold
each method sets for "5% of normal items" (kinsight: the 95th percentile of out-of-sample
reference scores; PyOD and the GMM: 5% contamination of the in-sample training scores) the
precision and recall on anomalies and the share of normal targets flagged (which should be 5%).

    KINSIGHT_DATA=/work/shared/data nice -n 10 .venv/bin/python benchmarks/anomalies.py \\
        --docs 6000 --split test
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import debian_store, git_state, item_vectors, missing_extra, print_table, save, split_rows
from sklearn.metrics import average_precision_score, roc_auc_score

from kinsight.engine.detectors import METHODS, TEXT_METHODS, make_detector
from kinsight.engine.lexical import free_text_fields

SECTIONS = ("perl", "python", "libs", "utils", "golang", "javascript")  # largest, fixed a priori
CONTAMINATION = 0.10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=None, help="the store of N packages")
    parser.add_argument("--split", choices=("dev", "test", "all"), default="test")
    parser.add_argument("--sections", type=int, choices=(3, 6), default=6)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-pyod", action="store_true", help="without PyOD's detectors")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with debian_store(args.docs) as store:
        debian = store.collection("debian")
        ids, vectors = item_vectors(debian)
        keep = split_rows(ids, args.split)
        ids, vectors = [ids[i] for i in keep], vectors[keep]
        sections = np.array(debian.field_values("section", ids), dtype=object)
        texts = np.array([t or "" for t in debian.field_values("text", ids)], dtype=object)
        fields = {name: np.array([v or "" for v in debian.field_values(name, ids)], dtype=object)
                  for name in free_text_fields(debian.tables,
                                               exclude=debian.space("text").source_fields)}
    reference_sections = SECTIONS[: args.sections]

    candidates: list[tuple[str, Callable[[], Any]]] = [
        (f"kinsight {m}{' (default)' if m == 'combined' else ''}",
         lambda m=m: make_detector(m, language="en")) for m in (*TEXT_METHODS, *METHODS)]
    candidates.insert(2, ("kinsight combined, source text only (the default before)",
                          lambda: SourceOnly(make_detector("combined", language="en"))))
    candidates.append(("TF-IDF + GMM", TfidfGMM))
    if not args.no_pyod:
        try:
            candidates += _pyod_candidates()
        except ImportError:
            print(missing_extra("pyod"))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in candidates}
    for seed in range(args.seeds):
        reference, targets, is_anomaly = _draw(sections, reference_sections, seed)
        if seed == 0:
            print(f"{args.split} split: reference {len(reference)} "
                  f"({', '.join(reference_sections)}), targets {len(targets)} "
                  f"({int((~is_anomaly).sum())} held-out normal, {int(is_anomaly.sum())} from "
                  f"other sections); other free-text fields: {', '.join(fields) or 'none'}; "
                  f"{args.seeds} seeded draws", flush=True)
        for name, build in candidates:
            started = time.perf_counter()
            detector = build()
            outlying, flagged = _fit_score(detector, vectors, texts, fields, reference, targets)
            results[name].append({**_metrics(outlying, flagged, is_anomaly),
                                  "seconds": time.perf_counter() - started})
    means = {name: {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
             for name, runs in results.items()}
    print_table(f"Debian anomalies ({args.split} split): reference {'+'.join(reference_sections)}, "
                f"10% anomalies from other sections, mean of {args.seeds} draws",
                ["method", "AUROC", "AP", "precision", "recall", "normal flagged", "seconds"],
                [(name, m["auroc"], m["ap"], m["precision"], m["recall"], m["normal_flagged"],
                  f"{m['seconds']:.1f}") for name, m in means.items()])
    save(f"anomalies-{args.split}-{args.sections}", {
        "reference_sections": reference_sections, "split": args.split, "docs": args.docs,
        "seeds": args.seeds, "results": means, "git": git_state(),
        "command": f"benchmarks/anomalies.py --docs {args.docs} --split {args.split} "
                   f"--sections {args.sections} --seeds {args.seeds}"})


def _draw(sections: np.ndarray, reference_sections: tuple[str, ...], seed: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(np.isin(sections, reference_sections))
    rng.shuffle(normal)
    reference, held_out = normal[: len(normal) // 2], normal[len(normal) // 2:]
    others = np.flatnonzero(~np.isin(sections, reference_sections))
    n_anomalies = round(len(held_out) * CONTAMINATION / (1 - CONTAMINATION))
    anomalous = rng.choice(others, n_anomalies, replace=False)
    is_anomaly = np.r_[np.zeros(len(held_out), bool), np.ones(len(anomalous), bool)]
    return reference, np.concatenate([held_out, anomalous]), is_anomaly


class SourceOnly:
    """A kinsight detector given the source texts alone, without the other free-text fields."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector


def _fit_score(detector: Any, vectors: np.ndarray, texts: np.ndarray,
               fields: dict[str, np.ndarray], reference: np.ndarray, targets: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """(higher-is-more-anomalous score, flagged) for either library's convention."""
    if isinstance(detector, TfidfGMM):
        detector.fit(texts[reference])
        return detector.outlying(texts[targets])
    if isinstance(detector, SourceOnly):
        detector, fields = detector.detector, {}
    if hasattr(detector, "needs_texts"):  # kinsight: higher is more normal
        def given(rows: np.ndarray) -> dict[str, Any]:
            if not detector.needs_texts:
                return {}
            return {"texts": list(texts[rows]),
                    "fields": {name: list(values[rows]) for name, values in fields.items()}
                    if detector.reads_fields else None}

        detector.fit(vectors[reference], **given(reference))
        return (-detector.score_samples(vectors[targets], **given(targets)),
                detector.predict(vectors[targets], **given(targets)) == -1)
    detector.fit(vectors[reference])
    return detector.decision_function(vectors[targets]), detector.predict(vectors[targets]) == 1


class TfidfGMM:
    """The lexical baseline: TF-IDF of the texts, 100 SVD components (unit length), a Gaussian
    mixture of 16 diagonal components; threshold at 5% of the training scores."""

    def fit(self, texts: np.ndarray) -> TfidfGMM:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.mixture import GaussianMixture
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import Normalizer

        self.features = make_pipeline(TfidfVectorizer(sublinear_tf=True, stop_words="english"),
                                      TruncatedSVD(100, random_state=0), Normalizer())
        train = self.features.fit_transform(list(texts))
        self.gmm = GaussianMixture(16, covariance_type="diag", random_state=0).fit(train)
        self.threshold = np.quantile(-self.gmm.score_samples(train), 0.95)
        return self

    def outlying(self, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        score = -self.gmm.score_samples(self.features.transform(list(texts)))
        return score, score > self.threshold


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


def _metrics(outlying: np.ndarray, flagged: np.ndarray, is_anomaly: np.ndarray) -> dict[str, float]:
    true_positives = int(np.sum(flagged & is_anomaly))
    return {
        "auroc": float(roc_auc_score(is_anomaly, outlying)),
        "ap": float(average_precision_score(is_anomaly, outlying)),
        "precision": true_positives / max(1, int(flagged.sum())),
        "recall": true_positives / int(is_anomaly.sum()),
        "normal_flagged": float(flagged[~is_anomaly].mean()),
    }


if __name__ == "__main__":
    main()
