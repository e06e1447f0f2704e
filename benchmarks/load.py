"""Hybrid search under load over HTTP while a second client ingests, beside raw FAISS + bm25s.

``kinsight serve``-equivalent (uvicorn, one worker) over a copy of the Debian store (a seeded
subset, ``--docs``; the whole 33k corpus takes ~25 min to encode on 2 cores), MiniLM queries.
For each level of concurrency (httpx async clients, each sending its next query as soon as the
last one answered) a fixed number of hybrid searches runs while one more client upserts batches
of other Debian packages into the same collection, so the server encodes documents, commits and
catches its indexes up under the searches. Per level: p50 / p99 latency, errors, searches/s,
and the documents the ingesting client got acknowledged per second.

Beside it, in this process on the same queries, one caller at a time: the engine's own hybrid
search (``Collection.search``: what HTTP adds is the difference), and what one writes from the
libraries (``quality.RawBaseline``: MiniLM query encoding, exact FAISS, bm25s with a stemmer,
RRF). txtai is not run: it is not installed here, and its API would bring its own server stack;
the comparison with it is left to a machine where it can be installed.

    .venv/bin/python benchmarks/load.py --docs 2000 --levels 1 4 16 64
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _common import DATA, corpus_records, debian_store, git_state, print_table, save
from quality import RawBaseline
from search_speed import free_port, start_server, wait_ready

from kinsight.engine import SearchOptions, Store

COLLECTION = "debian"
K = 10
INGEST_BATCH = 16


def queries_of(ids: set[str], count: int, seed: int) -> list[str]:
    """``count`` Debian queries (package short descriptions) whose package is in ``ids``."""
    relevant: dict[str, str] = {}
    with (DATA / "debian" / "qrels.tsv").open() as qrels:
        next(qrels)
        for line in qrels:
            qid, doc, _ = line.rstrip("\n").split("\t")
            if doc in ids:
                relevant[qid] = doc
    texts = []
    with (DATA / "debian" / "queries.jsonl").open() as lines:
        for line in lines:
            query = json.loads(line)
            if query["qid"] in relevant:
                texts.append(query["text"])
    order = np.random.default_rng(seed).permutation(len(texts))[:count]
    return [texts[i] for i in order]


def latency_row(name: str, clients: int | str, seconds: Sequence[float], errors: int,
                wall: float, ingested: float | str = "-") -> dict[str, Any]:
    ms = np.array(seconds) * 1000 if seconds else np.array([np.nan])
    return {"system": name, "clients": clients, "searches": len(seconds), "errors": errors,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "searches_per_s": len(seconds) / wall, "ingested_docs_per_s": ingested}


async def search_level(url: str, bodies: list[bytes], clients: int, total: int
                       ) -> tuple[list[float], Counter[str], float]:
    """``total`` hybrid searches from ``clients`` concurrent loops: latencies of the answers
    with ``K`` hits, the other answers (errors) by what went wrong, the wall time."""
    counter = itertools.count()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120,
                                 trust_env=False) as client:
        async def worker() -> None:
            while (i := next(counter)) < total:
                start = time.perf_counter()
                try:
                    response = await client.post(
                        f"/collections/{COLLECTION}/search", content=bodies[i % len(bodies)],
                        headers={"content-type": "application/json"})
                    problem = None if response.status_code == 200 and len(
                        response.json()["hits"]) == K else \
                        f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as e:
                    problem = f"{type(e).__name__}: {e}"
                if problem is None:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[problem] += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, errors, time.perf_counter() - start


class Ingester(threading.Thread):
    """Upserts batches of ``items`` one after another until stopped; counts what was
    acknowledged and what failed."""

    def __init__(self, url: str, items: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.url, self.items = url, items
        self.stop = threading.Event()
        self.written = 0
        self.errors: Counter[str] = Counter()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120, trust_env=False) as client:
            for start in itertools.cycle(range(0, len(self.items), INGEST_BATCH)):
                if self.stop.is_set():
                    return
                batch = self.items[start:start + INGEST_BATCH]
                try:
                    response = client.post(f"/collections/{COLLECTION}/items",
                                           json={"items": batch, "text_fields": ["text"]})
                    if response.status_code == 200:
                        self.written += response.json()["written"]
                    else:
                        self.errors[f"upsert HTTP {response.status_code}: "
                                    f"{response.text[:200]}"] += 1
                except httpx.HTTPError as e:
                    self.errors[f"upsert {type(e).__name__}: {e}"] += 1


def http_rows(store: Path, queries: list[str], incoming: list[dict[str, Any]],
              levels: Sequence[int], per_client: int, cap: int) -> list[dict[str, Any]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bodies = [json.dumps({"text": q, "k": K, "mode": "hybrid", "fields": []}).encode()
              for q in queries]
    rows = []
    with tempfile.TemporaryFile() as log_file:
        server = start_server(store, port, log_file)
        try:
            wait_ready(url, server, timeout=300)
            asyncio.run(search_level(url, bodies, 1, 10))  # warm-up: model, indexes
            for clients in levels:
                total = min(cap, per_client * clients)
                ingester = Ingester(url, incoming)
                ingester.start()
                before = time.perf_counter()
                latencies, errors, wall = asyncio.run(search_level(url, bodies, clients, total))
                ingester.stop.set()
                ingester.join(300)
                ingested = ingester.written / (time.perf_counter() - before)
                problems = errors + ingester.errors
                rows.append(latency_row("kinsight HTTP", clients, latencies,
                                        sum(problems.values()), wall, round(ingested, 1)))
                rows[-1]["error_kinds"] = dict(problems)
                for problem, count in problems.items():
                    print(f"{clients} clients: {count} x {problem}", file=sys.stderr)
                print(f"{clients} clients: done", file=sys.stderr, flush=True)
        except Exception:
            log_file.seek(0)
            print(log_file.read().decode(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            server.terminate()
            server.wait(timeout=60)
    return rows


def in_process_rows(store_dir: Path, queries: list[str]) -> list[dict[str, Any]]:
    rows = []
    with Store(store_dir, read_only=True) as store:
        collection = store.collection(COLLECTION)
        options = SearchOptions(k=K, mode="hybrid", return_fields=())
        baseline = RawBaseline(collection)
        for name, run in (("kinsight in-process", lambda q: collection.search(q, options)),
                          ("FAISS + bm25s (RRF)", lambda q: baseline.rrf([q]))):
            run(queries[0])  # warm-up
            seconds = []
            start = time.perf_counter()
            for q in queries:
                began = time.perf_counter()
                run(q)
                seconds.append(time.perf_counter() - began)
            rows.append(latency_row(name, "1 (in process)", seconds, 0,
                                    time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000, help="Debian packages in the store.")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--per-client", type=int, default=25,
                        help="Searches per client at each level (capped by --cap).")
    parser.add_argument("--cap", type=int, default=400, help="Most searches at one level.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with debian_store(args.docs, args.seed) as cached:
        cached_dir = cached.path
        ids = set(cached.collection(COLLECTION).ids_matching(None))
    if cached_dir is None:
        raise SystemExit("the Debian store has no folder")
    queries = queries_of(ids, args.queries, args.seed)
    incoming = [{"id": r.id, "fields": {"text": r.fields["text"], "section": r.fields["section"]}}
                for r in corpus_records(None)[:20_000] if r.id not in ids][:2000]
    with tempfile.TemporaryDirectory() as scratch:
        served = Path(scratch) / "store"
        shutil.copytree(cached_dir, served)  # the server writes; the cached store stays as it is
        rows = in_process_rows(served, queries)
        rows += http_rows(served, queries, incoming, args.levels, args.per_client, args.cap)
    header = ["system", "clients", "searches", "errors", "p50_ms", "p99_ms", "searches_per_s",
              "ingested_docs_per_s"]
    print_table(f"hybrid search, k={K}, {args.docs} Debian docs, {len(queries)} queries; HTTP "
                f"levels while a client upserts batches of {INGEST_BATCH}", header,
                [[row[h] for h in header] for row in rows])
    one = next((r for r in rows if r["clients"] == 1), None)
    sixteen = next((r for r in rows if r["clients"] == 16), None)
    raw = next(r for r in rows if r["system"].startswith("FAISS"))
    ratios = {}
    if one and sixteen:
        ratios["p99 at 16 clients / p50 at 1 client (target <= 4)"] = \
            sixteen["p99_ms"] / one["p50_ms"]
    best = max((r for r in rows if r["system"] == "kinsight HTTP"),
               key=lambda r: r["searches_per_s"])
    ratios["best HTTP searches/s / raw FAISS + bm25s one caller"] = \
        best["searches_per_s"] / raw["searches_per_s"]
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")
    print(f"searches/s at 1 client, HTTP / in process: "
          f"{(one or best)['searches_per_s'] / rows[0]['searches_per_s']:.2f}")
    save(f"load-{args.docs}", {"args": vars(args), "rows": rows, "ratios": ratios,
                               "git": git_state()})


if __name__ == "__main__":
    main()
