"""Recommendations on the Debian corpus: quality against related.tsv, and speed.

Quality: for each package with a related package (Debian's recommends/suggests/enhances) in the
corpus, is a related package among its top 10 recommendations? Hit rate (share of packages with at
least one) and Recall@10 (share of their related packages found), for kinsight's default (hybrid
"more like this": the item's vector and its text as a BM25 query, search's weighted fusion),
dense recommendations (average_vector of the one item), best_score, BM25 "more like this",
reciprocal-rank fusion of dense and BM25, and random; then the effect of MMR diversity on hit rate and
intra-list similarity (mean pairwise cosine of the 10 items).

Speed, at 33k items: latency of one item-to-item call against a raw FAISS query with the same
vector (the floor), of one user call, and users per second of the batch path against one call
per user. Users are synthetic: each picks 5-30 packages of one or two sections, with random
kinds (view, like, purchase, dislike) over the last 90 days.

    .venv/bin/python benchmarks/recommend.py             # all related pairs (~10 min on 2 cores)
    .venv/bin/python benchmarks/recommend.py --store-docs 6000 --split test  # packages outside
                                                        # the development sample only
    .venv/bin/python benchmarks/recommend.py --docs 2000 # the first 2,000 packages with pairs
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from collections import defaultdict
from datetime import datetime, timedelta

import numpy as np
from _common import DATA, debian_store, item_vectors, print_table, save, split_rows

from kinsight.engine import (
    ById,
    Interaction,
    Item,
    RecommendOptions,
    Store,
    recommend,
    recommend_users,
)
from kinsight.engine.search import Fusion, SearchOptions, search

K = 10


def related_pairs(known: set[str]) -> dict[str, set[str]]:
    related: dict[str, set[str]] = defaultdict(set)
    with open(DATA / "debian" / "related.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["doc_id"] in known and row["related_id"] in known \
                    and row["doc_id"] != row["related_id"]:
                related[row["doc_id"]].add(row["related_id"])
    return dict(sorted(related.items()))


def scores(found: dict[str, list[str]], related: dict[str, set[str]]) -> tuple[float, float]:
    hits = [len(set(found[d]) & related[d]) for d in found]
    return (float(np.mean([h > 0 for h in hits])),
            float(np.mean([h / len(related[d]) for h, d in zip(hits, found, strict=True)])))


def intra_list_similarity(found: dict[str, list[str]], row: dict[str, int],
                          matrix: np.ndarray) -> float:
    values = []
    for items in found.values():
        vecs = matrix[[row[i] for i in items]]
        sims = vecs @ vecs.T
        n = len(items)
        if n > 1:
            values.append((sims.sum() - np.trace(sims)) / (n * (n - 1)))
    return float(np.mean(values))


def timed(calls: list, fn) -> tuple[dict[str, list[str]], np.ndarray]:
    found, seconds = {}, []
    for doc in calls:
        start = time.perf_counter()
        found[doc] = fn(doc)
        seconds.append(time.perf_counter() - start)
    return found, np.array(seconds) * 1000


def quality_and_latency(coll, related, ids, matrix, seed) -> tuple[list, list, dict]:
    row = {i: n for n, i in enumerate(ids)}
    docs = list(related)
    rng = random.Random(seed)
    dense_opts = RecommendOptions(k=K, mode="dense", return_fields=())
    methods = {
        "kinsight default (hybrid)": lambda d: [h.id for h in recommend(
            coll, [d], options=RecommendOptions(k=K, return_fields=()))],
        "dense (average_vector)": lambda d: [h.id for h in recommend(coll, [d], options=dense_opts)],
        "dense (best_score)": lambda d: [h.id for h in recommend(coll, [d], options=RecommendOptions(
            k=K, strategy="best_score", return_fields=()))],
        "BM25 more-like-this": lambda d: [h.id for h in search(coll, ById(d), SearchOptions(
            k=K, mode="bm25", return_fields=()))],
        "RRF of dense and BM25": lambda d: [h.id for h in search(coll, ById(d), SearchOptions(
            k=K, mode="hybrid", fusion=Fusion(method="rrf"), return_fields=()))],
        "random": lambda d: rng.sample([i for i in ids if i != d][:50_000], K),
    }
    quality, latency, found_by = [], [], {}
    for name, fn in methods.items():
        found, ms = timed(docs, fn)
        found_by[name] = found
        hit, recall = scores(found, related)
        quality.append((name, hit, recall, intra_list_similarity(found, row, matrix)))
        latency.append((name, float(np.median(ms)), float(np.percentile(ms, 95))))
        print(f"{name}: hit rate {hit:.3f}, recall@10 {recall:.3f}, p50 {np.median(ms):.1f} ms")
    for diversity in (0.1, 0.25, 0.5):
        options = RecommendOptions(k=K, diversity=diversity, mode="dense", return_fields=())
        found, ms = timed(docs, lambda d, o=options: [h.id for h in recommend(coll, [d], options=o)])
        hit, recall = scores(found, related)
        name = f"dense + MMR diversity {diversity}"
        quality.append((name, hit, recall, intra_list_similarity(found, row, matrix)))
        latency.append((name, float(np.median(ms)), float(np.percentile(ms, 95))))
        print(f"{name}: hit rate {hit:.3f}, recall@10 {recall:.3f}")
    return quality, latency, found_by


def raw_faiss_latency(coll, docs: list[str], row: dict[str, int], matrix: np.ndarray) -> float:
    """The floor: one FAISS query with the item's vector, nothing else."""
    keeper = coll.index("text")
    ms = []
    with keeper.searching() as index:
        for doc in docs:
            query = matrix[row[doc]][None, :]
            start = time.perf_counter()
            index.search(query, K + 1)
            ms.append((time.perf_counter() - start) * 1000)
    return float(np.median(ms))


def user_speed(ids: list[str], matrix: np.ndarray, sections: list[str], encoder, users: int,
               seed: int) -> dict[str, float]:
    """Users per second, batch path vs one call per user, on an in-memory copy of the vectors
    (the benchmark store is read-only; interactions need a writable one)."""
    rng = np.random.default_rng(seed)
    by_section: dict[str, list[str]] = defaultdict(list)
    for item, section in zip(ids, sections, strict=True):
        by_section[section].append(item)
    names = sorted(by_section)
    weights = np.array([len(by_section[s]) for s in names], dtype=float)
    now = datetime(2026, 11, 1)
    events = []
    for u in range(users):
        picked = rng.choice(len(names), size=rng.integers(1, 3), p=weights / weights.sum())
        pool = [i for s in picked for i in by_section[names[s]]]
        for item in rng.choice(pool, size=min(len(pool), int(rng.integers(5, 31))), replace=False):
            events.append(Interaction(f"user{u}", str(item), str(rng.choice(
                ["view", "view", "view", "like", "purchase", "dislike"])),
                timestamp=now - timedelta(days=float(rng.uniform(0, 90)))))
    with Store(":memory:") as store:
        coll = store.create_collection("debian")
        coll.ensure_space("text", encoder)
        coll.upsert(Item(i, {"section": s}, {"text": v}) for i, s, v in
                    zip(ids, sections, matrix, strict=True))
        coll.add_interactions(events)
        coll.refresh()
        options = RecommendOptions(k=K, return_fields=())
        start = time.perf_counter()
        batch = dict(recommend_users(coll, options=options))
        batch_seconds = time.perf_counter() - start
        sample = [f"user{u}" for u in range(0, users, max(1, users // 500))]
        start = time.perf_counter()
        single = {u: recommend(coll, user=u, options=options) for u in sample}
        single_seconds = (time.perf_counter() - start) / len(sample)
        agree = np.mean([[h.id for h in batch[u]] == [h.id for h in single[u]] for u in sample])
    return {"users": users, "interactions": len(events),
            "batch_users_per_s": users / batch_seconds,
            "single_call_users_per_s": 1 / single_seconds,
            "single_user_call_ms": single_seconds * 1000,
            "batch_speedup": (users / batch_seconds) * single_seconds,
            "batch_equals_single_calls": float(agree)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=None,
                        help="evaluate the first N packages that have related packages")
    parser.add_argument("--store-docs", type=int, default=None,
                        help="the store of N packages (default: all)")
    parser.add_argument("--split", choices=("dev", "test", "all"), default="all",
                        help="packages whose recommendations are scored")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with debian_store(args.store_docs) as store:
        coll = store.collection("debian")
        ids, matrix = item_vectors(coll)
        fields = coll.fields_of(ids)
        sections = [str(fields[i].get("section")) for i in ids]
        scored = {ids[i] for i in split_rows(ids, args.split)}
        related = {d: r for d, r in related_pairs(set(ids)).items() if d in scored}
        if args.docs:
            related = dict(list(related.items())[: args.docs])
        print(f"{len(related)} packages with {sum(map(len, related.values()))} related packages")
        quality, latency, _ = quality_and_latency(coll, related, ids, matrix, args.seed)
        floor = raw_faiss_latency(coll, list(related)[:500], {i: n for n, i in enumerate(ids)},
                                  matrix)
        encoder = coll.space("text").encoder
    users = user_speed(ids, matrix, sections, encoder, args.users, args.seed)

    print_table(f"Related packages in the top {K} ({len(related)} packages, "
                f"{len(ids)} items)", ["method", "hit rate", "Recall@10", "intra-list sim"],
                quality)
    print_table("Latency per item-to-item call (ms)", ["method", "p50", "p95"],
                [*latency, ("raw FAISS query (floor)", floor, float("nan"))])
    print_table("Users", ["measure", "value"], [(k, v) for k, v in users.items()])
    save("recommend" + (f"-{args.docs}" if args.docs else "") + f"-{args.split}", {
        "packages": len(related), "items": len(ids),
        "quality": [dict(zip(["method", "hit_rate", "recall@10", "intra_list_similarity"], q,
                             strict=True)) for q in quality],
        "latency_ms": [dict(zip(["method", "p50", "p95"], r, strict=True)) for r in latency],
        "raw_faiss_p50_ms": floor, "users": users,
        "command": "benchmarks/recommend.py" + (f" --docs {args.docs}" if args.docs else "")
                   + (f" --store-docs {args.store_docs}" if args.store_docs else "")
                   + f" --split {args.split}",
    })


if __name__ == "__main__":
    main()
