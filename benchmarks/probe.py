"""Linear probe on the Debian corpus: predict a package's section from its frozen embedding, with
kinsight's default head beside scikit-learn baselines on the same vectors and the same folds.

Every section with at least 5 packages is a class. kinsight's default (``train_probe`` with its
default ``ProbeOptions``): logistic regression on the unit all-MiniLM-L6-v2 item vectors beside
TF-IDF of the long description's words and character 3-5-grams, and a TF-IDF word block of each
free-text field (here the one-line ``title``, found by ``lexical.free_text_fields``), C chosen by
inner 3-fold cross-validation on each training part. Beside it: the previous default (the same
without the field blocks), the one before (without the character n-grams either, on the same
folds: near-duplicates in one), the one before that (standardised vectors, C=1:
the vectors alone), and scikit-learn's TfidfVectorizer (sublinear tf, min_df=2) + logistic
regression (C=1) on the text alone, these two on 5 stratified folds. Reported:
accuracy and macro-F1 out of fold, with time. Packages of a seeded ``--docs`` sample's store
(default 12,000; 0: all), in ``--split`` (``test``: without the development sample the defaults
were chosen on).

    KINSIGHT_DATA=/work/shared/data nice -n 10 .venv/bin/python benchmarks/probe.py
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter

import numpy as np
from _common import debian_sample, print_table, save
from sklearn.metrics import accuracy_score, f1_score

from kinsight.engine import Item, ProbeOptions, Store, read_run_table
from kinsight.engine.folds import fold_groups
from kinsight.engine.heads import cross_validated_probe
from kinsight.engine.probes import train_probe

FOLDS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=12_000,
                        help="the seeded sample of packages whose store is read (0: all)")
    parser.add_argument("--split", choices=("dev", "test", "all"), default="test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    sample = debian_sample(args.docs, args.split)
    ids, vectors, sections, texts = sample.ids, sample.vectors, sample.sections, sample.texts
    encoder = sample.encoder
    counts = Counter(sections)
    usable = np.flatnonzero([counts[s] >= FOLDS for s in sections])
    ids, vectors, sections = [ids[i] for i in usable], vectors[usable], sections[usable]
    texts, titles = [texts[i] for i in usable], [sample.titles[i] for i in usable]
    classes = np.unique(sections)
    print(f"{len(ids)} packages ({args.split}), {len(classes)} sections with >= {FOLDS} packages")

    results = {}
    with Store(":memory:") as memory:
        coll = memory.create_collection("bench")
        coll.ensure_space("text", encoder, source_fields=["text"])
        coll.upsert(Item(id=i, fields={"section": s, "title": h, "text": t}, vectors={"text": v})
                    for i, s, h, t, v in zip(ids, sections, titles, texts, vectors, strict=True))
        for name, fields in (
                ("kinsight default: vectors + words + character n-grams + a word block per "
                 "free-text field, C by inner CV", None),
                ("the same without the field blocks (the previous default)", ())):
            started = time.perf_counter()
            probe = train_probe(coll, "section", ProbeOptions(folds=FOLDS, seed=args.seed,
                                                              text_fields=fields))
            table = read_run_table(coll, probe.run_id, "predictions")
            predictions = dict(zip(table.column("id").to_pylist(),
                                   table.column("predicted").to_pylist(), strict=True))
            results[name] = {**_scores(sections, np.array([predictions[i] for i in ids]),
                                       probe.fold_accuracies, time.perf_counter() - started),
                             "fold_C": probe.fold_regularizations,
                             "text_fields": probe.text_fields}
            print(f"  {name}: {results[name]}", flush=True)
        groups = fold_groups(coll, ids, vectors).codes  # train_probe's folds
    started = time.perf_counter()
    proba, folds, chosen = cross_validated_probe(vectors, sections, texts, folds=FOLDS,
                                                 seed=args.seed, regularization=None,
                                                 groups=groups, characters=False)
    name = "vectors + words, C by inner CV (the default before character n-grams)"
    results[name] = {**_scores(sections, classes[proba.argmax(axis=1)], folds,
                               time.perf_counter() - started), "fold_C": chosen}
    print(f"  {name}: {results[name]}", flush=True)
    started = time.perf_counter()
    proba, folds, _ = cross_validated_probe(vectors, sections, folds=FOLDS, seed=args.seed,
                                            regularization=1.0)
    name = "logistic regression on standardised vectors, C=1"
    results[name] = _scores(sections, classes[proba.argmax(axis=1)], folds,
                            time.perf_counter() - started)
    print(f"  {name}: {results[name]}", flush=True)
    started = time.perf_counter()
    predicted, folds = _tfidf_cross_validated(texts, sections, args.seed)
    results["TF-IDF + logistic regression (scikit-learn)"] = _scores(
        sections, predicted, folds, time.perf_counter() - started)
    majority = Counter(sections).most_common(1)[0][1] / len(sections)
    print_table(f"Debian sections ({args.split}): {len(ids)} packages, {len(classes)} classes, "
                f"{FOLDS}-fold",
                ["model", "accuracy", "macro-F1", "fold std", "seconds"],
                [(name, r["accuracy"], r["macro_f1"], r["fold_std"], f"{r['seconds']:.0f}")
                 for name, r in results.items()] + [("majority class", majority, "", "", "")])
    save(f"probe-{args.docs or 'full'}-{args.split}", {
        "packages": len(ids), "classes": len(classes), "folds": FOLDS, "seed": args.seed,
        "split": args.split, "majority_accuracy": majority, "results": results,
        "command": f"benchmarks/probe.py --docs {args.docs} --split {args.split}"})


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
            ) -> dict[str, object]:
    return {"accuracy": float(accuracy_score(y, predicted)),
            "macro_f1": float(f1_score(y, predicted, average="macro")),
            "fold_std": float(np.std(folds)), "seconds": seconds}


if __name__ == "__main__":
    main()
