"""CPU variants of the text model, end to end: kinsight ingest with each vs raw fp32 encode.

On the same seeded sample of Debian descriptions (the ``text`` column, chunked as kinsight
chunks it), one run times raw ``SentenceTransformer.encode`` in float32 and a kinsight ingest
(open, ingest, close) with every CPU variant ``kinsight model prepare`` can choose; the runs
alternate (raw, variant 1, variant 2, ...) so drift of a shared machine hits all alike. Next to
each speed: the mean and worst cosine of its chunk vectors with raw float32's, and dense nDCG@10
on the sample's queries (benchmarks/quality.py's protocol), each query encoded by the same
variant. A second table times encode alone on the shortest and the longest quarter of the chunks,
to show how much less long texts gain (the sentence-transformers docs warn ONNX may).

    .venv/bin/python benchmarks/encoder_variants.py               # 2000 docs, 1 rep: ~20 min on 2 cores
    .venv/bin/python benchmarks/encoder_variants.py --docs 200    # a quick check
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from typing import Any

import numpy as np
from _common import DATA, corpus_records, git_state, print_table, save
from ingest_throughput import MAX_TOKENS, chunk_texts, raw_encode
from sentence_transformers import SentenceTransformer

from kinsight.engine import Encoder, Store, encoders
from kinsight.engine.evaluation import EvaluationOptions, evaluate_search, load_qrels, load_queries
from kinsight.indexers import IngestOptions, ingest_records, model_cache
from kinsight.indexers.devices import configure_cpu_threads
from kinsight.indexers.model_prepare import MIN_MEAN_COSINE, cpu_candidates
from kinsight.indexers.sentence_encoder import load_sentence_variant, local_folder

NDCG_TOLERANCE = 0.005


def ingest_and_score(records: list[Any], options: IngestOptions, encoder: Encoder,
                     queries: list[Any], qrels: dict[str, dict[str, int]]
                     ) -> tuple[float, np.ndarray, float]:
    """Seconds of a fresh ingest with ``encoder``, its stored chunk vectors (ingest order) and
    dense nDCG@10 with queries encoded by the same encoder."""
    with tempfile.TemporaryDirectory(prefix="kinsight-variant-bench-") as tmp:
        start = time.perf_counter()
        with Store(tmp) as store:
            ingest_records(store, records, options, encoder=encoder, progress=False)
        seconds = time.perf_counter() - start
        with Store(tmp, read_only=True) as store:
            collection = store.collection(options.collection)
            vectors = np.concatenate([v for _, v, _ in collection.vector_blocks(options.space)])
            # The search path loads the space's encoder by spec: make it this variant.
            encoders._cache[encoder.info.spec] = encoder
            ndcg = evaluate_search(collection, queries, qrels,
                                   EvaluationOptions(modes=("dense",)))["dense"]["ndcg@10"]
    return seconds, vectors, ndcg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000, help="documents sampled (default 2000)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each arm (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    threads = configure_cpu_threads()
    records = corpus_records(args.docs, args.seed)
    options = IngestOptions(collection="bench")
    fp32 = load_sentence_variant("", "torch-fp32")
    if fp32.info.max_tokens != MAX_TOKENS:
        raise SystemExit(f"model reads {fp32.info.max_tokens} tokens, expected {MAX_TOKENS}")
    variants, skipped = cpu_candidates(fp32, "", fp32.info.fingerprint)  # type: ignore[arg-type]
    for note in skipped:
        print(f"not measured: {note.variant}: {note.note}")
    folder = local_folder("")
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    texts, _ = chunk_texts(records, options)
    indexed = {r.id for r in records}
    qrels = load_qrels(DATA / "debian" / "qrels.tsv")
    queries = [q for q in load_queries(DATA / "debian" / "queries.jsonl")
               if any(d in indexed for d in qrels.get(q.qid, {}))]
    flags = [f for f in ("avx2", "avx512_vnni", "amx_bf16") if f in model_cache.cpu_flags()]
    print(f"{len(records)} docs -> {len(texts)} chunks, {len(queries)} queries; {threads} threads; "
          f"CPU flags: {' '.join(flags)}")

    warm = texts[:64]
    raw_encode(model, warm)
    for encoder in variants.values():
        encoder.encode(warm)
    raw_times: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in variants}
    vectors: dict[str, np.ndarray] = {}
    ndcg: dict[str, float] = {}
    raw_vectors = np.zeros(0)
    for rep in range(args.repeats):
        seconds, raw_vectors = raw_encode(model, texts)
        raw_times.append(seconds)
        print(f"rep {rep + 1}: raw fp32 encode {seconds:.1f}s", flush=True)
        for name, encoder in variants.items():
            seconds, vectors[name], ndcg[name] = ingest_and_score(records, options, encoder,
                                                                  queries, qrels)
            times[name].append(seconds)
            print(f"rep {rep + 1}: kinsight ingest, {name}: {seconds:.1f}s", flush=True)

    raw = statistics.median(raw_times)
    n = len(records)
    rows: list[list[Any]] = [["raw SentenceTransformer.encode fp32", raw, n / raw, 1.0, 1.0, 1.0,
                              "-", "-"]]
    results: dict[str, dict[str, Any]] = {}
    for name in variants:
        seconds = statistics.median(times[name])
        cosines = np.sum(vectors[name].astype(np.float64) * raw_vectors, axis=1)
        delta = ndcg[name] - ndcg["torch-fp32"]
        passed = cosines.mean() >= MIN_MEAN_COSINE and abs(delta) <= NDCG_TOLERANCE
        results[name] = {"seconds": times[name], "docs_per_second": n / seconds,
                         "ratio_to_raw": raw / seconds, "mean_cosine": float(cosines.mean()),
                         "min_cosine": float(cosines.min()), "ndcg@10": ndcg[name],
                         "ndcg_delta": delta, "gate": passed}
        rows.append([f"kinsight ingest, {name}", seconds, n / seconds, raw / seconds,
                     float(cosines.mean()), float(cosines.min()), f"{ndcg[name]:.4f}",
                     f"{delta:+.4f} {'pass' if passed else 'FAIL'}"])
    print_table(f"End to end: {n} Debian docs ({len(texts)} chunks), all-MiniLM-L6-v2, "
                f"{threads} threads, median of {args.repeats}",
                ["run", "seconds", "docs/s", "x raw", "mean cos", "min cos", "nDCG@10",
                 "vs fp32 (gate)"], rows)

    by_length = sorted(texts, key=len)
    quarter = max(1, len(texts) // 4)
    short, long = by_length[:quarter], by_length[-quarter:]
    length_rows = []
    for label, part in (("shortest quarter", short), ("longest quarter", long)):
        base = min(raw_encode(model, part)[0] for _ in range(args.repeats))
        for name, encoder in variants.items():
            start = time.perf_counter()
            encoder.encode(part)
            seconds = time.perf_counter() - start
            results[name][f"encode_ratio_{label.split()[0]}"] = base / seconds
            length_rows.append([label, f"{np.mean([len(t) for t in part]):.0f}", name,
                                len(part) / seconds, base / seconds])
    print_table("Encode only, by chunk length (x raw fp32 encode of the same chunks)",
                ["chunks", "mean chars", "variant", "chunks/s", "x raw"], length_rows)
    save("encoder_variants", {
        "docs": n, "chunks": len(texts), "queries": len(queries), "threads": threads,
        "repeats": args.repeats, "seed": args.seed, "raw_seconds": raw_times,
        "variants": results, "cpu_flags": sorted(model_cache.cpu_flags()), "git": git_state(),
        "command": "benchmarks/encoder_variants.py"
                   + (f" --docs {args.docs}" if args.docs != 2000 else "")
                   + (f" --repeats {args.repeats}" if args.repeats != 1 else ""),
    })


if __name__ == "__main__":
    main()
