"""Linear probe on the Debian corpus: predict a package's section from its frozen embedding, next
to a TF-IDF + logistic regression baseline on the same text, over the same stratified folds.

Every section with at least 5 packages is a class; the probe is kinsight's head (standardised
all-MiniLM-L6-v2 item vectors + logistic regression, ``engine.kernels.cross_validated_probe``); the
baseline is scikit-learn's TfidfVectorizer (sublinear tf, min_df=2) + logistic regression on the
long description. Both use C=1 and the same 5 folds. Reported: accuracy and macro-F1 out of fold.

    KINSIGHT_DATA=/work/shared/data nice -n 10 .venv/bin/python benchmarks/probe.py [--docs N]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter

import numpy as np
from _common import debian_store, item_vectors, print_table, save
from sklearn.metrics import accuracy_score, f1_score

from kinsight.engine.kernels import cross_validated_probe

FOLDS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=None,
                        help="a seeded random subset of N packages (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with debian_store() as store:
        ids, vectors = item_vectors(store.collection("debian"))
        rows = dict((r[0], (r[1], r[2])) for r in store.cursor().execute(
            "SELECT id, section, text FROM debian.items").fetchall())
    rng = np.random.default_rng(args.seed)
    keep = np.arange(len(ids)) if args.docs is None else np.sort(
        rng.choice(len(ids), args.docs, replace=False))
    sections = np.array([rows[ids[i]][0] for i in keep], dtype=object).astype(str)
    counts = Counter(sections)
    usable = np.array([counts[s] >= FOLDS for s in sections])
    keep, sections = keep[usable], sections[usable]
    texts = [rows[ids[i]][1] for i in keep]
    X = vectors[keep]
    classes = np.unique(sections)
    print(f"{len(keep)} packages, {len(classes)} sections with >= {FOLDS} packages")

    results = {}
    started = time.perf_counter()
    proba, folds = cross_validated_probe(X, sections, folds=FOLDS, seed=args.seed)
    results["probe (MiniLM embeddings)"] = _scores(sections, classes[proba.argmax(axis=1)], folds,
                                                   time.perf_counter() - started)
    print(f"  probe: {results['probe (MiniLM embeddings)']}", flush=True)
    started = time.perf_counter()
    predicted, folds = _tfidf_cross_validated(texts, sections, args.seed)
    results["TF-IDF + logistic regression"] = _scores(sections, predicted, folds,
                                                      time.perf_counter() - started)
    majority = Counter(sections).most_common(1)[0][1] / len(sections)
    print_table(f"Debian sections: {len(keep)} packages, {len(classes)} classes, {FOLDS}-fold",
                ["model", "accuracy", "macro-F1", "fold std", "seconds"],
                [(name, r["accuracy"], r["macro_f1"], r["fold_std"], f"{r['seconds']:.0f}")
                 for name, r in results.items()] + [("majority class", majority, "", "", "")])
    save(f"probe-{args.docs or 'full'}", {
        "packages": len(keep), "classes": len(classes), "folds": FOLDS, "seed": args.seed,
        "majority_accuracy": majority, "results": results,
        "command": "benchmarks/probe.py" + (f" --docs {args.docs}" if args.docs else "")})


def _tfidf_cross_validated(texts: list[str], y: np.ndarray, seed: int
                           ) -> tuple[np.ndarray, list[float]]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(sublinear_tf=True, min_df=2),
                          LogisticRegression(C=1.0, max_iter=2000))
    splitter = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)  # the probe's folds
    predicted = cross_val_predict(model, np.array(texts, dtype=object), y, cv=splitter)
    folds = [float(np.mean(predicted[held] == y[held])) for _, held in splitter.split(texts, y)]
    return predicted, folds


def _scores(y: np.ndarray, predicted: np.ndarray, folds: list[float], seconds: float
            ) -> dict[str, float]:
    return {"accuracy": float(accuracy_score(y, predicted)),
            "macro_f1": float(f1_score(y, predicted, average="macro")),
            "fold_std": float(np.std(folds)), "seconds": seconds}


if __name__ == "__main__":
    main()
