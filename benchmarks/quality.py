"""Search quality on the Debian corpus: nDCG@10, Recall@10/100, MRR@10 for BM25, dense, hybrid.

Indexes only the long description ``text`` of every package (never the title, which is what the
queries are), with the bundled all-MiniLM-L6-v2, then runs every query in each mode.

    .venv/bin/python benchmarks/quality.py                 # full corpus, all queries (~20 min)
    .venv/bin/python benchmarks/quality.py --docs 5000     # a seeded random subset, quicker

The store is kept in benchmarks/results/ so a re-run skips encoding (see _common.debian_store).
"""

from __future__ import annotations

import argparse
import logging
import time

from _common import DATA, corpus_records, debian_store, print_table, save

from kinsight.api.cli.common import progress_bar
from kinsight.engine import load_qrels, load_queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=None, help="random subset of N documents")
    parser.add_argument("--queries", type=int, default=None, help="first N queries only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    records = corpus_records(args.docs, args.seed)
    with debian_store(args.docs, args.seed) as store:
        collection = store.collection("debian")
        qrels = load_qrels(DATA / "debian" / "qrels.tsv")
        indexed = set(r.id for r in records)
        queries = [q for q in load_queries(DATA / "debian" / "queries.jsonl")
                   if any(d in indexed for d in qrels.get(q.qid, {}))][: args.queries]
        start = time.perf_counter()
        with progress_bar("evaluate", unit="queries") as progress:
            results = collection.evaluate_search(queries, qrels, modes=("bm25", "dense", "hybrid"),
                                                 progress=progress)
        search_seconds = time.perf_counter() - start
    rows = [(mode, r["ndcg@10"], r["recall@10"], r["recall@100"], r["mrr@10"])
            for mode, r in results.items()]
    print_table(f"Debian: {len(records)} docs, {len(queries)} queries (index: text only)",
                ["mode", "nDCG@10", "Recall@10", "Recall@100", "MRR@10"], rows)
    save(f"quality-{args.docs or 'full'}", {
        "docs": len(records), "queries": len(queries), "results": results,
        "search_seconds_all_modes": search_seconds,
        "command": "benchmarks/quality.py" + (f" --docs {args.docs}" if args.docs else ""),
    })


if __name__ == "__main__":
    main()
