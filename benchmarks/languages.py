"""Keyword search in other languages: BM25 with the English analyser vs the language's own, and
the default search mode, on Debian's translated descriptions (ru, de, ja).

Indexes only the translated long description ``text`` of each package with the bundled
all-MiniLM-L6-v2 (English-only), detects each corpus's language as ``--language auto`` would, and
splits the queries in two halves with a seeded shuffle: ``dev`` (where the fusion of an encoder
that does not know the language was chosen) and ``report`` (the figures to quote).

    .venv/bin/python benchmarks/languages.py                  # ru, de, ja (first run encodes ~45 min)
    .venv/bin/python benchmarks/languages.py --languages ru   # one language

The stores are kept in benchmarks/results/ so a re-run skips encoding.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from _common import DATA, RESULTS, print_table, save, split

from kinsight.engine import Collection, Store, load_encoder
from kinsight.engine.analysers import Analyser, detect_language
from kinsight.engine.evaluation import Query, evaluate_run, load_qrels, load_queries
from kinsight.engine.lexical import LexicalIndex
from kinsight.engine.search import Fusion, SearchOptions, _fuse, search_many
from kinsight.engine.store import DATABASE_FILE

DEPTH = 100
# The fusions the dev half chooses among for a space whose encoder does not know its language.
CANDIDATES: dict[str, Fusion | None] = {
    "bm25 alone": None,
    "rrf": Fusion(method="rrf"),
    **{f"weighted dense={w}": Fusion(method="weighted", normalise="minmax", dense_weight=w)
       for w in (0.1, 0.2, 0.3, 0.5)},
}


@contextmanager
def language_store(language: str) -> Iterator[Collection]:
    """The ``language`` corpus in a store of its own (encoded on the first run), its space's
    language set to the one detected from its texts."""
    import pyarrow.parquet as pq

    from kinsight.indexers import IngestOptions, ingest_records
    from kinsight.indexers.records import Record

    folder = DATA / "debian" / "i18n" / language
    path = RESULTS / f"i18n-{language}-store"
    table = pq.read_table(folder / "corpus.parquet", columns=["id", "text"])
    with Store(path) as store:
        if not (path / DATABASE_FILE).exists() or language not in store.list_collections() \
                or store.collection(language).count() != table.num_rows:
            records = [Record(id=r.pop("id"), fields=r, source="corpus.parquet", line=i + 1)
                       for i, r in enumerate(table.to_pylist())]
            print(ingest_records(store, records, IngestOptions(collection=language)).summary())
        collection = store.collection(language)
        space = collection.space()
        detected = detect_language(table.column("text").to_pylist())
        collection.ensure_space(space.name, space.encoder, language=detected)
        yield collection


def timed_run(queries: Sequence[Query], rank: Callable[[list[str]], list[list[str]]]
              ) -> tuple[dict[str, list[str]], float]:
    start = time.perf_counter()
    run: dict[str, list[str]] = {}
    for i in range(0, len(queries), 256):
        block = list(queries[i:i + 256])
        for query, ids in zip(block, rank([q.text for q in block]), strict=True):
            run[query.qid] = ids
    return run, len(queries) / (time.perf_counter() - start)


def measure(language: str, seed: int) -> list[dict[str, Any]]:
    folder = DATA / "debian" / "i18n" / language
    qrels = load_qrels(folder / "qrels.tsv")
    halves = split(load_queries(folder / "queries.jsonl"), seed)
    rows: list[dict[str, Any]] = []

    def score(half: str, what: str, run: dict[str, list[str]], qps: float) -> None:
        asked = {q.qid for q in halves[half]}
        metrics = evaluate_run(run, {q: r for q, r in qrels.items() if q in asked})
        rows.append({"language": language, "half": half, "what": what, "qps": qps, **metrics})

    with language_store(language) as collection:
        space = collection.space()
        ids_texts = collection.tables.texts(space.source_fields)
        ids, texts = [r[0] for r in ids_texts], [r[1] for r in ids_texts]
        for code in dict.fromkeys(("en", space.language or "en", "multi")):
            index = LexicalIndex.build(ids, texts, 0, Analyser(code))
            for half, queries in halves.items():
                run, qps = timed_run(queries, lambda batch, index=index: [
                    [i for i, _ in index.search(q, DEPTH)] for q in batch])
                score(half, f"bm25 {Analyser(code).name}", run, qps)
        # Every fusion from one dense and one BM25 ranking per query (same code as search).
        encoder = load_encoder(space.encoder.spec)
        for half, queries in halves.items():
            vectors = encoder.encode([q.text for q in queries], role="query")
            dense = search_many(collection, list(vectors), SearchOptions(
                k=DEPTH, mode="dense", return_fields=()))
            bm25 = search_many(collection, [q.text for q in queries], SearchOptions(
                k=DEPTH, mode="bm25", return_fields=()))
            for name, fusion in CANDIDATES.items():
                run = {}
                for q, d, b in zip(queries, dense, bm25, strict=True):
                    ranked = [(h.id, h.score, None) for h in b] if fusion is None else _fuse(
                        [(h.id, h.score, None) for h in d], [(h.id, h.score, None) for h in b],
                        fusion)
                    run[q.qid] = [i for i, _, _ in ranked]
                score(half, f"fusion: {name}", run, 0.0)
            run = {q.qid: [h.id for h in d] for q, d in zip(queries, dense, strict=True)}
            score(half, "dense", run, 0.0)
            # The default mode as a user gets it, queries encoded on the way.
            run, qps = timed_run(queries, lambda batch: [
                [h.id for h in hits] for hits in search_many(
                    collection, batch, SearchOptions(k=DEPTH, return_fields=()))])
            score(half, "default mode (auto)", run, qps)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--languages", nargs="+", default=["ru", "de", "ja"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = [row for language in args.languages for row in measure(language, args.seed)]
    for half in ("dev", "report"):
        print_table(f"{half} half of the queries (seed {args.seed}); index: text only",
                    ["language", "what", "nDCG@10", "Recall@10", "MRR@10", "queries", "q/s"],
                    [(r["language"], r["what"], r["ndcg@10"], r["recall@10"], r["mrr@10"],
                      int(r["queries"]), f"{r['qps']:.0f}" if r["qps"] else "")
                     for r in rows if r["half"] == half])
    save("languages", {"rows": rows, "seed": args.seed,
                       "command": "benchmarks/languages.py --languages " + " ".join(args.languages)})


if __name__ == "__main__":
    main()
