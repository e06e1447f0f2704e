"""BM25's k1 and b, keyword search alone, on every Debian query set: English (the full corpus) and
the ru, de, ja translations, each language analysed as the engine analyses it (its detected
language's analyser), on the dev and report halves of the same seeded split as the other
benchmarks (at most ``--queries`` of each half). Nothing is encoded, so it runs in minutes;
what a change of k1 does to the fused modes is in benchmarks/fusion_study.py (English) and needs
the encoded stores.

    .venv/bin/python benchmarks/bm25_k1.py
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import pyarrow.parquet as pq
from _common import DATA, print_table, save, split

from kinsight.engine import lexical
from kinsight.engine.analysers import Analyser, detect_language
from kinsight.engine.evaluation import evaluate_run, load_qrels, load_queries
from kinsight.engine.lexical import LexicalIndex

PARAMETERS = ((0.9, 0.75), (1.2, 0.75), (1.5, 0.75), (1.2, 0.5), (0.9, 0.5))
DEPTH = 100


def measure(language: str, seed: int, most: int) -> list[dict[str, Any]]:
    folder = DATA / "debian" if language == "en" else DATA / "debian" / "i18n" / language
    table = pq.read_table(folder / "corpus.parquet", columns=["id", "text"])
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
    analyser = Analyser(detect_language(texts) if language != "en" else "en")
    qrels = load_qrels(folder / "qrels.tsv")
    halves = split(load_queries(folder / "queries.jsonl"), seed)
    rows = []
    for k1, b in PARAMETERS:
        lexical.BM25_PARAMETERS = {"k1": k1, "b": b}  # what LexicalIndex.build reads
        index = LexicalIndex.build(ids, texts, 0, analyser)
        for half, every in halves.items():
            queries = every[:most]  # the halves are shuffled: their first queries are a sample
            started = time.perf_counter()
            run = {q.qid: [i for i, _ in index.search(q.text, DEPTH)] for q in queries}
            qps = len(queries) / (time.perf_counter() - started)
            asked = {q.qid for q in queries}
            metrics = evaluate_run(run, {q: r for q, r in qrels.items() if q in asked})
            rows.append({"language": language, "analyser": analyser.name, "k1": k1, "b": b,
                         "half": half, "qps": qps, **metrics})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--languages", default="en,ru,de,ja")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=3000, help="most queries per half")
    args = parser.parse_args()
    rows = [r for language in args.languages.split(",") for r in measure(language, args.seed, args.queries)]
    default = {(r["language"], r["half"]): r["ndcg@10"] for r in rows
               if (r["k1"], r["b"]) == (1.5, 0.75)}
    print_table("BM25 alone, nDCG@10 by k1 and b (1.5 / 0.75: the engine's today)",
                ["language", "k1", "b", "dev", "report", "dev vs 1.5/0.75", "q/s"],
                [(r["language"], r["k1"], r["b"], r["ndcg@10"], s["ndcg@10"],
                  f"{r['ndcg@10'] - default[(r['language'], 'dev')]:+.3f}", f"{r['qps']:.0f}")
                 for r, s in zip(rows[::2], rows[1::2], strict=True)])
    save("bm25_k1", {"seed": args.seed, "rows": rows, "command": "benchmarks/bm25_k1.py"})


if __name__ == "__main__":
    main()
