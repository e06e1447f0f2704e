"""Pair mismatch AUROC (benchmark 1): raw cosine against kinsight's calibrated scores.

Each row is a candidate pair (an item's one side with a text) labelled true or mismatched; a score
that puts mismatched rows above true ones has AUROC 1. Random and hard negatives are scored
separately. Every row is calibrated the way ``pair_mismatch`` calibrates a collection's pairs: its
cosine against impostor pairs drawn from the *true* pairs of the same items (the row's own item
never serves as its impostor), so a mismatched row is judged against the same reference as a true one.

Two data sets, each taking its encoders as arguments (the two sides must share one embedding space:
equal fingerprints):

- ``--data debian`` (default): a seeded sample of Debian packages, side a the short description
  (``title``), side b the long one (``text``), both all-MiniLM-L6-v2 (the bundled store's text
  vectors). Mismatched rows swap titles: random = the title of a package of another section, hard =
  the title of another package of the same section (which may be a near-twin: Tryton modules).
- ``--data images``: the test split's ``mismatch.jsonl`` rows (true caption, random caption from
  another category, hard caption from the same category), pictures encoded by ``--image-encoder``
  and captions by ``--text-encoder``, e.g. the two towers of one CLIP model or the two sides of a
  trained adapter.

    KINSIGHT_DATA=/work/shared/data nice -n 10 .venv/bin/python benchmarks/mismatch_pairs.py
    KINSIGHT_DATA=/work/shared/data nice -n 10 .venv/bin/python benchmarks/mismatch_pairs.py \\
        --data images --image-encoder open_clip:kinsight-tiny@random:image \\
        --text-encoder open_clip:kinsight-tiny@random:text
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from _common import RESULTS, debian_store, git_state, item_vectors, print_table, save
from sklearn.metrics import roc_auc_score

from kinsight.engine import DEFAULT_TEXT_ENCODER, Encoder, load_encoder
from kinsight.engine.mismatch import PairScores, pair_scores

NEIGHBOURS = 5  # the neighbours option's value shown (a round, small number; not tuned on test)
SCORES = (  # (name, impostors, method): what each column of the table measures
    ("raw cosine", None, None),
    ("zscore, random impostors (default)", "random", "zscore"),
    ("rank, random impostors", "random", "rank"),
    ("zscore, nearest impostors", "nearest", "zscore"),
    ("rank, nearest impostors", "nearest", "rank"),
    (f"zscore, random impostors + {NEIGHBOURS} neighbours", "random+neighbours", "zscore"),
)


@dataclass(frozen=True)
class Rows:
    """Candidate pairs: ``a[i]`` with ``b[i]``; ``owners[i]`` is the row's item in the pool of true
    pairs ``(pool_a, pool_b)``; ``kind[i]`` is "true", "random" or "hard"."""

    a: np.ndarray
    b: np.ndarray
    owners: np.ndarray
    kind: np.ndarray
    pool_a: np.ndarray
    pool_b: np.ndarray


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("debian", "images"), default="debian")
    parser.add_argument("--docs", type=int, default=5_000, help="debian: packages sampled")
    parser.add_argument("--text-encoder", default=DEFAULT_TEXT_ENCODER,
                        help="encodes titles (debian) or captions (images)")
    parser.add_argument("--image-encoder", default=None, help="images: encodes the pictures")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("-k", type=int, default=100, help="impostors per row and direction")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    if args.data == "debian":
        rows, setup = debian_rows(args.docs, args.text_encoder, args.seed)
    else:
        if args.image_encoder is None:
            parser.error("--data images needs --image-encoder (and a --text-encoder sharing its space)")
        rows, setup = image_rows(args.split, load_encoder(args.image_encoder),
                                 load_encoder(args.text_encoder))
    results = evaluate(rows, args.k, args.seed)
    counts = {kind: int(np.sum(rows.kind == kind)) for kind in ("true", "random", "hard")}
    print_table(f"pair mismatch AUROC, {args.data} ({counts}; k={args.k} impostors)",
                ["score", "AUROC random", "AUROC hard"],
                [[name, r["random"], r["hard"]] for name, r in results.items()])
    save(f"mismatch_pairs-{args.data}", {**setup, "k": args.k, "seed": args.seed, "rows": counts,
                                         "auroc": results, "git": git_state()})


def evaluate(rows: Rows, k: int, seed: int) -> dict[str, dict[str, float]]:
    """AUROC of each score at telling mismatched rows (random, hard) from true ones."""
    calibrated: dict[str, PairScores] = {
        kind: pair_scores(rows.a, rows.b, pool_a=rows.pool_a, pool_b=rows.pool_b, owners=rows.owners,
                          impostors=kind, k=k, seed=seed) for kind in ("random", "nearest")}
    calibrated["random+neighbours"] = pair_scores(
        rows.a, rows.b, pool_a=rows.pool_a, pool_b=rows.pool_b, owners=rows.owners,
        impostors="random", k=k, seed=seed, neighbours=NEIGHBOURS)
    results = {}
    for name, impostors, method in SCORES:
        mismatch = (-calibrated["random"].cosine if impostors is None  # low cosine: mismatched
                    else calibrated[impostors].score(method))  # type: ignore[arg-type]
        results[name] = {
            negative: float(roc_auc_score(
                rows.kind[rows.kind != other] == negative, mismatch[rows.kind != other]))
            for negative, other in (("random", "hard"), ("hard", "random"))}
    return results


def debian_rows(docs: int, text_encoder: str, seed: int) -> tuple[Rows, dict[str, Any]]:
    with debian_store() as source:
        debian = source.collection("debian")
        all_ids, all_text = item_vectors(debian)
        space = debian.space("text")
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(all_ids), size=min(docs, len(all_ids)), replace=False))
        ids = [all_ids[i] for i in chosen]
        titles = [str(t or "") for t in debian.field_values("title", ids)]
        sections = np.array(debian.field_values("section", ids), dtype=object)
    encoder = load_encoder(text_encoder)
    if encoder.info.fingerprint != space.encoder.fingerprint:
        raise SystemExit(f"{text_encoder} does not share the text space's embedding space "
                         f"({space.encoder.spec}); titles must be encoded by the same model")
    text = all_text[chosen]
    title = cached_text_vectors(encoder, titles, f"mismatch-debian-titles-{len(ids)}-{seed}")
    random_partner = np.empty(len(ids), dtype=np.int64)
    hard_partner = np.empty(len(ids), dtype=np.int64)
    for i, section in enumerate(sections):
        same = np.flatnonzero(sections == section)
        same = same[same != i]
        other = np.flatnonzero(sections != section)
        random_partner[i] = rng.choice(other)
        hard_partner[i] = rng.choice(same) if len(same) else rng.choice(other)
    n = len(ids)
    rows = Rows(a=np.concatenate([title, title[random_partner], title[hard_partner]]),
                b=np.concatenate([text, text, text]), owners=np.tile(np.arange(n), 3),
                kind=np.repeat(np.array(["true", "random", "hard"]), n), pool_a=title, pool_b=text)
    setup = {"data": "debian title vs text", "docs": n, "encoder": text_encoder,
             "hard_from_other_section": int(sum(np.sum(sections == s) == 1 for s in sections))}
    return rows, setup


def image_rows(split: str, image_encoder: Encoder, text_encoder: Encoder) -> tuple[Rows, dict[str, Any]]:
    """The split's mismatch rows: pictures by ``image_encoder``, captions by ``text_encoder``."""
    from image_data import image_items, mismatch_rows
    from image_features import encode_images

    if image_encoder.info.fingerprint != text_encoder.info.fingerprint:
        raise SystemExit(f"{image_encoder.info.spec} and {text_encoder.info.spec} do not share an "
                         "embedding space (different fingerprints): use two towers of one CLIP "
                         "model or the two sides of one adapter")
    items = image_items(split)  # type: ignore[arg-type]
    position = {item.id: n for n, item in enumerate(items)}
    pictures = encode_images([i.image for i in items], encoder=image_encoder)
    true_captions = text_encoder.encode([i.caption for i in items])
    candidates = mismatch_rows(split)  # type: ignore[arg-type]
    captions = text_encoder.encode([str(r["caption"]) for r in candidates])
    owners = np.array([position[str(r["id"])] for r in candidates])
    kind = np.array(["true" if r["label"] == 1 else str(r["neg_type"]) for r in candidates])
    rows = Rows(a=pictures[owners], b=_unit(captions), owners=owners, kind=kind,
                pool_a=pictures, pool_b=_unit(true_captions))
    setup = {"data": f"images {split} split", "pictures": len(items),
             "image_encoder": image_encoder.info.spec, "text_encoder": text_encoder.info.spec,
             "warnings": image_encoder.info.warnings()}
    return rows, setup


def cached_text_vectors(encoder: Encoder, texts: list[str], name: str) -> np.ndarray:
    """Unit vectors of ``texts``, kept in benchmarks/results/NAME.npz (encoding is the slow part)."""
    path = RESULTS / f"{name}.npz"
    if path.exists():
        with np.load(path) as cached:
            if cached["spec"].item() == encoder.info.spec and len(cached["vectors"]) == len(texts):
                return cached["vectors"]
    vectors = _unit(encoder.encode(texts))
    np.savez(path, spec=np.array(encoder.info.spec), vectors=vectors)
    return vectors


def _unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


if __name__ == "__main__":
    main()
