"""Label mismatch (benchmark 3): find labels flipped on purpose, beside cleanlab.

5% of the items (seeded) get another label, and each method flags the items it thinks mislabelled;
precision and recall are measured against the flipped set. Two data sets:

- ``debian``: Debian ``section`` of a seeded sample of packages (``--docs``, default 10,000; 0 for
  all 33,265), on the bundled all-MiniLM-L6-v2 text vectors; a flipped label is another section.
- ``images``: ``category`` of all 2,820 captioned pictures on EfficientNet-Lite0 features (cached by
  ``image_features.py``); a flipped label is another category of the same data set (tuxpaint or emoji:
  an emoji labelled as a tuxpaint photo category would be too easy).

Methods, all on the same vectors: kinsight's ``label_mismatch`` by k-NN vote (k=10) and by k-NN +
probe; and cleanlab's ``find_label_issues`` (its defaults) on out-of-sample probabilities from the
same probe kinsight uses (standardised logistic regression, out of fold, 5 stratified folds,
same seed). Besides precision and recall of what each flags, precision@flipped is the share of
flipped items among as many items as were flipped, from the top of each method's ranking (worst
first; cleanlab's by the probability of the given label): it does not depend on where a method draws
its line. Both data sets carry real label noise too (Debian's ``misc`` and ``libs`` span every
topic), so a flagged item that was not flipped is not always wrong: precision is a lower bound.

    KINSIGHT_DATA=/work/shared/data nice -n 10 .venv/bin/python benchmarks/label_mismatch.py
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np
from _common import debian_store, git_state, item_vectors, print_table, save

from kinsight.engine import EncoderInfo, Item, Store
from kinsight.engine.mismatch import LabelMismatchOptions, label_mismatch
from kinsight.engine.mismatch.labels import probe_probabilities

FLIP_SHARE = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("debian", "images", "both"), default="both")
    parser.add_argument("--docs", type=int, default=10_000, help="debian: packages sampled (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    payload: dict[str, Any] = {"flip_share": FLIP_SHARE, "seed": args.seed, "git": git_state()}
    for data in ("debian", "images") if args.data == "both" else (args.data,):
        ids, vectors, labels, groups, encoder = (debian_data(args.docs, args.seed) if data == "debian"
                                                 else image_data())
        noisy, flipped = flip(labels, groups, args.seed)
        rows = compare(ids, vectors, noisy, labels, flipped, encoder, args.seed)
        print_table(f"label mismatch, {data}: {len(ids)} items, {flipped.sum()} labels flipped",
                    ["method", "flagged", "precision", "recall", "F1", "precision@flipped",
                     "true label suggested", "s"],
                    [[r["method"], r["flagged"], r["precision"], r["recall"], r["f1"], r["top_precision"],
                      r["suggested_right"], f"{r['seconds']:.1f}"] for r in rows])
        payload[data] = {"items": len(ids), "flipped": int(flipped.sum()), "results": rows}
    save(f"label_mismatch-{args.data}", payload)


def flip(labels: np.ndarray, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy labels, flipped mask)``: ``FLIP_SHARE`` of the items, drawn with ``seed``, get another
    label of their own group (their data set), drawn uniformly."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(labels), size=round(FLIP_SHARE * len(labels)), replace=False)
    noisy = labels.copy()
    for i in chosen:
        others = np.unique(labels[(groups == groups[i]) & (labels != labels[i])])
        noisy[i] = rng.choice(others)
    return noisy, noisy != labels


def compare(ids: list[str], vectors: np.ndarray, noisy: np.ndarray, truth: np.ndarray,
            flipped: np.ndarray, encoder: EncoderInfo, seed: int) -> list[dict[str, Any]]:
    from cleanlab.filter import find_label_issues

    rows = []
    with Store(":memory:") as store:
        coll = store.create_collection("bench")
        coll.ensure_space("v", encoder)
        coll.upsert(Item(id=i, fields={"label": str(lab)}, vectors={"v": v})
                    for i, lab, v in zip(ids, noisy, vectors, strict=True))
        position = {item_id: n for n, item_id in enumerate(ids)}
        for probe in (False, True):
            started = time.perf_counter()
            result = label_mismatch(coll, "label", LabelMismatchOptions(probe=probe, seed=seed))
            flagged = np.zeros(len(ids), dtype=bool)
            suggested = {position[i.id]: i.suggested for i in result.items if i.flagged}
            flagged[list(suggested)] = True
            right = sum(suggested[n] == truth[n] for n in suggested if flipped[n])
            ranked = np.array([position[i.id] for i in result.items])  # worst first
            rows.append(_scores(f"kinsight {result.method} (k={result.k})", flagged, flipped, right,
                                ranked, time.perf_counter() - started))
    started = time.perf_counter()
    classes, codes = np.unique(noisy, return_inverse=True)
    probabilities = probe_probabilities(vectors, codes, len(classes), seed)
    issues = find_label_issues(codes, probabilities)
    caught = issues & flipped
    right = int(np.sum(classes[np.argmax(probabilities[caught], axis=1)] == truth[caught]))
    # cleanlab's own ranking of issues: lowest probability of the given label first.
    ranked = np.argsort(probabilities[np.arange(len(codes)), codes], kind="stable")
    rows.append(_scores("cleanlab find_label_issues (same probe)", issues, flipped, right, ranked,
                        time.perf_counter() - started))
    return rows


def _scores(method: str, flagged: np.ndarray, flipped: np.ndarray, suggested_right: int,
            ranked: np.ndarray, seconds: float) -> dict[str, Any]:
    """Precision and recall of the flagged items; ``top_precision`` is the share of flipped items
    among the first ``flipped.sum()`` of the ranking (worst first), which does not depend on
    where a method draws its line."""
    hits = int(np.sum(flagged & flipped))
    precision = hits / max(1, int(flagged.sum()))
    recall = hits / max(1, int(flipped.sum()))
    return {"method": method, "flagged": int(flagged.sum()), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / max(1e-12, precision + recall),
            "suggested_right": suggested_right / max(1, hits),
            "top_precision": float(flipped[ranked[:int(flipped.sum())]].mean()), "seconds": seconds}


def debian_data(docs: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray,
                                                 EncoderInfo]:
    with debian_store() as source:
        debian = source.collection("debian")
        ids, vectors = item_vectors(debian)
        if docs and docs < len(ids):
            chosen = np.sort(np.random.default_rng(seed).choice(len(ids), size=docs, replace=False))
            ids, vectors = [ids[i] for i in chosen], vectors[chosen]
        sections = np.array(debian.field_values("section", ids), dtype=object)
        encoder = debian.space("text").encoder
    return ids, vectors, sections, np.zeros(len(ids), dtype=int), encoder


def image_data() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, EncoderInfo]:
    from image_data import image_items
    from image_features import DEFAULT_IMAGE_ENCODER as ENCODER
    from image_features import picture_features

    items = image_items()
    ids, vectors = picture_features(items)
    categories = np.array([i.category for i in items], dtype=object)
    datasets = np.array([i.id.split("/")[0] for i in items], dtype=object)
    encoder = EncoderInfo(spec=ENCODER, modality="image", dim=vectors.shape[1], fingerprint=ENCODER)
    return ids, vectors, categories, datasets, encoder


if __name__ == "__main__":
    main()
