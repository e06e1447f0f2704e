"""Near-duplicates (benchmark 4): pair precision and recall of kinsight's duplicate groups.

Two ground truths:

- ``debian``: all 33,265 packages on the bundled all-MiniLM-L6-v2 vectors; two packages are
  duplicates when they share a ``family`` (their long descriptions share the first paragraph: 407
  families, 1,628 packages, 25,406 pairs, e.g. 166 Tryton modules).
- ``images``: all 2,820 pictures plus three augmented copies of a seeded sample of 300 of them
  (resized to half size, a centre crop of 80%, a JPEG re-encode at quality 40, made with Pillow in a
  temporary folder), on EfficientNet-Lite0 features. Positives are the pairs among a picture and its
  copies. Pairs of two originals are the data sets' own near-duplicates (emoji that differ in a
  detail), whose truth is unknown: precision counts only pairs that involve a copy.

A predicted pair is two items in one group (what a user of the groups would merge: "group"
columns), or, before single linkage chains them, two items whose own cosine reaches the threshold
("linked" columns). Each method
runs at several thresholds; kinsight's default (0.95) is marked, not tuned here. The baseline runs
through the same grouping on other vectors: TF-IDF reduced by LSA (256-d) for text, and a
16x16 grey thumbnail (mean-centred) for pictures, a perceptual-hash-like near-copy detector.

    KINSIGHT_DATA=/work/shared/data nice -n 10 .venv/bin/python benchmarks/near_duplicates.py
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _common import corpus_records, debian_store, git_state, item_vectors, print_table, save
from PIL import Image

from kinsight.engine import EncoderInfo, Item, Store
from kinsight.engine.mismatch import (
    DEFAULT_THRESHOLD,
    DuplicateGroup,
    DuplicateOptions,
    near_duplicates,
)

THRESHOLDS = (0.85, 0.9, DEFAULT_THRESHOLD, 0.98)
SAMPLE = 300
AUGMENTATIONS = ("resize", "crop", "jpeg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("debian", "images", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    payload: dict[str, Any] = {"thresholds": THRESHOLDS, "seed": args.seed, "git": git_state()}
    for data in ("debian", "images") if args.data == "both" else (args.data,):
        ids, spaces, truth, counted = debian_data() if data == "debian" else image_data(args.seed)
        rows = evaluate(ids, spaces, truth, counted)
        print_table(f"near-duplicates, {data}: {len(ids)} items, {_pairs(truth)} true pairs",
                    ["vectors", "threshold", "groups", "largest", "group pairs", "precision", "recall",
                     "F1", "linked pairs", "precision", "recall", "F1"],
                    [[r["vectors"], f"{r['threshold']}{' (default)' if r['default'] else ''}",
                      r["groups"], r["largest"], r["group_pairs"], r["group_precision"],
                      r["group_recall"], r["group_f1"], r["linked_pairs"], r["linked_precision"],
                      r["linked_recall"], r["linked_f1"]] for r in rows])
        payload[data] = {"items": len(ids), "true_pairs": _pairs(truth), "results": rows}
    save(f"near_duplicates-{args.data}", payload)


def evaluate(ids: list[str], spaces: dict[str, np.ndarray], truth: np.ndarray, counted: np.ndarray
             ) -> list[dict[str, Any]]:
    """Pair precision and recall of the groups of each space at each threshold. ``truth[i]`` is
    item i's true group (unique for items in none); predicted pairs count when either item is
    ``counted`` (all items for Debian; the copies for pictures)."""
    rows = []
    with Store(":memory:") as store:
        coll = store.create_collection("bench")
        for name, vectors in spaces.items():
            coll.ensure_space(name, EncoderInfo(spec=f"bench:{name}", modality="text",
                                                dim=vectors.shape[1], fingerprint=name))
        for start in range(0, len(ids), 5_000):
            coll.upsert(Item(id=ids[i], vectors={n: v[i] for n, v in spaces.items()})
                        for i in range(start, min(start + 5_000, len(ids))))
        position = {item_id: n for n, item_id in enumerate(ids)}
        for name in spaces:
            for threshold in THRESHOLDS:
                result = near_duplicates(coll, DuplicateOptions(space=name, threshold=threshold))
                predicted = _labels(result.groups, position, len(ids))
                # Pairs of uncounted items only (two originals) are left out of the prediction.
                made = _pairs(predicted) - _pairs(predicted[~counted])
                both = _pairs(predicted * (truth.max() + 1) + truth)  # in one group and one truth
                linked, linked_right = _linked_pairs(result.groups, position, spaces[name], truth,
                                                     counted, threshold)
                rows.append({"vectors": name, "threshold": threshold,
                             "default": threshold == DEFAULT_THRESHOLD, "groups": len(result.groups),
                             "largest": max((g.size for g in result.groups), default=0),
                             **_precision_recall("group", both, made, _pairs(truth)),
                             **_precision_recall("linked", linked_right, linked, _pairs(truth)),
                             "seconds": result.seconds})
    return rows


def _precision_recall(prefix: str, right: int, made: int, true_pairs: int) -> dict[str, Any]:
    precision = right / max(1, made)
    recall = right / max(1, true_pairs)
    return {f"{prefix}_pairs": made, f"{prefix}_precision": precision, f"{prefix}_recall": recall,
            f"{prefix}_f1": 2 * precision * recall / max(1e-12, precision + recall)}


def _linked_pairs(groups: list[DuplicateGroup], position: dict[str, int], vectors: np.ndarray,
                  truth: np.ndarray, counted: np.ndarray, threshold: float) -> tuple[int, int]:
    """``(pairs, true pairs)`` among the pairs whose own cosine reaches the threshold (the links
    the groups were made of), counted pairs only: what the detection found before single linkage
    chained the links into groups."""
    made = right = 0
    for g in groups:
        members = np.array([position[m] for m in g.members])
        unit = vectors[members] / np.linalg.norm(vectors[members], axis=1, keepdims=True)
        upper = np.triu(unit @ unit.T >= threshold - 1e-6, k=1)
        upper &= counted[members][:, None] | counted[members][None, :]
        made += int(upper.sum())
        right += int((upper & (truth[members][:, None] == truth[members][None, :])).sum())
    return made, right


def _labels(groups: list[DuplicateGroup], position: dict[str, int], n: int) -> np.ndarray:
    """Each item's group number; items in no group get their own."""
    labels = np.arange(n, dtype=np.int64) + n
    for g in groups:
        labels[[position[m] for m in g.members]] = g.group
    return labels


def _pairs(labels: np.ndarray) -> int:
    """Pairs of items sharing a label: the sum of C(size, 2) over the labels."""
    counts = np.unique(labels, return_counts=True)[1].astype(np.int64)
    return int(np.sum(counts * (counts - 1) // 2))


def debian_data() -> tuple[list[str], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    with debian_store() as source:
        debian = source.collection("debian")
        ids, vectors = item_vectors(debian)
        texts = [str(t or "") for t in debian.field_values("text", ids)]
    # The families come from the corpus itself: the bundled store may hold an older copy of them.
    family_of = {r.id: r.fields["family"] for r in corpus_records()}
    families = [family_of.get(i) or None for i in ids]
    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2).fit_transform(texts)
    lsa = TruncatedSVD(256, random_state=0).fit_transform(tfidf)
    codes = {f: n for n, f in enumerate(sorted({f for f in families if f}))}
    truth = np.array([codes[f] if f else len(codes) + i for i, f in enumerate(families)], dtype=np.int64)
    return ids, {"minilm": vectors, "tfidf_lsa": _unit(lsa)}, truth, np.ones(len(ids), bool)


def image_data(seed: int) -> tuple[list[str], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    from image_data import image_items
    from image_features import encode_images, picture_features

    from kinsight.indexers.image_files import open_image

    items = image_items()
    ids, features = picture_features(items)
    sample = np.sort(np.random.default_rng(seed).choice(len(items), size=SAMPLE, replace=False))
    with tempfile.TemporaryDirectory() as folder:
        copies = [augment(open_image(items[i].image), how, Path(folder) / f"{i}-{how}.png")
                  for i in sample for how in AUGMENTATIONS]
        copy_features = encode_images(copies, desc="augmented copies")
        tiny = np.stack([_tiny(open_image(p)) for p in [i.image for i in items] + copies])
    all_ids = ids + [f"{items[i].id}#{how}" for i in sample for how in AUGMENTATIONS]
    truth = np.concatenate([np.arange(len(items)), np.repeat(sample, len(AUGMENTATIONS))])
    counted = np.r_[np.zeros(len(items), bool), np.ones(len(copies), bool)]
    spaces = {"efficientnet": np.concatenate([features, copy_features]), "grey_16x16": tiny}
    return all_ids, spaces, truth, counted


def augment(image: Image.Image, how: str, path: Path) -> Path:
    """A copy of ``image`` written to ``path``: half size, an 80% centre crop, or JPEG quality 40."""
    width, height = image.size
    if how == "resize":
        image = image.resize((max(1, width // 2), max(1, height // 2)), Image.Resampling.BICUBIC)
    elif how == "crop":
        dx, dy = width // 10, height // 10
        image = image.crop((dx, dy, width - dx, height - dy))
    else:
        path = path.with_suffix(".jpg")
        image.save(path, format="JPEG", quality=40)
        return path
    image.save(path)
    return path


def _tiny(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image.convert("L").resize((16, 16), Image.Resampling.BILINEAR), np.float32)
    centred = pixels.ravel() - pixels.mean()
    return centred / max(float(np.linalg.norm(centred)), 1e-6)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)).astype(np.float32)


if __name__ == "__main__":
    main()
