"""Label mismatch (benchmark 3): find labels flipped on purpose, beside cleanlab.

5% of the items (seeded) get another label, and each method flags the items it thinks mislabelled;
precision and recall are measured against the flipped set. Two data sets:

- ``debian``: Debian ``section`` of the packages of a seeded ``--docs`` sample (default 12,000;
  0 for all 33,265) on the bundled all-MiniLM-L6-v2 text vectors, in the ``--split`` chosen:
  ``test`` (default) leaves out the development sample the defaults were chosen on
  (``_common.DEVELOPMENT_DOCS``); a flipped label is another section.
- ``images``: ``category`` of all 2,820 captioned pictures on EfficientNet-Lite0 features (cached by
  ``image_features.py``); a flipped label is another category of the same data set (tuxpaint or emoji:
  an emoji labelled as a tuxpaint photo category would be too easy).

Methods, all on the same vectors: kinsight's ``label_mismatch`` by default (a cross-validated head
on the vectors beside TF-IDF of the long description and of the title, near-duplicates in one
fold, blended with the vote of 30 neighbours, ranked by self-confidence; flags what confident
learning flags), by the probe alone and by the k-NN vote alone; cleanlab's
``find_label_issues`` (its defaults) on out-of-sample probabilities of the vectors-only probe (the
issue's baseline). ``--more`` adds kinsight's probe without words, the default on a collection
without the titles (the default before it read them), and cleanlab on kinsight's
probe with words (whose ranking, self-confidence, is kinsight's probe's). Besides precision and
recall of what each flags, precision@flipped is the share of flipped items among as many items
as were flipped, from the top of each method's ranking (worst first; cleanlab's by
self-confidence, the probability of the given label): kinsight's ``budget`` mode, and
independent of where a method draws its line.
Both data sets carry real label noise too (Debian's ``misc`` and ``libs`` span every topic), so a
flagged item that was not flipped is not always wrong: precision is a lower bound. cleanlab is in
the ``bench`` extra; without it its rows are left out, with a note.

    KINSIGHT_DATA=/work/shared/data nice -n 10 .venv/bin/python benchmarks/label_mismatch.py
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np
from _common import debian_sample, git_state, missing_extra, print_table, save

from kinsight.engine import EncoderInfo, Item, Store
from kinsight.engine.mismatch import LabelMismatchOptions, label_mismatch
from kinsight.engine.mismatch.labels import probe_probabilities

FLIP_SHARE = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("debian", "images", "both"), default="debian")
    parser.add_argument("--docs", type=int, default=12_000,
                        help="debian: the seeded sample of packages whose store is read (0: all)")
    parser.add_argument("--split", choices=("dev", "test", "all"), default="test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--more", action="store_true", help="also the variants (slow)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    payload: dict[str, Any] = {"flip_share": FLIP_SHARE, "seed": args.seed, "git": git_state(),
                               "docs": args.docs, "split": args.split}
    for data in ("debian", "images") if args.data == "both" else (args.data,):
        ids, vectors, labels, groups, texts, titles, encoder = (
            debian_data(args.docs, args.split) if data == "debian" else image_data())
        noisy, flipped = flip(labels, groups, args.seed)
        rows = compare(ids, vectors, noisy, labels, flipped, texts, titles, encoder, args.seed,
                       args.more)
        print_table(f"label mismatch, {data} ({args.split}): {len(ids)} items, {flipped.sum()} "
                    "labels flipped",
                    ["method", "flagged", "precision", "recall", "F1", "precision@flipped",
                     "true label suggested", "s"],
                    [[r["method"], r["flagged"], r["precision"], r["recall"], r["f1"], r["top_precision"],
                      r["suggested_right"], f"{r['seconds']:.1f}"] for r in rows])
        payload[data] = {"items": len(ids), "flipped": int(flipped.sum()), "results": rows}
    save(f"label_mismatch-{args.data}-{args.split}", payload)


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
            flipped: np.ndarray, texts: list[str] | None, titles: list[str] | None,
            encoder: EncoderInfo, seed: int, more: bool) -> list[dict[str, Any]]:
    rows = []
    with Store(":memory:") as store:
        full = _collection(store, "bench", ids, noisy, vectors, texts, titles, encoder)
        position = {item_id: n for n, item_id in enumerate(ids)}
        variants = [("default", full, LabelMismatchOptions(seed=seed)),
                    ("probe alone", full, LabelMismatchOptions(method="probe", seed=seed)),
                    ("knn", full, LabelMismatchOptions(method="knn", seed=seed))]
        if more and texts is not None:
            variants.append(("probe without words", full,
                             LabelMismatchOptions(lexical=False, seed=seed)))
        if more and titles is not None:  # the default before it read the titles
            untitled = _collection(store, "untitled", ids, noisy, vectors, texts, None, encoder)
            variants.append(("without titles", untitled, LabelMismatchOptions(seed=seed)))
        for name, coll, options in variants:
            started = time.perf_counter()
            result = label_mismatch(coll, "label", options)
            flagged = np.zeros(len(ids), dtype=bool)
            suggested = {position[i.id]: i.suggested for i in result.items if i.flagged}
            flagged[list(suggested)] = True
            right = sum(suggested[n] == truth[n] for n in suggested if flipped[n])
            ranked = np.array([position[i.id] for i in result.items])  # worst first
            rows.append(_scores(f"kinsight {name}: {result.method}"
                                f"{' + words' if result.lexical else ''} (k={result.k})",
                                flagged, flipped, right, ranked, time.perf_counter() - started))
            rows[-1]["fold_groups"] = result.fold_groups
            print(f"  {rows[-1]['method']}: precision@flipped {rows[-1]['top_precision']:.3f}, "
                  f"{result.fold_groups} groups of near-duplicates kept in one fold", flush=True)
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        print(missing_extra("cleanlab"))
        return rows
    classes, codes = np.unique(noisy, return_inverse=True)
    for name, words in (("vectors", None), ("vectors + words", texts)):
        if name != "vectors" and (texts is None or not more):
            continue
        started = time.perf_counter()
        probabilities = probe_probabilities(vectors, codes, len(classes), seed, words)
        issues = find_label_issues(codes, probabilities)
        caught = issues & flipped
        right = int(np.sum(classes[np.argmax(probabilities[caught], axis=1)] == truth[caught]))
        # cleanlab's own ranking of issues: lowest probability of the given label first.
        ranked = np.argsort(probabilities[np.arange(len(codes)), codes], kind="stable")
        rows.append(_scores(f"cleanlab find_label_issues (probe on {name})", issues, flipped,
                            right, ranked, time.perf_counter() - started))
        print(f"  {rows[-1]['method']}: precision@flipped {rows[-1]['top_precision']:.3f}",
              flush=True)
    return rows


def _collection(store: Store, name: str, ids: list[str], labels: np.ndarray,
                vectors: np.ndarray, texts: list[str] | None, titles: list[str] | None,
                encoder: EncoderInfo) -> Any:
    """A collection of the items with their (noisy) ``label``, vectors in space ``v`` made from
    ``text`` and, when given, a ``title`` field (which label checks read as free text)."""
    coll = store.create_collection(name)
    coll.ensure_space("v", encoder, source_fields=["text"] if texts is not None else ())
    n = len(ids)
    coll.upsert(Item(id=i, fields={"label": str(lab), "text": text,
                                   **({"title": title} if titles is not None else {})},
                     vectors={"v": v})
                for i, lab, v, text, title in zip(ids, labels, vectors, texts or [None] * n,
                                                  titles or [None] * n, strict=True))
    return coll


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


def debian_data(docs: int, split: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray,
                                               list[str], list[str], EncoderInfo]:
    sample = debian_sample(docs, split)
    return (sample.ids, sample.vectors, sample.sections.astype(object),
            np.zeros(len(sample.ids), dtype=int), sample.texts, sample.titles, sample.encoder)


def image_data() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, None, None,
                         EncoderInfo]:
    from image_data import image_items
    from image_features import DEFAULT_IMAGE_ENCODER as ENCODER
    from image_features import picture_features

    items = image_items()
    ids, vectors = picture_features(items)
    categories = np.array([i.category for i in items], dtype=object)
    datasets = np.array([i.id.split("/")[0] for i in items], dtype=object)
    encoder = EncoderInfo(spec=ENCODER, modality="image", dim=vectors.shape[1], fingerprint=ENCODER)
    return ids, vectors, categories, datasets, None, None, encoder


if __name__ == "__main__":
    main()
