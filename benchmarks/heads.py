"""Heads beside the logistic probe on the Debian corpus, each next to a scikit-learn peer on the
same MiniLM vectors and the same 5 folds (kinsight sorts items by id; so does this script):

- section (every section with at least 5 packages): kinsight's k-NN head (``kind="knn"``,
  similarity-weighted vote, k by leave-one-out on each training part; ``--split dev`` also runs
  fixed k values, the choice of the k rule) beside the logistic probe (its default: vectors +
  words, and vectors alone) and scikit-learn's KNeighborsClassifier (k=10, cosine, distance
  weights). Accuracy and macro-F1 out of fold.
- log(n_words), the log of the number of words of the long description (a number the corpus
  holds; the vectors do not store it, the words hint at it): kinsight's regression head (ridge,
  alpha by inner CV; vectors + words, and vectors alone) beside scikit-learn's RidgeCV on the
  standardised vectors and the training parts' mean. R² and MAE out of fold.
- debtags (packages with a tag held by at least ``--min-tag`` of them; those tags only):
  kinsight's multilabel head (one-vs-rest logistic, threshold by inner CV) beside scikit-learn's
  OneVsRestClassifier of logistic regression (C=1, standardised vectors, threshold 0.5).
  Micro- and macro-F1 out of fold.

Packages of a seeded ``--docs`` sample's store (default 12,000; 0: all), in ``--split``
(``dev``: the development sample, where the k rule was chosen; ``test``: the others).

    KINSIGHT_DATA=/work/shared/data nice -n 10 .venv/bin/python benchmarks/heads.py --docs 12000
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections import Counter
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from _common import DATA, debian_sample, print_table, save
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score

from kinsight.engine import HeadOptions, HeadResult, Item, Store, read_run_table

FOLDS = 5
FIXED_K = (5, 10, 20, 50, 100)
PARTS = ("section", "regression", "tags")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=12_000,
                        help="the seeded sample of packages whose store is read (0: all)")
    parser.add_argument("--split", choices=("dev", "test", "all"), default="test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-tag", type=int, default=100,
                        help="tags held by fewer packages of the split are left out")
    parser.add_argument("--no-words-probe", action="store_true",
                        help="leave out the probe's default (vectors + words), the slowest row")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts to run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    # Sorted by id, as train_head's folds run over the items.
    sample = debian_sample(args.docs, args.split)
    ids, vectors, sections, texts = sample.ids, sample.vectors, list(sample.sections), sample.texts
    encoder = sample.encoder
    extra = pq.read_table(DATA / "debian" / "corpus.parquet", columns=["id", "n_words", "tags"])
    by_id = {r["id"]: r for r in extra.to_pylist()}
    log_words = np.array([math.log(by_id[i]["n_words"]) for i in ids])
    counts = Counter(tag for i in ids for tag in by_id[i]["tags"] or [])
    kept = {tag for tag, n in counts.items() if n >= args.min_tag}
    tags = [sorted(set(by_id[i]["tags"] or []) & kept) or None for i in ids]
    print(f"{len(ids)} packages ({args.split}); {len(kept)} tags held by >= {args.min_tag}, on "
          f"{sum(t is not None for t in tags)} packages")

    results: dict[str, Any] = {}
    parts = set(args.parts.split(","))
    with Store(":memory:") as memory:
        coll = memory.create_collection("bench")
        coll.ensure_space("text", encoder, source_fields=["text"])
        coll.upsert(Item(id=i, fields={"text": t, "section": s, "log_words": w, "tags": g},
                         vectors={"text": v})
                    for i, t, s, w, g, v in zip(ids, texts, sections, log_words, tags, vectors,
                                                strict=True))
        if "section" in parts:
            results["section"] = _sections(coll, ids, vectors, sections, args)
        if "regression" in parts:
            results["log_words"] = _regression(coll, vectors, log_words, args.seed)
        if "tags" in parts:
            results["tags"] = _tags(coll, ids, vectors, tags, args.seed)
    suffix = "" if parts == set(PARTS) else "-" + "-".join(sorted(parts))
    save(f"heads-{args.docs or 'full'}-{args.split}{suffix}", {
        "packages": len(ids), "folds": FOLDS, "seed": args.seed, "split": args.split,
        "min_tag": args.min_tag, "results": results,
        "command": f"benchmarks/heads.py --docs {args.docs} --split {args.split} --parts "
                   f"{args.parts}"})


def _timed(name: str, rows: dict[str, dict[str, Any]], run: Any) -> None:
    started = time.perf_counter()
    rows[name] = {**run(), "seconds": time.perf_counter() - started}
    print(f"  {name}: {rows[name]}", flush=True)


def _sections(coll: Any, ids: list[str], vectors: np.ndarray, sections: list[str],
              args: argparse.Namespace) -> dict[str, Any]:
    counts = Counter(sections)
    usable = [counts[s] >= FOLDS for s in sections]
    where = {"field": "section", "op": "in", "value": sorted(s for s in counts if counts[s] >= FOLDS)}
    y = np.array(sections)[usable]
    X = vectors[usable]
    rows: dict[str, dict[str, Any]] = {}

    def kinsight(**options: Any) -> Any:
        def run() -> dict[str, Any]:
            result = coll.train_head("section", HeadOptions(where=where, folds=FOLDS, seed=args.seed,
                                                            **options))
            table = read_run_table(coll, result.run_id, "predictions")
            predicted = dict(zip(table.column("id").to_pylist(),
                                 table.column("predicted").to_pylist(), strict=True))
            chosen = (result.fold_parameters if isinstance(result, HeadResult)
                      else result.fold_regularizations)
            return {**_classified(y, np.array([predicted[i] for i, u in zip(ids, usable,
                                                                            strict=True) if u])),
                    "chosen_per_fold": chosen}
        return run

    _timed("kinsight knn head (k by leave-one-out)", rows, kinsight(kind="knn"))
    if args.split == "dev":
        for k in FIXED_K:
            _timed(f"kinsight knn head, k={k}", rows, kinsight(kind="knn", neighbours=k))
    if not args.no_words_probe:
        _timed("kinsight logistic probe (default: vectors + words)", rows, kinsight(kind="logistic"))
    _timed("kinsight logistic probe, vectors alone", rows, kinsight(kind="logistic", lexical=False))

    def neighbours() -> dict[str, Any]:
        from sklearn.model_selection import StratifiedKFold, cross_val_predict
        from sklearn.neighbors import KNeighborsClassifier

        folds = StratifiedKFold(FOLDS, shuffle=True, random_state=args.seed)
        model = KNeighborsClassifier(10, metric="cosine", weights="distance", algorithm="brute")
        return _classified(y, cross_val_predict(model, X, y, cv=folds))

    _timed("scikit-learn KNeighborsClassifier (k=10, cosine, distance weights)", rows, neighbours)
    majority = Counter(y).most_common(1)[0][1] / len(y)
    print_table(f"Debian sections ({args.split}): {len(y)} packages, {len(set(y))} classes, "
                f"{FOLDS}-fold", ["model", "accuracy", "macro-F1", "seconds"],
                [(n, r["accuracy"], r["macro_f1"], f"{r['seconds']:.0f}") for n, r in rows.items()]
                + [("majority class", majority, "", "")])
    return {"packages": len(y), "classes": len(set(y)), "majority": majority, "rows": rows}


def _classified(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    return {"accuracy": float(accuracy_score(y, predicted)),
            "macro_f1": float(f1_score(y, predicted, average="macro"))}


def _regression(coll: Any, vectors: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from kinsight.engine.linear_heads import ALPHA_GRID

    folds = KFold(FOLDS, shuffle=True, random_state=seed)  # the regression head's folds
    rows: dict[str, dict[str, Any]] = {}

    def kinsight(lexical: bool) -> Any:
        def run() -> dict[str, Any]:
            result = coll.train_head("log_words", HeadOptions(folds=FOLDS, seed=seed,
                                                              lexical=lexical))
            return {"r2": result.metrics["r2"], "mae": result.metrics["mae"],
                    "alpha_per_fold": result.fold_parameters}
        return run

    def mean() -> dict[str, Any]:
        predicted = np.zeros(len(y))
        for fit, held in folds.split(vectors):
            predicted[held] = y[fit].mean()
        return _regressed(y, predicted)

    def ridge() -> dict[str, Any]:
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHA_GRID))
        return _regressed(y, cross_val_predict(model, vectors, y, cv=folds))

    _timed("kinsight regression head (default: vectors + words)", rows, kinsight(True))
    _timed("kinsight regression head, vectors alone", rows, kinsight(False))
    _timed("scikit-learn RidgeCV on the standardised vectors", rows, ridge)
    _timed("the training parts' mean", rows, mean)
    print_table(f"log(n_words): {len(y)} packages, {FOLDS}-fold (std of the target "
                f"{np.std(y):.3f})", ["model", "R²", "MAE", "seconds"],
                [(n, r["r2"], r["mae"], f"{r['seconds']:.0f}") for n, r in rows.items()])
    return {"packages": len(y), "target_std": float(np.std(y)), "rows": rows}


def _regressed(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    return {"r2": float(r2_score(y, predicted)), "mae": float(mean_absolute_error(y, predicted))}


def _tags(coll: Any, ids: list[str], vectors: np.ndarray, tags: list[list[str] | None],
          seed: int) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MultiLabelBinarizer, StandardScaler

    tagged = [t is not None for t in tags]
    binarizer = MultiLabelBinarizer()
    Y = binarizer.fit_transform([t for t in tags if t is not None])
    rows: dict[str, dict[str, Any]] = {}

    def kinsight() -> dict[str, Any]:
        result = coll.train_head("tags", HeadOptions(folds=FOLDS, seed=seed))
        table = read_run_table(coll, result.run_id, "predictions")
        labelled = table.column("labelled").to_pylist()
        predicted = {i: p.split(", ") if p else [] for i, p, keep in zip(
            table.column("id").to_pylist(), table.column("predicted").to_pylist(), labelled,
            strict=True) if keep}
        got = binarizer.transform([predicted[i] for i, keep in zip(ids, tagged, strict=True)
                                   if keep])
        return {**_labelled(Y, got), "threshold_per_fold": result.fold_parameters}

    def one_vs_rest() -> dict[str, Any]:
        folds = KFold(FOLDS, shuffle=True, random_state=seed)  # the multilabel head's folds
        model = make_pipeline(StandardScaler(), OneVsRestClassifier(
            LogisticRegression(C=1.0, max_iter=1000)))
        return _labelled(Y, cross_val_predict(model, vectors[tagged], Y, cv=folds))

    _timed("kinsight multilabel head (default: vectors + words)", rows, kinsight)
    _timed("scikit-learn OneVsRest logistic regression (vectors, threshold 0.5)", rows, one_vs_rest)
    print_table(f"debtags: {len(Y)} packages, {Y.shape[1]} tags, {FOLDS}-fold",
                ["model", "micro-F1", "macro-F1", "seconds"],
                [(n, r["micro_f1"], r["macro_f1"], f"{r['seconds']:.0f}") for n, r in rows.items()])
    return {"packages": len(Y), "tags": int(Y.shape[1]), "rows": rows}


def _labelled(Y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    return {"micro_f1": float(f1_score(Y, predicted, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(Y, predicted, average="macro", zero_division=0))}


if __name__ == "__main__":
    main()
