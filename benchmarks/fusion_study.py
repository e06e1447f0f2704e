"""Fusion study: how hybrid search should merge BM25 and dense rankings, chosen on one half of the
Debian development queries and reported on the other.

Studies the normalisation of each side's scores (min-max, z-score, reciprocal rank), the dense
weight, the candidate depth each side contributes, how chunk scores reach items (best chunk, mean
of the best two, mean of all) and BM25's k1 and b. The queries are split by a seeded shuffle into
a ``dev`` half, where every choice is made, and a ``report`` half, only scored.

The rule that picks the default does not trust one peak: for each normalisation it takes the
weight whose nDCG@10 averaged with its two neighbours (weight +-0.05) is highest on the dev
half, so a weight on a plateau beats a sharp spike that would move with the data.

    .venv/bin/python benchmarks/fusion_study.py                # full corpus (encodes once, ~30 min)
    .venv/bin/python benchmarks/fusion_study.py --docs 2000    # a seeded subset, quicker

Exact dense scores are computed here from the stored chunk vectors (numpy), BM25 with bm25s and the
engine's English analyser, so every variant is scored on the same candidates; query vectors are
cached in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from _common import DATA, RESULTS, debian_store, print_table, save, split

from kinsight.engine import load_encoder, load_qrels, load_queries
from kinsight.engine.analysers import analyser_for, load_bm25s
from kinsight.engine.evaluation import Query

MAX_DEPTH = 200
DEPTHS = (20, 50, 100, 200)
WEIGHTS = tuple(round(w, 2) for w in np.arange(0.0, 1.0001, 0.05))
NORMS = ("minmax", "zscore", "rank")
AGGREGATES = ("max", "top2", "mean")
BM25_PARAMS = ((0.9, 0.75), (1.2, 0.75), (1.5, 0.75), (2.0, 0.75), (1.2, 0.5), (1.5, 0.5),
               (1.5, 0.9))
ENGINE_BM25 = (1.5, 0.75)  # bm25s' defaults, what the engine's LexicalIndex uses
RRF_K = 60


@dataclass
class Candidates:
    """One side's top ``MAX_DEPTH`` items per query, best first: item numbers and scores
    ``(n_queries, MAX_DEPTH)``; -1 / nan where fewer items scored."""

    items: np.ndarray
    scores: np.ndarray


def top(scores: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    part = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
    values = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(values, order, axis=1)


def dense_candidates(chunks: np.ndarray, owners: np.ndarray, n_items: int,
                     vectors: np.ndarray) -> dict[str, Candidates]:
    """Exact cosine of every chunk, aggregated per item three ways; ``owners`` is sorted."""
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    counts = np.diff(np.r_[starts, len(owners)])
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {a: [] for a in AGGREGATES}
    for start in range(0, len(vectors), 256):
        scores = vectors[start:start + 256] @ chunks.T
        best = np.maximum.reduceat(scores, starts, axis=1)
        second = np.where(scores == best[:, owners], -np.inf, scores)
        second = np.maximum.reduceat(second, starts, axis=1)
        per_item = {"max": best,
                    "top2": np.where(np.isfinite(second), (best + second) / 2, best),
                    "mean": np.add.reduceat(scores, starts, axis=1) / counts}
        for name, values in per_item.items():
            out[name].append(top(values, min(MAX_DEPTH, n_items)))
    return {name: Candidates(np.vstack([i for i, _ in parts]), np.vstack([s for _, s in parts]))
            for name, parts in out.items()}


def bm25_candidates(texts: Sequence[str], queries: Sequence[str], k1: float, b: float
                    ) -> Candidates:
    analyser = analyser_for("en")
    bm25 = load_bm25s().BM25(k1=k1, b=b)
    bm25.index(analyser.corpus(list(texts)), show_progress=False)
    depth = min(MAX_DEPTH, len(texts))
    items, scores = bm25.retrieve(analyser.tokens(list(queries)), k=depth,
                                  show_progress=False, n_threads=0)  # in this thread
    items = np.where(scores > 0, items, -1)
    return Candidates(items.astype(np.int64), np.where(scores > 0, scores, np.nan))


def normalised(scores: np.ndarray, norm: str) -> np.ndarray:
    """Each row on a common scale, nan (no candidate) -> 0 contribution; the lowest candidate
    of min-max and z-score gets 0 as well, like an item the side did not return."""
    if norm == "rank":
        ranks = np.arange(1, scores.shape[1] + 1, dtype=np.float64)
        out = np.broadcast_to(1.0 / (RRF_K + ranks), scores.shape).copy()
    else:
        low = np.nanmin(scores, axis=1, keepdims=True)
        if norm == "minmax":
            spread = np.nanmax(scores, axis=1, keepdims=True) - low
        else:
            spread = np.nanstd(scores, axis=1, keepdims=True)
        out = (scores - low) / np.where(spread > 0, spread, 1.0)
    return np.where(np.isnan(scores), 0.0, out)


class Fuser:
    """Scores fusions of one (dense, BM25) candidate pair on one set of queries, at one depth:
    the union of both sides' candidates, each item once, and the gain of each."""

    def __init__(self, dense: Candidates, bm25: Candidates, depth: int,
                 gains: list[dict[int, float]]) -> None:
        self.dense = Candidates(dense.items[:, :depth], dense.scores[:, :depth])
        self.bm25 = Candidates(bm25.items[:, :depth], bm25.scores[:, :depth])
        d = self.dense.items.shape[1]
        # Where each BM25 candidate sits in its query's dense row (-1: not there), in blocks.
        self.match = np.full(self.bm25.items.shape, -1)
        for start in range(0, len(gains), 256):
            a, b = self.dense.items[start:start + 256], self.bm25.items[start:start + 256]
            same = (b[:, :, None] == a[:, None, :]) & (b[:, :, None] >= 0)
            self.match[start:start + 256] = np.where(same.any(axis=2), same.argmax(axis=2), -1)
        union = np.hstack([self.dense.items, self.bm25.items])
        width = max(len(g) for g in gains)
        relevant = np.full((len(gains), width), -2)
        grades = np.zeros((len(gains), width))
        for q, g in enumerate(gains):
            relevant[q, :len(g)], grades[q, :len(g)] = list(g), list(g.values())
        self.gain = ((union[:, :, None] == relevant[:, None, :]) * grades[:, None, :]).sum(axis=2)
        self.gain[:, d:][self.match >= 0] = 0.0  # counted once, in its dense column
        self.ideal = np.array([sum(sorted(g.values(), reverse=True)[:10]
                                   / np.log2(np.arange(2, 2 + min(10, len(g)))))
                               for g in gains])

    def ndcg(self, norm: str, weight: float) -> float:
        """Mean nDCG@10 of ``weight`` * dense + (1 - weight) * BM25 after ``norm``."""
        dense = weight * normalised(self.dense.scores, norm)
        bm25 = (1 - weight) * normalised(self.bm25.scores, norm)
        rows, cols = np.nonzero(self.match >= 0)
        dense[rows, self.match[rows, cols]] += bm25[rows, cols]
        bm25[rows, cols] = -np.inf
        dense[self.dense.items < 0] = -np.inf
        bm25[self.bm25.items < 0] = -np.inf
        return ndcg_of(np.hstack([dense, bm25]), self.gain, self.ideal)


def ndcg_of(fused: np.ndarray, gain: np.ndarray, ideal: np.ndarray) -> float:
    k = min(10, fused.shape[1])
    best = top(fused, k)[0]
    got = np.take_along_axis(gain, best, axis=1)
    got[~np.isfinite(np.take_along_axis(fused, best, axis=1))] = 0.0
    dcg = (got / np.log2(np.arange(2, 2 + k))).sum(axis=1)
    return float(np.mean(dcg / np.where(ideal > 0, ideal, 1.0)))


def plateau(scores: dict[float, float]) -> float:
    """The weight whose score averaged with its neighbours' is highest."""
    weights = sorted(scores)
    smoothed = {w: np.mean([scores[v] for v in weights[max(0, i - 1):i + 2]])
                for i, w in enumerate(weights)}
    return max(weights, key=lambda w: smoothed[w])


def query_vectors(spec: str, queries: Sequence[Query], tag: str) -> np.ndarray:
    path = RESULTS / f"fusion-study-queries-{tag}.npy"
    if path.exists():
        cached = np.load(path)
        if len(cached) == len(queries):
            return cached
    vectors = load_encoder(spec).encode([q.text for q in queries], role="query")
    np.save(path, vectors)
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=None, help="random subset of N documents")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dev/report split")
    parser.add_argument("--captions", action="store_true",
                        help="only the check on the emoji captions (see captions_check)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # A query no BM25 document matches has an all-nan row: it contributes nothing, as meant.
    warnings.filterwarnings("ignore", "All-NaN slice|Degrees of freedom", RuntimeWarning)
    if args.captions:
        captions_check()
        return

    with debian_store(args.docs) as store:
        collection = store.collection("debian")
        space = collection.space("text")
        ids, texts = zip(*collection.tables.texts(space.source_fields), strict=True)
        number = {item_id: n for n, item_id in enumerate(ids)}
        blocks = list(collection.tables.vector_blocks(space.name))
    owners = np.concatenate([[number[o] for o in block[2]] for block in blocks])
    order = np.argsort(owners, kind="stable")
    chunks = np.vstack([block[1] for block in blocks])[order]
    owners = owners[order]

    qrels = load_qrels(DATA / "debian" / "qrels.tsv")
    queries = [q for q in load_queries(DATA / "debian" / "queries.jsonl")
               if any(d in number for d, r in qrels.get(q.qid, {}).items() if r > 0)]
    vectors = query_vectors(space.encoder.spec, queries, f"{args.docs or 'full'}")
    position = {q.qid: i for i, q in enumerate(queries)}
    halves = split(queries, args.seed)
    print(f"{len(ids)} docs, {len(chunks)} chunks; queries: "
          + ", ".join(f"{h} {len(qs)}" for h, qs in halves.items()))

    results: dict[str, Any] = {}
    for half, qs in halves.items():
        gains = [{number[d]: float(r) for d, r in qrels[q.qid].items() if r > 0 and d in number}
                 for q in qs]
        dense = dense_candidates(chunks, owners, len(ids),
                                 vectors[[position[q.qid] for q in qs]])
        results[half] = score_half(dense, texts, [q.text for q in qs], gains)
        print(f"{half}: {len(results[half])} fusions scored")
    save(f"fusion-study-{args.docs or 'full'}", {"docs": len(ids), "seed": args.seed,
                          "queries": {h: len(qs) for h, qs in halves.items()},
                          "ndcg@10": results, "command": "benchmarks/fusion_study.py"
                          + (f" --docs {args.docs}" if args.docs else "")})
    report(results)


def score_half(dense: dict[str, Candidates], texts: Sequence[str], queries: Sequence[str],
               gains: list[dict[int, float]]) -> dict[str, float]:
    """nDCG@10 of each fusion on one half, keyed ``k1= b=|chunks|depth|norm|weight``. Two
    slices of the grid, not all of it: chunks x depth at the engine's BM25 parameters, then the
    BM25 parameters with the best chunk at depth 100."""
    slices = [(ENGINE_BM25, a, d) for a in AGGREGATES for d in DEPTHS]
    slices += [(p, "max", 100) for p in BM25_PARAMS if p != ENGINE_BM25]
    scored: dict[str, float] = {}
    for params in dict.fromkeys(p for p, _, _ in slices):
        lexical = bm25_candidates(texts, queries, *params)
        for _, aggregate, depth in [s for s in slices if s[0] == params]:
            fuser = Fuser(dense[aggregate], lexical, depth, gains)
            for norm in NORMS:
                for weight in WEIGHTS:
                    key = f"k1={params[0]} b={params[1]}|{aggregate}|{depth}|{norm}|{weight}"
                    scored[key] = fuser.ndcg(norm, weight)
    return scored


def captions_check() -> None:
    """The weight curves on another kind of text: the emoji's CLDR keywords (other than the name)
    as documents, each emoji's Unicode name as its query ("angry face" -> "anger angry face
    mad"): a few words each, where BM25's scores spread quite unlike on paragraphs. Nothing is
    chosen here; it shows whether the plateau found on Debian holds."""
    import json

    rows = [json.loads(line) for line in
            (DATA / "images" / "emoji" / "captions.jsonl").read_text().splitlines()]
    docs = [(r["caption"], " ".join(k for k in r["keywords"] if k != r["caption"])) for r in rows]
    docs = [(caption, text) for caption, text in docs if text]
    encoder = load_encoder("sentence-transformers:all-MiniLM-L6-v2")
    vectors = encoder.encode([t for _, t in docs])
    queries = encoder.encode([c for c, _ in docs], role="query")
    n = len(docs)
    dense = dense_candidates(vectors, np.arange(n), n, queries)["max"]
    lexical = bm25_candidates([t for _, t in docs], [c for c, _ in docs], *ENGINE_BM25)
    fuser = Fuser(dense, lexical, 100, [{i: 1.0} for i in range(n)])
    curve = [(w, *(fuser.ndcg(norm, w) for norm in NORMS)) for w in WEIGHTS]
    print_table(f"Emoji captions: {n} keyword documents, {n} name queries; nDCG@10 by dense "
                "weight, depth 100", ["weight", *NORMS], curve)


def report(results: dict[str, dict[str, float]]) -> None:
    choose, held_out = results["dev"], results["report"]

    def best_weight(prefix: str) -> float:
        return plateau({float(k.rsplit("|", 1)[1]): v for k, v in choose.items()
                        if k.startswith(prefix + "|")})

    engine = f"k1={ENGINE_BM25[0]} b={ENGINE_BM25[1]}"
    rows = []
    for aggregate in AGGREGATES:
        for depth in DEPTHS:
            for norm in NORMS:
                prefix = f"{engine}|{aggregate}|{depth}|{norm}"
                w = best_weight(prefix)
                rows.append((aggregate, depth, norm, w, choose[f"{prefix}|{w}"],
                             held_out[f"{prefix}|{w}"], held_out[f"{prefix}|0.5"]))
    print_table(f"BM25 {engine}: weight chosen on the dev half (plateau rule)",
                ["chunks", "depth", "norm", "weight", "dev", "report", "report w=0.5"], rows)
    params = []
    for k1, b in BM25_PARAMS:
        prefix = f"k1={k1} b={b}|max|100"
        params.append((k1, b, choose[f"{prefix}|minmax|0.0"], held_out[f"{prefix}|minmax|0.0"],
                       max(choose[f"{prefix}|{n}|{best_weight(f'{prefix}|{n}')}"]
                           for n in NORMS)))
    print_table("BM25 parameters: BM25 alone and the best fusion at depth 100, best chunk",
                ["k1", "b", "bm25 dev", "bm25 report", "best fusion dev"], params)
    for norm in NORMS:
        prefix = f"{engine}|max|100|{norm}"
        curve = [(w, choose[f"{prefix}|{w}"], held_out[f"{prefix}|{w}"]) for w in WEIGHTS]
        print_table(f"{norm}, depth 100, best chunk: nDCG@10 by dense weight",
                    ["weight", "dev", "report"], curve)


if __name__ == "__main__":
    main()
