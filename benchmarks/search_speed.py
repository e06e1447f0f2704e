"""Search speed: engine vs raw FAISS (QPS, latency, recall@10 vs exact), and HTTP under load.

(a) For each size (default 33,000 and 300,000 vectors of dimension 384) a fresh store is built and
the same 500 held-out queries are run through ``Collection.search`` one at a time,
``search_many`` 100 at a time, the space's ``VectorIndex.search`` wrapper, and the raw FAISS index
underneath it (same search parameters), each scored by recall@10 against a numpy brute force
over the stored vectors. The index type is whatever ``choose_index`` picks for the size.

(b) A real uvicorn server (``kinsight.api.http:create_app``, in a subprocess, on 127.0.0.1) serves
the store of ``--http-size`` vectors; 1, 4 and 16 concurrent clients POST vector queries to
``/collections/bench/search``, and p50/p99 latency and requests/s are reported per level.

Vectors are the real all-MiniLM-L6-v2 chunk vectors of ``benchmarks/results/debian-full-store``
(written by quality.py) when it exists, replicated with small noise past its size; else clustered
Gaussian vectors. Queries are dataset vectors perturbed well beyond the replica noise.

    .venv/bin/python benchmarks/search_speed.py                          # ~1.5 min on 2 cores
    .venv/bin/python benchmarks/search_speed.py --sizes 5000 --queries 50 --http-requests 40
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import faiss
import httpx
import numpy as np
from _common import RESULTS, git_state, print_table, save

from kinsight.engine import Collection, EncoderInfo, Item, KinsightError, SearchOptions, Store
from kinsight.engine.search import search_many
from kinsight.engine.vector_index import VectorIndex

DIM = 384
K = 10
COLLECTION = "bench"
SPACE = "text"
# A vectors-only space: the benchmark passes vectors in and queries with vectors, so no model is
# ever loaded; "text" modality matches what an ingest creates (it also gets an empty BM25 index).
INFO = EncoderInfo(spec="vectors:bench", modality="text", dim=DIM, fingerprint="bench")
REAL_STORE = RESULTS / "debian-full-store"


# -- data -----------------------------------------------------------------------------------------
def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))


def perturb(base: np.ndarray, rows: np.ndarray, noise: float, rng: np.random.Generator
            ) -> np.ndarray:
    """``base[rows]`` plus Gaussian noise of norm about ``noise`` (per-dimension std
    noise/sqrt(dim)), back on the unit sphere: for unit rows the cosine to the source is
    about 1/sqrt(1 + noise²)."""
    jitter = rng.standard_normal((len(rows), base.shape[1]), dtype=np.float32)
    return unit(base[rows] + jitter * np.float32(noise / math.sqrt(base.shape[1])))


def real_vectors() -> np.ndarray | None:
    """The MiniLM chunk vectors of the quality benchmark's store, or None when there is none."""
    if not (REAL_STORE / "store.duckdb").exists():
        return None
    try:
        with Store(REAL_STORE, read_only=True) as store:
            blocks = store.collection("debian").vector_blocks("text")
            return np.concatenate([v for _, v, _ in blocks])
    except (KinsightError, duckdb.Error) as e:  # e.g. quality.py still has it open for writing
        print(f"cannot read {REAL_STORE} ({type(e).__name__}: {e}); using synthetic vectors")
        return None


def clustered(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors in Gaussian clusters of ~100: sentence embeddings are clustered by topic,
    and uniform random vectors would make IVF look worse (no structure) and exact scans alike."""
    centers = unit(rng.standard_normal((max(16, n // 100), DIM), dtype=np.float32))
    return perturb(centers, rng.integers(0, len(centers), n), 0.8, rng)


def dataset(real: np.ndarray | None, n: int, noise: float, rng: np.random.Generator
            ) -> np.ndarray:
    if real is None:
        return clustered(n, rng)
    if n <= len(real):
        return real[np.sort(rng.choice(len(real), n, replace=False))]
    # Past the real data: copies of real vectors, each nudged so no two are identical.
    extra = perturb(real, rng.integers(0, len(real), n - len(real)), noise, rng)
    return np.concatenate([real, extra])


# -- building -------------------------------------------------------------------------------------
def build_store(path: Path, vectors: np.ndarray, batch: int) -> tuple[Store, Collection, float, float]:
    """A store of one item per vector (id ``v{i}``, one small field); seconds to upsert and to
    refresh (index build, as an ingest ends with)."""
    store = Store(path)
    collection = store.create_collection(COLLECTION)
    collection.ensure_space(SPACE, INFO)
    start = time.perf_counter()
    for first in range(0, len(vectors), batch):
        collection.upsert(Item(id=f"v{i}", fields={"group": i % 100}, vectors={SPACE: vectors[i]})
                          for i in range(first, min(first + batch, len(vectors))))
    upserted = time.perf_counter()
    collection.refresh()
    return store, collection, upserted - start, time.perf_counter() - upserted


def exact_neighbours(stored: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of the exact top-k by inner product (vectors are unit: cosine), best first."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for first in range(0, len(queries), 100):  # 100 x 300k scores at a time: ~120 MB
        scores = queries[first:first + 100] @ stored.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        out[first:first + 100] = np.take_along_axis(top, order, 1)
    return out


def recall(found: Sequence[Sequence[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / len(t) for f, t in zip(found, truth,
                                                                                 strict=True)]))


# -- timing ---------------------------------------------------------------------------------------
def timed_calls(calls: Sequence[Callable[[], list[list[int]]]], warmup: int
                ) -> tuple[list[float], list[list[int]]]:
    """Run each call once in order (after ``warmup`` untimed ones); per-call seconds and the
    row numbers each query found."""
    for call in calls[:warmup]:
        call()
    seconds: list[float] = []
    found: list[list[int]] = []
    for call in calls:
        start = time.perf_counter()
        rows = call()
        seconds.append(time.perf_counter() - start)
        found += rows
    return seconds, found


def row(n: int, index: str, method: str, per_call: int, seconds: list[float], queries: int,
        rec: float) -> dict[str, Any]:
    ms = np.array(seconds) * 1000
    return {"n": n, "index": index, "method": method, "queries_per_call": per_call,
            "queries": queries, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "qps": queries / float(np.sum(seconds)),
            "recall@10": rec}


def measure_size(n: int, queries: np.ndarray, args: argparse.Namespace, collection: Collection
                 ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every method at one size, over one store; rows for the table and facts about the index."""
    seqs, stored, ids = [], [], []
    for s, v, i in collection.vector_blocks(SPACE):
        seqs.append(s)
        stored.append(v)
        ids += i
    seq_array = np.concatenate(seqs)  # ascending (vector_blocks orders by seq)
    stored_array = np.concatenate(stored)
    row_of_id = {item_id: r for r, item_id in enumerate(ids)}
    truth = exact_neighbours(stored_array, queries, K)
    del stored, stored_array

    def rows_of_seqs(found: np.ndarray) -> list[list[int]]:
        return [np.searchsorted(seq_array, f[f >= 0]).tolist() for f in found]

    keeper = collection.index(SPACE)
    with keeper.searching() as vindex:
        spec = vindex.spec
        raw_index = vindex.index
    label = spec.factory + (f" nprobe={spec.nprobe}" if spec.nprobe else "")
    # Raw FAISS gets the search parameters the wrapper passes, or an IVF index would run at its
    # default nprobe=1 and the comparison would be meaningless.
    params = None
    if spec.nprobe:
        params = faiss.SearchParametersIVF()
        params.nprobe = spec.nprobe
    b = args.batch
    singles = [queries[i:i + 1] for i in range(len(queries))]
    batches = [queries[i:i + b] for i in range(0, len(queries), b)]
    warm = 10
    results: list[dict[str, Any]] = []

    def engine_single(q: np.ndarray) -> Callable[[], list[list[int]]]:
        return lambda: [[row_of_id[h.id] for h in collection.search(q[0], k=K)]]

    def engine_batch(q: np.ndarray) -> Callable[[], list[list[int]]]:
        return lambda: [[row_of_id[h.id] for h in hits] for hits in
                        search_many(collection, list(q), SearchOptions(k=K))]

    def engine_exact(q: np.ndarray) -> Callable[[], list[list[int]]]:
        return lambda: [[row_of_id[h.id] for h in collection.search(q[0], k=K, exact=True)]]

    def wrapper(index: VectorIndex, q: np.ndarray) -> Callable[[], list[list[int]]]:
        return lambda: rows_of_seqs(index.search(q, K)[1])

    def raw(q: np.ndarray) -> Callable[[], list[list[int]]]:
        return lambda: rows_of_seqs(raw_index.search(q, K, params=params)[1])

    seconds, found = timed_calls([engine_single(q) for q in singles], warm)
    results.append(row(n, label, "engine Collection.search", 1, seconds, len(queries),
                       recall(found, truth)))
    seconds, found = timed_calls([engine_batch(q) for q in batches], 1)
    results.append(row(n, label, f"engine search_many ({b}/call)", b, seconds, len(queries),
                       recall(found, truth)))
    if not spec.is_exact and args.exact_queries:
        # exact=True on an approximate index leaves the index's fast path: a few queries show
        # what that exact path costs (it once reread every vector from DuckDB per query).
        few = singles[: args.exact_queries]
        seconds, found = timed_calls([engine_exact(q) for q in few], 1)
        results.append(row(n, label, "engine Collection.search exact=True", 1, seconds,
                           len(few), recall(found, truth[: len(few)])))

    # Held for reading for the whole loop, as the engine holds it per call: no catch-up inside.
    with keeper.searching() as vindex:
        seconds, found = timed_calls([wrapper(vindex, q) for q in singles], warm)
        results.append(row(n, label, "VectorIndex.search (wrapper)", 1, seconds, len(queries),
                           recall(found, truth)))
        seconds, found = timed_calls([raw(q) for q in singles], warm)
        results.append(row(n, label, "raw FAISS index.search", 1, seconds, len(queries),
                           recall(found, truth)))
        seconds, found = timed_calls([raw(q) for q in batches], 1)
        results.append(row(n, label, f"raw FAISS index.search ({b}/call)", b, seconds,
                           len(queries), recall(found, truth)))
    raw_single = next(r for r in results if r["method"] == "raw FAISS index.search")
    raw_batch = results[-1]
    for r in results:
        base = raw_batch if r["queries_per_call"] > 1 else raw_single
        r["time_over_raw"] = base["qps"] / r["qps"]
    facts = {"factory": spec.factory, "nprobe": spec.nprobe, "reason": spec.reason,
             "ntotal": int(raw_index.ntotal)}
    return results, facts


# -- HTTP -----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(store: Path, port: int, log_file: Any) -> subprocess.Popen[bytes]:
    """``uvicorn --factory kinsight.api.http:create_app``: settings come from KINSIGHT_* variables,
    as the app's docstring documents; one worker, as ``kinsight serve`` runs it."""
    env = {**os.environ, "KINSIGHT_STORE": str(store)}
    env.pop("KINSIGHT_API_KEY", None)
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "kinsight.api.http:create_app",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
           "--no-access-log"]
    return subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float,
               probe: str = "/health") -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, trust_env=False, timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {proc.returncode}")
            try:
                if client.get(probe).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer {probe} within {timeout:.0f}s")


async def load_level(url: str, bodies: list[bytes], clients: int, total: int
                     ) -> tuple[list[float], list[float], float]:
    """``total`` requests from ``clients`` concurrent loops; client-side latencies, the server's
    own ``took_ms`` (search only) and the wall time."""
    counter = itertools.count()
    latencies: list[float] = []
    took: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    # trust_env=False: no proxy variable may route the loopback traffic elsewhere.
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, trust_env=False) as client:
        async def worker() -> None:
            while (i := next(counter)) < total:
                start = time.perf_counter()
                response = await client.post(f"/collections/{COLLECTION}/search",
                                             content=bodies[i % len(bodies)],
                                             headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - start)
                response.raise_for_status()
                payload = response.json()
                if len(payload["hits"]) != K:
                    raise RuntimeError(f"expected {K} hits, got {len(payload['hits'])}")
                took.append(float(payload["took_ms"]))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - start
    return latencies, took, wall


def http_benchmark(store: Path, queries: np.ndarray, levels: Sequence[int], requests: int
                   ) -> list[dict[str, Any]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Bodies made up front, so the clients spend their (shared) CPU on requests only.
    bodies = [json.dumps({"vector": q.tolist(), "k": K}).encode() for q in queries]
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryFile() as log_file:
        proc = start_server(store, port, log_file)
        try:
            wait_ready(url, proc, timeout=120)
            asyncio.run(load_level(url, bodies, 1, 20))  # warm-up: index load, first requests
            for clients in levels:
                latencies, took, wall = asyncio.run(load_level(url, bodies, clients, requests))
                ms = np.array(latencies) * 1000
                out.append({"clients": clients, "requests": requests,
                            "p50_ms": float(np.percentile(ms, 50)),
                            "p99_ms": float(np.percentile(ms, 99)),
                            "requests_per_s": requests / wall,
                            "server_took_ms_p50": statistics.median(took)})
                print(f"http: {clients} clients done", flush=True)
        except Exception:
            log_file.seek(0)
            print(log_file.read().decode(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return out


# -- main -----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[33_000, 300_000],
                        help="collection sizes in vectors (default 33000 300000)")
    parser.add_argument("--queries", type=int, default=500, help="held-out queries (default 500)")
    parser.add_argument("--batch", type=int, default=100, help="queries per batch call")
    parser.add_argument("--exact-queries", type=int, default=20,
                        help="queries for exact=True on approximate indexes (slow path)")
    parser.add_argument("--upsert-batch", type=int, default=10_000)
    parser.add_argument("--replica-noise", type=float, default=0.4,
                        help="noise norm of copies past the real data (cosine ~0.93 to source)")
    parser.add_argument("--query-noise", type=float, default=1.0,
                        help="noise norm of queries (cosine ~0.7 to their source vector)")
    parser.add_argument("--http-size", type=int, default=33_000,
                        help="size whose store the HTTP server serves (must be in --sizes)")
    parser.add_argument("--http-requests", type=int, default=400, help="requests per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--synthetic", action="store_true", help="ignore the real store")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    if not args.no_http and args.http_size not in args.sizes:
        parser.error(f"--http-size {args.http_size} is not one of --sizes; add it or pass --no-http")
    real = None if args.synthetic else real_vectors()
    source = (f"real MiniLM vectors from {REAL_STORE.name} ({len(real)})" if real is not None
              else "clustered Gaussian (synthetic)")
    print(f"vectors: {source}; faiss threads {faiss.omp_get_max_threads()}", flush=True)
    rng = np.random.default_rng(args.seed)

    rows: list[dict[str, Any]] = []
    builds: list[dict[str, Any]] = []
    http_rows: list[dict[str, Any]] = []
    for n in args.sizes:
        vectors = dataset(real, n, args.replica_noise, rng)
        queries = perturb(vectors, rng.integers(0, n, args.queries), args.query_noise, rng)
        with tempfile.TemporaryDirectory(prefix=f"kinsight-search-bench-{n}-") as tmp:
            store, collection, upsert_s, refresh_s = build_store(Path(tmp), vectors,
                                                                 args.upsert_batch)
            del vectors
            try:
                size_rows, facts = measure_size(n, queries, args, collection)
            finally:
                store.close()  # saves the index, so the HTTP server loads instead of rebuilding
            rows += size_rows
            builds.append({"n": n, **facts, "upsert_seconds": upsert_s,
                           "refresh_seconds": refresh_s})
            print(f"n={n}: {facts['factory']} built (upsert {upsert_s:.1f}s, refresh "
                  f"{refresh_s:.1f}s), measured", flush=True)
            if not args.no_http and n == args.http_size:
                http_rows = http_benchmark(Path(tmp), queries, args.concurrency,
                                           args.http_requests)

    print_table("Index per size (choose_index) and build time",
                ["n", "index", "nprobe", "upsert s", "refresh s", "reason"],
                [[b["n"], b["factory"], b["nprobe"], b["upsert_seconds"], b["refresh_seconds"],
                  b["reason"]] for b in builds])
    print_table(f"Search speed, k={K}, {args.queries} queries, dim {DIM} ({source}); "
                "p50/p99 are per call; time/raw = (1/QPS) / raw FAISS's at the same batch size",
                ["n", "index", "method", "p50 ms", "p99 ms", "QPS", "recall@10", "time/raw"],
                [[r["n"], r["index"], r["method"], r["p50_ms"], r["p99_ms"], f"{r['qps']:.0f}",
                  r["recall@10"], f"{r['time_over_raw']:.2f}"] for r in rows])
    if http_rows:
        print_table(f"HTTP POST /collections/{COLLECTION}/search (vector, k={K}) over "
                    f"{args.http_size} vectors, uvicorn 1 worker on 127.0.0.1, clients on the "
                    "same machine",
                    ["clients", "requests", "p50 ms", "p99 ms", "requests/s",
                     "server took_ms p50"],
                    [[h["clients"], h["requests"], h["p50_ms"], h["p99_ms"],
                      f"{h['requests_per_s']:.1f}", h["server_took_ms_p50"]]
                     for h in http_rows])
    save("search_speed", {
        "vectors": source, "dim": DIM, "k": K, "queries": args.queries, "batch": args.batch,
        "seed": args.seed, "replica_noise": args.replica_noise, "query_noise": args.query_noise,
        "builds": builds, "results": rows, "http": http_rows,
        "git": git_state(),
        "command": "benchmarks/search_speed.py " + " ".join(sys.argv[1:]),
    })


if __name__ == "__main__":
    main()
