"""Search quality on the Debian corpus: every search mode and fusion kinsight offers, side by side
with a plain RRF of bm25s and FAISS computed in the same run, with queries/s next to each figure.

Indexes only the long description ``text`` of every package (never the title, which is what the
queries are), with the bundled all-MiniLM-L6-v2. The queries are split in two halves by the same
seeded shuffle as benchmarks/fusion_study.py; quality is reported on the ``report`` half only,
since the default fusion was chosen on the ``dev`` half, and ``kinsight tune`` (with its default
options) is fitted on the ``dev`` half: the ``tuned`` rows search with what it fitted there.
Queries/s are of the search as a user calls it, query encoding included: ``batched`` is one
call for a block of queries, ``single`` one call per query, on a sample of the report half.

    .venv/bin/python benchmarks/quality.py                 # full corpus (~30 min the first time)
    .venv/bin/python benchmarks/quality.py --docs 5000     # a seeded random subset, quicker

The store is kept in benchmarks/results/ so a re-run skips encoding (see _common.debian_store).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace

import numpy as np
from _common import (
    DATA,
    corpus_records,
    debian_store,
    debian_store_path,
    item_vectors,
    print_table,
    save,
    split,
)

from kinsight.engine import (
    FUSIONS,
    Collection,
    SearchOptions,
    Store,
    TuneReport,
    load_encoder,
    load_qrels,
    load_queries,
)
from kinsight.engine.evaluation import Query, evaluate_run
from kinsight.engine.search import _fuse

DEPTH = 100  # each side's candidates, and the second recall's cut-off
RRF_K = 60

Ranker = Callable[[list[str]], list[list[str]]]


class RawBaseline:
    """bm25s with PyStemmer's English stemmer and stop words, and an exact FAISS index of one
    vector per item (the mean of its chunks), fused by RRF: what one writes from the libraries."""

    def __init__(self, collection: Collection) -> None:
        import bm25s
        import faiss
        import Stemmer

        space = collection.space("text")
        self.ids, vectors = item_vectors(collection)
        texts = dict(collection.tables.texts(space.source_fields))
        self.stemmer = Stemmer.Stemmer("english")
        self.bm25 = bm25s.BM25()
        self.bm25.index(bm25s.tokenize([texts[i] for i in self.ids], stopwords="en",
                                       stemmer=self.stemmer, show_progress=False),
                        show_progress=False)
        self.faiss = faiss.IndexFlatIP(vectors.shape[1])
        self.faiss.add(vectors)
        self.encoder = load_encoder(space.encoder.spec)

    def bm25_rankings(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=self.stemmer, show_progress=False)
        # n_threads=0 scores in this thread, as the engine does (1 starts a thread pool per call,
        # a few ms the baseline should not pay)
        docs, scores = self.bm25.retrieve(tokens, k=DEPTH, show_progress=False, n_threads=0)
        return [[self.ids[d] for d, s in zip(row, values, strict=True) if s > 0]
                for row, values in zip(docs, scores, strict=True)]

    def dense_rankings(self, vectors: np.ndarray) -> list[list[str]]:
        _, rows = self.faiss.search(vectors, DEPTH)
        return [[self.ids[r] for r in row if r >= 0] for row in rows]

    def rrf(self, texts: list[str], vectors: np.ndarray | None = None) -> list[list[str]]:
        if vectors is None:
            vectors = self.encoder.encode(texts, role="query")
        fused = []
        for dense, bm25 in zip(self.dense_rankings(vectors), self.bm25_rankings(texts),
                               strict=True):
            scores: dict[str, float] = {}
            for ranking in (dense, bm25):
                for rank, item_id in enumerate(ranking, start=1):
                    scores[item_id] = scores.get(item_id, 0.0) + 1.0 / (RRF_K + rank)
            fused.append(sorted(scores, key=lambda i: -scores[i])[:DEPTH])
        return fused


def engine_ranker(collection: Collection, options: SearchOptions) -> Ranker:
    return lambda texts: [[h.id for h in hits] for hits in collection.search_many(texts, options)]


def queries_per_second(rank: Ranker, texts: Sequence[str], block: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(texts), block):
        rank(list(texts[i:i + block]))
    return len(texts) / (time.perf_counter() - start)


def engine_rankings(collection: Collection, queries: Sequence[Query], vectors: np.ndarray
                    ) -> dict[str, list[list[str]]]:
    """Each mode and fusion's rankings of ``queries`` from one dense and one BM25 search per
    query, fused by the same code hybrid search runs (``search._fuse``, both sides at DEPTH)."""
    options = SearchOptions(k=DEPTH, return_fields=())
    dense = collection.search_many(list(vectors), SearchOptions(k=DEPTH, mode="dense",
                                                                return_fields=()))
    bm25 = collection.search_many([q.text for q in queries], SearchOptions(
        k=DEPTH, mode="bm25", return_fields=()))
    out = {"bm25": [[h.id for h in hits] for hits in bm25],
           "dense": [[h.id for h in hits] for hits in dense]}
    for name, fusion in FUSIONS.items():
        out[f"hybrid:{name}"] = [
            [i for i, _, _ in _fuse([(h.id, h.score, None) for h in d],
                                    [(h.id, h.score, None) for h in b], fusion)][:options.k]
            for d, b in zip(dense, bm25, strict=True)]
    return out


def tune_on_dev(docs: int | None, queries: Sequence[Query], qrels: dict[str, dict[str, int]]
                ) -> TuneReport:
    """``tune`` with its defaults on the dev half, saved in the kept store (a side table: the
    items and indexes are left alone)."""
    with debian_store(docs):  # made if missing
        pass
    with Store(debian_store_path(docs)) as store:
        return store.collection("debian").tune(queries, qrels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=None, help="random subset of N documents")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dev/report split")
    parser.add_argument("--speed-queries", type=int, default=256,
                        help="report-half queries timed per mode, batched and one by one")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    indexed = {r.id for r in corpus_records(args.docs)}
    qrels = load_qrels(DATA / "debian" / "qrels.tsv")
    halves = split([q for q in load_queries(DATA / "debian" / "queries.jsonl")
                    if any(d in indexed for d in qrels.get(q.qid, {}))], args.seed)
    tuning = tune_on_dev(args.docs, halves["dev"], qrels)
    with debian_store(args.docs) as store:
        collection = store.collection("debian")
        queries = halves["report"]
        judged = {q.qid: qrels[q.qid] for q in queries}
        baseline = RawBaseline(collection)
        vectors = baseline.encoder.encode([q.text for q in queries], role="query")
        runs = engine_rankings(collection, queries, vectors)
        tuned = {"tuned": SearchOptions(k=DEPTH, tuned=True, return_fields=()),
                 "dense, tuned": SearchOptions(k=DEPTH, mode="dense", tuned=True,
                                               return_fields=())}
        for name, options in tuned.items():
            runs[name] = engine_ranker(collection, options)([q.text for q in queries])
        runs["bm25s + FAISS, RRF"] = baseline.rrf([q.text for q in queries], vectors)
        rankers: dict[str, Ranker] = {
            **{mode: engine_ranker(collection, SearchOptions(mode=mode, return_fields=()))
               for mode in ("bm25", "dense")},
            **{f"hybrid:{name}": engine_ranker(collection, SearchOptions(
                mode="hybrid", fusion=fusion, return_fields=())) for name, fusion in FUSIONS.items()},
            **{name: engine_ranker(collection, replace(options, k=10))
               for name, options in tuned.items()},
            "bm25s + FAISS, RRF": baseline.rrf}
        sample = [q.text for q in queries[:args.speed_queries]]
        speed = {name: {"batched": queries_per_second(rank, sample, len(sample)),
                        "single": queries_per_second(rank, sample, 1)}
                 for name, rank in rankers.items()}
    results = {name: {**evaluate_run(dict(zip([q.qid for q in queries], run, strict=True)),
                                     judged, ks=(10, DEPTH)), **speed[name]}
               for name, run in runs.items()}
    rows = [(name, r["ndcg@10"], r["recall@10"], r["recall@100"], r["mrr@10"],
             f"{r['batched']:.0f}", f"{r['single']:.0f}") for name, r in results.items()]
    print_table(f"Debian: {len(indexed)} docs, {len(queries)} held-out queries (report half, "
                f"seed {args.seed}; index: text only); queries/s on {len(sample)} of them",
                ["search", "nDCG@10", "Recall@10", "Recall@100", "MRR@10", "q/s batched",
                 "q/s single"], rows)
    fusion = tuning.fusion
    print(f"tuned on the dev half ({tuning.queries}): fusion {fusion.method} "
          f"{fusion.normalise} {fusion.dense_weight:.2f}, adapter "
          f"{'epoch ' + str(tuning.best_epoch) if tuning.adapter else 'none'}; {tuning.seconds:.0f} s")
    save(f"quality-{args.docs or 'full'}", {
        "docs": len(indexed), "queries": len(queries), "half": "report", "seed": args.seed,
        "results": results,
        "tuning": {"fusion": asdict(tuning.fusion), "adapter": tuning.adapter,
                   "queries": tuning.queries, "best_epoch": tuning.best_epoch,
                   "held_out_of_dev": tuning.held_out, "seconds": tuning.seconds},
        "command": "benchmarks/quality.py" + (f" --docs {args.docs}" if args.docs else ""),
    })


if __name__ == "__main__":
    main()
