"""Near-duplicates (benchmark 4): pair precision and recall of kinsight's duplicate groups.

Two ground truths:

- ``debian``: the 33,265 packages on the bundled all-MiniLM-L6-v2 vectors; two packages are
  duplicates when they share a ``family`` (their long descriptions share the first paragraph: 407
  families, 1,628 packages, 25,406 pairs, e.g. 166 Tryton modules).
- ``images``: the 2,820 pictures plus three augmented copies of a seeded sample of 300 of them
  (resized to half size, a centre crop of 80%, a JPEG re-encode at quality 40, made with Pillow in a
  temporary folder), on EfficientNet-Lite0 features. Positives are the pairs among a picture and its
  copies. Pairs of two originals are the data sets' own near-duplicates (emoji that differ in a
  detail), whose truth is unknown: precision counts only pairs that involve a copy.

Each data set is cut in two halves by a seeded shuffle of its true groups (families and lone
packages apart; a picture goes with its copies), and each half is a collection of its own, as a
user would have it: ``dev`` is where the default (``threshold="auto"``: its ``AUTO_RATIO``,
and the linkage) was chosen — the grid printed for it is the evidence, picked by the mean F1 of
the two data sets — and ``report`` is only scored. Beside it on each half: fixed thresholds with
single linkage (kinsight's grouping before ``auto``, whose default was 0.95), and the same
grouping on other vectors: TF-IDF reduced by LSA (256-d) for text, and a 16x16 grey thumbnail
(mean-centred) for pictures, a perceptual-hash-like near-copy detector.

A predicted pair is two items in one group (what a user of the groups would merge: "group"
columns), or two items whose own cosine reaches the threshold ("linked" columns: the links
before any grouping). ``s`` is the seconds of ``near_duplicates`` (choosing the threshold
included).

    KINSIGHT_DATA=/work/shared/data nice -n 10 .venv/bin/python benchmarks/near_duplicates.py
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

import numpy as np
from _common import RESULTS, corpus_records, debian_store, git_state, item_vectors, print_table, save, split
from PIL import Image

from kinsight.engine import EncoderInfo, Item, Store
from kinsight.engine.mismatch import DuplicateGroup, DuplicateOptions, Linkage, near_duplicates
from kinsight.engine.mismatch.duplicates import AUTO_RATIO, auto_threshold
from kinsight.engine.store import DATABASE_FILE

THRESHOLDS = (0.85, 0.9, 0.95, 0.98)
RATIOS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.5)  # the dev grid of AUTO_RATIO
SAMPLE = 300
AUGMENTATIONS = ("resize", "crop", "jpeg")
HEADER = ["vectors", "threshold", "linkage", "groups", "largest", "group pairs", "precision",
          "recall", "F1", "linked pairs", "precision", "recall", "F1", "s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("debian", "images", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--debian-others", type=int, default=None, metavar="N", help=(
        "Debian: every family package plus N seeded lone ones, in a store of their own (default: "
        "all 33,265 packages, whose store takes ~25 min to encode on two quiet cores)"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    payload: dict[str, Any] = {"thresholds": THRESHOLDS, "ratios": RATIOS,
                               "auto_ratio": AUTO_RATIO, "seed": args.seed,
                               "debian_others": args.debian_others,
                               "git": git_state()}
    grids = {}
    for data in ("debian", "images") if args.data == "both" else (args.data,):
        ids, spaces, truth, counted = (debian_data(args.debian_others, args.seed) if data == "debian"
                                       else image_data(args.seed))
        main_space, baseline = list(spaces)  # the space measured, then its baseline
        payload[data] = {}
        for half, rows in halves(truth, counted, args.seed).items():
            sub = {name: vectors[rows] for name, vectors in spaces.items()}
            sub_ids = [ids[i] for i in rows]
            with Collection(sub_ids, sub) as coll:
                scored = Scorer(coll, sub_ids, sub, truth[rows], counted[rows])
                results = [scored(main_space, "auto", "average"), scored(main_space, "auto", "complete")]
                results += [scored(main_space, t, "single") for t in THRESHOLDS]
                results += [scored(baseline, "auto", "average")]
                results += [scored(baseline, t, "single") for t in THRESHOLDS]
                if half == "dev":
                    grids[data] = [scored.with_ratio(main_space, d, linkage)
                                   for d in RATIOS for linkage in get_args(Linkage)]
            print_table(f"near-duplicates, {data}, {half} half: {len(rows)} items, "
                        f"{_pairs(truth[rows])} true pairs", HEADER, [_cells(r) for r in results])
            payload[data][half] = {"items": len(rows), "true_pairs": _pairs(truth[rows]),
                                   "results": results}
        print_table(f"near-duplicates, {data}, dev half: threshold auto by AUTO_RATIO "
                    f"(the engine's: {AUTO_RATIO})", ["ratio", *HEADER],
                    [[r["ratio"], *_cells(r)] for r in grids[data]])
        payload[data]["dev_grid"] = grids[data]
    if len(grids) == 2:
        mean_f1 = {(r["ratio"], r["linkage"]): (r["group_f1"] + s["group_f1"]) / 2
                   for r, s in zip(grids["debian"], grids["images"], strict=True)}
        best = max(mean_f1, key=lambda key: mean_f1[key])
        print(f"\nchosen on dev by the mean group F1 of the two data sets: ratio {best[0]}, "
              f"{best[1]} linkage (F1 {mean_f1[best]:.3f}); the engine's default: "
              f"{AUTO_RATIO}, {DuplicateOptions().linkage}")
        payload["dev_choice"] = {"ratio": best[0], "linkage": best[1], "mean_f1": mean_f1[best]}
    save(f"near_duplicates-{args.data}", payload)


def halves(truth: np.ndarray, counted: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Rows of the ``dev`` and ``report`` halves: the true groups of two or more items (families;
    a picture and its copies) and the lone items are each split by a seeded shuffle, so each half
    gets half of both."""
    labels, sizes = np.unique(truth, return_counts=True)
    chosen: dict[str, list[Any]] = {"dev": [], "report": []}
    for kind in (labels[sizes > 1], labels[sizes == 1]):
        for half, part in split(list(kind), seed).items():
            chosen[half] += part
    return {half: np.flatnonzero(np.isin(truth, part)) for half, part in chosen.items()}


class Collection:
    """An in-memory store with one collection of ``ids`` and their vectors in each space."""

    def __init__(self, ids: list[str], spaces: dict[str, np.ndarray]) -> None:
        self.store = Store(":memory:")
        self.coll = self.store.create_collection("bench")
        for name, vectors in spaces.items():
            self.coll.ensure_space(name, EncoderInfo(spec=f"bench:{name}", modality="text",
                                                     dim=vectors.shape[1], fingerprint=name))
        for start in range(0, len(ids), 5_000):
            self.coll.upsert(Item(id=ids[i], vectors={n: v[i] for n, v in spaces.items()})
                             for i in range(start, min(start + 5_000, len(ids))))

    def __enter__(self) -> Any:
        return self.coll

    def __exit__(self, *exc: object) -> None:
        self.store.close()


class Scorer:
    """Runs ``near_duplicates`` on one collection and scores its groups against ``truth``
    (``truth[i]``: item i's true group, unique for items in none); predicted pairs count when
    either item is ``counted`` (all items for Debian; the copies for pictures)."""

    def __init__(self, coll: Any, ids: list[str], spaces: dict[str, np.ndarray], truth: np.ndarray,
                 counted: np.ndarray) -> None:
        self.coll, self.spaces, self.truth, self.counted = coll, spaces, truth, counted
        self.position = {item_id: n for n, item_id in enumerate(ids)}

    def __call__(self, space: str, threshold: float | str, linkage: Linkage) -> dict[str, Any]:
        result = near_duplicates(self.coll, DuplicateOptions(space=space, threshold=threshold,  # type: ignore[arg-type]
                                                             linkage=linkage))
        predicted = _labels(result.groups, self.position, len(self.truth))
        # Pairs of uncounted items only (two originals) are left out of the prediction.
        made = _pairs(predicted) - _pairs(predicted[~self.counted])
        both = _pairs(predicted * (self.truth.max() + 1) + self.truth)  # one group, one truth
        linked, linked_right = self._linked_pairs(space, result.threshold)
        true_pairs = _pairs(self.truth)
        return {"vectors": space, "threshold": result.threshold,
                "threshold_given": threshold, "linkage": linkage, "groups": len(result.groups),
                "largest": max((g.size for g in result.groups), default=0),
                **_precision_recall("group", both, made, true_pairs),
                **_precision_recall("linked", linked_right, linked, true_pairs),
                "seconds": result.seconds}

    def with_ratio(self, space: str, ratio: float, linkage: Linkage) -> dict[str, Any]:
        """The row of ``threshold="auto"`` had ``AUTO_RATIO`` been ``ratio``."""
        threshold = auto_threshold(_unit(self.spaces[space]), ratio)
        if threshold is None:
            raise SystemExit(f"too few items in space {space!r} to choose a threshold from")
        return {"ratio": ratio, **self(space, threshold, linkage)}

    def _linked_pairs(self, space: str, threshold: float) -> tuple[int, int]:
        """``(pairs, true pairs)`` among the counted pairs whose own cosine reaches the threshold,
        found by an exact range search."""
        import faiss

        unit = np.ascontiguousarray(_unit(self.spaces[space]))
        index = faiss.IndexFlatIP(unit.shape[1])
        index.add(unit)
        lims, _, found = index.range_search(unit, threshold - 1e-6)
        source = np.repeat(np.arange(len(unit)), np.diff(lims).astype(np.int64))
        keep = (source < found) & (self.counted[source] | self.counted[found])
        right = self.truth[source[keep]] == self.truth[found[keep]]
        return int(keep.sum()), int(right.sum())


def _cells(r: dict[str, Any]) -> list[Any]:
    given = r["threshold_given"]
    threshold = f"auto: {r['threshold']:.3f}" if given == "auto" else f"{r['threshold']:.3f}"
    return [r["vectors"], threshold, r["linkage"], r["groups"], r["largest"], r["group_pairs"],
            r["group_precision"], r["group_recall"], r["group_f1"], r["linked_pairs"],
            r["linked_precision"], r["linked_recall"], r["linked_f1"], f"{r['seconds']:.1f}"]


def _precision_recall(prefix: str, right: int, made: int, true_pairs: int) -> dict[str, Any]:
    precision = right / max(1, made)
    recall = right / max(1, true_pairs)
    return {f"{prefix}_pairs": made, f"{prefix}_precision": precision, f"{prefix}_recall": recall,
            f"{prefix}_f1": 2 * precision * recall / max(1e-12, precision + recall)}


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


def debian_data(others: int | None, seed: int
                ) -> tuple[list[str], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    with (debian_store() if others is None else family_store(others, seed)) as source:
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


@contextmanager
def family_store(others: int, seed: int) -> Iterator[Store]:
    """A store (collection ``debian``, bundled MiniLM) of every package of a family and ``others``
    lone packages drawn with ``seed``, kept in benchmarks/results/ and reused."""
    from kinsight.indexers import IngestOptions, ingest_records

    records = corpus_records()
    lone = [n for n, r in enumerate(records) if not r.fields["family"]]
    drawn = set(np.random.default_rng(seed).choice(lone, size=min(others, len(lone)), replace=False))
    chosen = [r for n, r in enumerate(records) if r.fields["family"] or n in drawn]
    path = RESULTS / f"near_duplicates-families-{others}-{seed}-store"
    if not (path / DATABASE_FILE).exists():
        with Store(path) as store:
            print(ingest_records(store, chosen, IngestOptions(collection="debian")).summary())
    with Store(path, read_only=True) as store:
        yield store


def image_data(seed: int) -> tuple[list[str], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    from image_data import image_items
    from image_features import DEFAULT_IMAGE_ENCODER, picture_features

    from kinsight.indexers.image_files import open_image

    items = image_items()
    ids, features = picture_features(items)
    sample = np.sort(np.random.default_rng(seed).choice(len(items), size=SAMPLE, replace=False))
    copy_features, copy_tiny = copies(items, sample, DEFAULT_IMAGE_ENCODER, seed)
    tiny = np.concatenate([np.stack([_tiny(open_image(i.image)) for i in items]), copy_tiny])
    all_ids = ids + [f"{items[i].id}#{how}" for i in sample for how in AUGMENTATIONS]
    truth = np.concatenate([np.arange(len(items)), np.repeat(sample, len(AUGMENTATIONS))])
    counted = np.r_[np.zeros(len(items), bool), np.ones(len(sample) * len(AUGMENTATIONS), bool)]
    spaces = {"efficientnet": np.concatenate([features, copy_features]), "grey_16x16": tiny}
    return all_ids, spaces, truth, counted


def copies(items: list[Any], sample: np.ndarray, spec: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """EfficientNet features and grey thumbnails of the augmented copies of the ``sample``
    pictures, every augmentation of each in turn; cached in benchmarks/results/ per seed and
    encoder fingerprint (encoding them takes minutes on two cores)."""
    from image_features import encode_images

    from kinsight.engine import load_encoder
    from kinsight.indexers.image_files import open_image

    encoder = load_encoder(spec)
    path = RESULTS / f"near_duplicates-copies-{seed}-{encoder.info.fingerprint}.npz"
    names = np.array([f"{items[i].id}#{how}" for i in sample for how in AUGMENTATIONS])
    if path.exists():
        cached = np.load(path)
        if np.array_equal(cached["names"], names):
            return cached["features"], cached["tiny"]
    with tempfile.TemporaryDirectory() as folder:
        made = [augment(open_image(items[i].image), how, Path(folder) / f"{i}-{how}.png")
                for i in sample for how in AUGMENTATIONS]
        features = encode_images(made, encoder=encoder, desc="augmented copies")
        tiny = np.stack([_tiny(open_image(p)) for p in made])
    RESULTS.mkdir(parents=True, exist_ok=True)
    np.savez(path, names=names, features=features, tiny=tiny)
    return features, tiny


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
