"""Hybrid search under load over HTTP while a second client ingests, beside raw FAISS + bm25s
and beside txtai's API.

``kinsight serve``-equivalent (uvicorn, one worker) over a copy of the Debian store (a seeded
subset, ``--docs``; the whole 33k corpus takes ~25 min to encode on 2 cores), MiniLM queries.
For each level of concurrency (httpx async clients, each sending its next query as soon as the
last one answered) a fixed number of hybrid searches runs while one more client upserts batches
of other Debian packages into the same collection, so the server encodes documents, commits and
catches its indexes up under the searches. Per level: p50 / p99 latency, errors, searches/s,
and the documents the ingesting client got acknowledged per second (the searches start once its
first batch is answered, so the ingest is under way, its encoder warm); kinsight's levels also run
with no ingest first ("searches alone"), which shows what the ingest costs the searches.

Beside it, in this process on the same queries, one caller at a time: the engine's own hybrid
search (``Collection.search``: what HTTP adds is the difference), and what one writes from the
libraries (``quality.RawBaseline``: MiniLM query encoding, exact FAISS, bm25s with a stemmer,
RRF).

Then txtai 9.14's API (``uvicorn txtai.api:app``, one worker, its own process) over the same
texts, with the same MiniLM folder, ``hybrid: true`` (its BM25 + dense fusion), the same queries
and levels and the same ingesting client (``/add`` then ``/upsert``). txtai is no dependency of
kinsight: install it and the packages its API imports that this environment lacks into a folder
of their own, which only the txtai server's ``PYTHONPATH`` names (the rows are skipped, saying
so, when it is missing):

    .venv/bin/python -m pip install --no-deps --target benchmarks/results/txtai txtai==9.14.0 \
        fastapi-mcp==0.4.0 mcp==2.3.0 mcp-types==2.3.0 aiohttp multidict aiohappyeyeballs \
        aiosignal frozenlist propcache yarl pyjwt cryptography cffi pycparser sse-starlette tomli

    .venv/bin/python benchmarks/load.py --docs 2000 --levels 1 4 16 64
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _common import DATA, RESULTS, corpus_records, debian_store, git_state, print_table, save
from quality import RawBaseline
from search_speed import free_port, start_server, wait_ready

from kinsight.engine import SearchOptions, Store

COLLECTION = "debian"
K = 10
INGEST_BATCH = 16
TXTAI_DIR = RESULTS / "txtai"  # txtai and what its API imports, for its server process only
TXTAI_INSTALL = __doc__.split("\n\n")[-2].strip()  # the pip command of the docstring


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


@dataclass(frozen=True)
class Served:
    """A search service under test: how to ask it one hybrid search (None when it answered
    ``K`` hits, else what went wrong) and how to upsert a batch of ``{id, text, section}``."""

    name: str
    search: Callable[[httpx.AsyncClient, str], Awaitable[str | None]]
    upsert: Callable[[httpx.Client, list[dict[str, Any]]], None]


def _problem(response: httpx.Response, hits: Callable[[Any], list[Any]]) -> str | None:
    if response.status_code == 200 and len(hits(response.json())) == K:
        return None
    return f"HTTP {response.status_code}: {response.text[:200]}"


async def _kinsight_search(client: httpx.AsyncClient, query: str) -> str | None:
    body = json.dumps({"text": query, "k": K, "mode": "hybrid", "fields": []})
    response = await client.post(f"/collections/{COLLECTION}/search", content=body,
                                 headers={"content-type": "application/json"})
    return _problem(response, lambda answer: answer["hits"])


def _kinsight_upsert(client: httpx.Client, batch: list[dict[str, Any]]) -> None:
    items = [{"id": d["id"], "fields": {"text": d["text"], "section": d["section"]}}
             for d in batch]
    client.post(f"/collections/{COLLECTION}/items",
                json={"items": items, "text_fields": ["text"]}).raise_for_status()


async def _txtai_search(client: httpx.AsyncClient, query: str) -> str | None:
    response = await client.get("/search", params={"query": query, "limit": K})
    return _problem(response, lambda answer: answer)


def _txtai_upsert(client: httpx.Client, batch: list[dict[str, Any]]) -> None:
    client.post("/add", json=[{"id": d["id"], "text": d["text"]} for d in batch]
                ).raise_for_status()
    client.get("/upsert").raise_for_status()


KINSIGHT = Served("kinsight HTTP", _kinsight_search, _kinsight_upsert)
TXTAI = Served("txtai 9.14 API", _txtai_search, _txtai_upsert)


async def search_level(url: str, served: Served, queries: list[str], clients: int, total: int
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
                    problem = await served.search(client, queries[i % len(queries)])
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
    """Upserts batches of ``docs`` one after another until stopped; counts what was
    acknowledged and what failed."""

    def __init__(self, url: str, served: Served, docs: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.url, self.served, self.docs = url, served, docs
        self.stop = threading.Event()
        self.first = threading.Event()  # the first batch is answered (acknowledged or failed)
        self.written = 0
        self.errors: Counter[str] = Counter()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120, trust_env=False) as client:
            for start in itertools.cycle(range(0, len(self.docs), INGEST_BATCH)):
                if self.stop.is_set():
                    return
                batch = self.docs[start:start + INGEST_BATCH]
                try:
                    self.served.upsert(client, batch)
                    self.written += len(batch)
                except httpx.HTTPStatusError as e:
                    self.errors[f"upsert HTTP {e.response.status_code}: "
                                f"{e.response.text[:200]}"] += 1
                except httpx.HTTPError as e:
                    self.errors[f"upsert {type(e).__name__}: {e}"] += 1
                self.first.set()


def level_rows(url: str, served: Served, queries: list[str], incoming: list[dict[str, Any]],
               levels: Sequence[int], per_client: int, cap: int, *, alone: bool = False
               ) -> list[dict[str, Any]]:
    """One row per level of concurrency, each while an ``Ingester`` upserts ``incoming``; with
    ``alone``, first one row per level with no ingest (``served.name``, "searches alone")."""
    asyncio.run(search_level(url, served, queries, 1, 10))  # warm-up: model, indexes
    rows = []
    for ingesting in ((False, True) if alone else (True,)):
        for clients in levels:
            name = served.name if ingesting else f"{served.name}, searches alone"
            total = min(cap, per_client * clients)
            ingester = Ingester(url, served, incoming)
            if ingesting:  # searched once its first batch is in: an ingest under way, warm
                ingester.start()
                ingester.first.wait(300)
            before = time.perf_counter()
            latencies, errors, wall = asyncio.run(
                search_level(url, served, queries, clients, total))
            ingester.stop.set()
            if ingesting:
                ingester.join(300)
            ingested = ingester.written / (time.perf_counter() - before)
            problems = errors + ingester.errors
            rows.append(latency_row(name, clients, latencies, sum(problems.values()), wall,
                                    round(ingested, 1) if ingesting else "-"))
            rows[-1]["error_kinds"] = dict(problems)
            for problem, count in problems.items():
                print(f"{name}, {clients} clients: {count} x {problem}", file=sys.stderr)
            print(f"{name}, {clients} clients: done", file=sys.stderr, flush=True)
    return rows


def serving(start: Callable[[int, Any], subprocess.Popen[bytes]],
            run: Callable[[str], list[dict[str, Any]]], probe: str) -> list[dict[str, Any]]:
    """``run(url)`` against a server ``start(port, log_file)`` makes, once it answers ``probe``;
    its log is printed when something fails."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log_file:
        server = start(port, log_file)
        try:
            wait_ready(url, server, timeout=300, probe=probe)
            return run(url)
        except Exception:
            log_file.seek(0)
            print(log_file.read().decode(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            server.terminate()
            server.wait(timeout=60)


def start_txtai(config: Path, port: int, log_file: Any) -> subprocess.Popen[bytes]:
    """txtai's API in a uvicorn process of its own, one worker; txtai comes from ``TXTAI_DIR``."""
    env = {**os.environ, "CONFIG": str(config),
           "PYTHONPATH": os.pathsep.join(p for p in (str(TXTAI_DIR),
                                                      os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "uvicorn", "txtai.api:app", "--host", "127.0.0.1", "--port",
           str(port), "--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def txtai_rows(model: Path, docs: list[dict[str, Any]], queries: list[str],
               incoming: list[dict[str, Any]], levels: Sequence[int], per_client: int, cap: int,
               scratch: Path) -> list[dict[str, Any]]:
    """txtai's API over ``docs`` (indexed through ``/add`` and ``/index`` before the levels),
    or no rows, saying how to install it, when it is not installed."""
    if not (TXTAI_DIR / "txtai").is_dir():
        print(f"txtai is not installed in {TXTAI_DIR}, so its rows are left out; install it "
              f"for this benchmark only with\n  {TXTAI_INSTALL}", file=sys.stderr)
        return []
    config = scratch / "txtai.yml"
    # JSON is YAML. writable: /add, /index and /upsert answer; no top-level path: in memory.
    config.write_text(json.dumps({"writable": True,
                                  "embeddings": {"path": str(model), "hybrid": True}}))

    def run(url: str) -> list[dict[str, Any]]:
        began = time.perf_counter()
        with httpx.Client(base_url=url, timeout=1800, trust_env=False) as client:
            for start in range(0, len(docs), 500):
                client.post("/add", json=[{"id": d["id"], "text": d["text"]}
                                          for d in docs[start:start + 500]]).raise_for_status()
            client.get("/index").raise_for_status()
            count = client.get("/count").json()
        print(f"txtai indexed {count} documents in {time.perf_counter() - began:.0f}s",
              file=sys.stderr, flush=True)
        return level_rows(url, TXTAI, queries, incoming, levels, per_client, cap)

    return serving(lambda port, log: start_txtai(config, port, log), run, probe="/count")


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


def ratios_of(rows: list[dict[str, Any]]) -> dict[str, float]:
    def row(system: str, clients: int) -> dict[str, Any] | None:
        return next((r for r in rows if r["system"] == system and r["clients"] == clients), None)

    def best(system: str) -> dict[str, Any] | None:
        return max((r for r in rows if r["system"] == system),
                   key=lambda r: r["searches_per_s"], default=None)

    ratios = {}
    for served in (KINSIGHT, TXTAI):
        one, sixteen = row(served.name, 1), row(served.name, 16)
        if one and sixteen:
            ratios[f"{served.name}: p99 at 16 clients / p50 at 1 client (target <= 4)"] = \
                sixteen["p99_ms"] / one["p50_ms"]
    ours, theirs = best(KINSIGHT.name), best(TXTAI.name)
    raw = next(r for r in rows if r["system"].startswith("FAISS"))
    if ours:
        ratios["best kinsight HTTP searches/s / raw FAISS + bm25s one caller"] = \
            ours["searches_per_s"] / raw["searches_per_s"]
        one = row(KINSIGHT.name, 1)
        if one:
            ratios["kinsight searches/s at 1 client, HTTP / in process"] = \
                one["searches_per_s"] / rows[0]["searches_per_s"]
    if ours and theirs:
        ratios["best kinsight HTTP searches/s / best txtai API searches/s (target >= 2)"] = \
            ours["searches_per_s"] / theirs["searches_per_s"]
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000, help="Debian packages in the store.")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--per-client", type=int, default=25,
                        help="Searches per client at each level (capped by --cap).")
    parser.add_argument("--cap", type=int, default=400, help="Most searches at one level.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-txtai", action="store_true", help="Leave txtai's API out.")
    args = parser.parse_args()

    with debian_store(args.docs, args.seed) as cached:
        cached_dir = cached.path
        collection = cached.collection(COLLECTION)
        ids = set(collection.ids_matching(None))
        space = collection.space("text")
        texts = dict(collection.tables.texts(space.source_fields))  # what kinsight indexed
        model = space.encoder.spec.split(":", 1)[1]
    if cached_dir is None:
        raise SystemExit("the Debian store has no folder")
    queries = queries_of(ids, args.queries, args.seed)
    incoming = [{"id": r.id, "text": r.fields["text"], "section": r.fields["section"]}
                for r in corpus_records(None) if r.id not in ids][:2000]
    if not incoming:
        raise SystemExit(f"--docs {args.docs} leaves no Debian package out of the store for the "
                         "ingesting client to upsert; give a smaller --docs (the corpus has "
                         "33,265)")
    with tempfile.TemporaryDirectory() as scratch:
        served = Path(scratch) / "store"
        shutil.copytree(cached_dir, served)  # the server writes; the cached store stays as it is
        rows = in_process_rows(served, queries)
        rows += serving(lambda port, log: start_server(served, port, log),
                        lambda url: level_rows(url, KINSIGHT, queries, incoming, args.levels,
                                               args.per_client, args.cap, alone=True),
                        probe="/health")
        if not args.no_txtai:
            try:  # a baseline that breaks must not lose the rows measured so far
                rows += txtai_rows(minilm_folder(model), [{"id": i, "text": t}
                                                          for i, t in sorted(texts.items())],
                                   queries, incoming, args.levels, args.per_client, args.cap,
                                   Path(scratch))
            except (RuntimeError, httpx.HTTPError) as e:
                print(f"txtai's rows are left out: {type(e).__name__}: {e}", file=sys.stderr)
    header = ["system", "clients", "searches", "errors", "p50_ms", "p99_ms", "searches_per_s",
              "ingested_docs_per_s"]
    print_table(f"hybrid search, k={K}, {args.docs} Debian docs, {len(queries)} queries; HTTP "
                f"levels while a client upserts batches of {INGEST_BATCH}", header,
                [[row[h] for h in header] for row in rows])
    ratios = ratios_of(rows)
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")
    save(f"load-{args.docs}", {"args": vars(args), "rows": rows, "ratios": ratios,
                               "git": git_state()})


def minilm_folder(model: str) -> Path:
    """The folder the store's encoder loads from, which txtai then loads too."""
    from kinsight.indexers.sentence_encoder import local_folder

    folder = local_folder(model)
    if folder is None:
        raise SystemExit(f"the model {model!r} of the store has no folder on this machine")
    return folder


if __name__ == "__main__":
    main()
