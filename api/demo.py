"""``kinsight demo``: index a real sample corpus with the bundled model and search it.

The sample is 2,000 Debian package descriptions (see ``demo_data/README.md``); only the long
description ``text`` is embedded, so the searches below find packages by what they do.
"""

from __future__ import annotations

import json
import time
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kinsight.engine import ById, Collection, Store, load_qrels, load_queries

from .cli.common import kinsight_command, progress_bar
from .reporting import print_hits

__all__ = ["DEMO_QUERIES", "QUALITY_CACHE", "demo_data", "run_demo"]

QUALITY_CACHE = "demo-quality.json"  # in the store's folder, beside the database

DEMO_QUERIES = [
    "play music files from the command line",
    "library to read and write spreadsheets",
    "detect intrusions on the network",
]


def demo_data() -> Path:
    """The folder holding the demo corpus, queries and relevance judgments."""
    return Path(str(files("kinsight.api") / "demo_data"))


def run_demo(store_path: Path, console: Console, *, limit: int | None = None) -> None:
    from kinsight.indexers.ingest import IngestOptions, ingest_records
    from kinsight.indexers.readers import read_records

    data = demo_data()
    console.rule("[bold]kinsight demo")
    console.print(f"Indexing Debian package descriptions from {data / 'debian_sample.parquet'}\n"
                  f"into the store {store_path} with the bundled all-MiniLM-L6-v2 model "
                  "(re-runs skip what is already indexed).")
    records = read_records(data / "debian_sample.parquet", text_fields=["text"])
    if limit is not None:
        records = (r for i, r in enumerate(records) if i < limit)
    with Store(store_path) as store:
        report = ingest_records(store, records, IngestOptions(collection="debian"))
        console.print(report.summary(), highlight=False)
        collection = store.collection("debian")
        for query in DEMO_QUERIES:
            print_hits(console, collection.search(query, k=5, mode="hybrid"),
                       title=f"hybrid search: {query!r}")
        first = collection.search(DEMO_QUERIES[0], k=1, mode="dense")
        if first:
            print_hits(console, collection.search(ById(first[0].id), k=5),
                       title=f"more like {first[0].id!r}")
        _evaluate(console, collection, data, limit, store_path / QUALITY_CACHE)
    search = kinsight_command("search", "text editor for programmers", "--collection", "debian",
                              "--store", store_path)
    serve = kinsight_command("serve", "--store", store_path)
    console.print(f"\nTry it yourself:\n  {search}\n  {serve}   (search page: "
                  "http://127.0.0.1:8000/)", highlight=False, soft_wrap=True)


def _evaluate(console: Console, collection: Collection, data: Path, limit: int | None,
              cache: Path) -> None:
    """Score the three modes on the sample's own queries (each a package's short description).

    The scores are kept in ``cache`` with what they were measured on (the collection's
    generation, the queries, kinsight's version): a re-run over an unchanged collection prints
    them again instead of spending a minute re-measuring them."""
    queries = load_queries(data / "queries.jsonl")
    qrels = load_qrels(data / "qrels.tsv")
    if limit is not None:
        indexed = set(collection.existing_ids(sorted({d for r in qrels.values() for d in r})))
        queries = [q for q in queries if set(qrels[q.qid]) & indexed]
    if not queries:
        return
    measured_on = {"generation": collection.generation(), "queries": [q.qid for q in queries],
                   "version": version("kinsight")}
    earlier = json.loads(cache.read_text()) if cache.is_file() else {}
    if earlier.get("measured_on") == measured_on:
        results, how = earlier["results"], "measured earlier, on this same collection"
    else:
        start = time.perf_counter()
        with progress_bar("evaluate", unit="queries") as progress:
            results = collection.evaluate_search(queries, qrels, progress=progress)
        how = f"measured in {time.perf_counter() - start:.0f}s"
        cache.write_text(json.dumps({"measured_on": measured_on, "results": results}))
    table = Table("mode", "nDCG@10", "Recall@10", "MRR@10",
                  title=f"quality on {len(queries)} sample queries", title_justify="left",
                  caption=how, caption_justify="left")
    for mode, scores in results.items():
        table.add_row(mode, f"{scores['ndcg@10']:.3f}", f"{scores['recall@10']:.3f}",
                      f"{scores['mrr@10']:.3f}")
    console.print(table)
