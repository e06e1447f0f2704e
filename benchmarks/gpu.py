"""GPU check: kinsight's GPU paths, each beside the machine's own measured bound and the CPU.

One run, under 5 minutes on a CUDA machine; every figure is printed with the bound it should be
read against, measured first in the same run (a large fp16 matrix product for FLOP/s, a device
copy for memory bandwidth), and with the same measure on this machine's CPU at a smaller size:

* text: all-MiniLM-L6-v2 in fp16 (kinsight's own encoder: length-sorted batches), sentences/s and
  the share of the fp16 peak its ~21 MFLOP per token reach;
* pictures: ViT-B-32 (random weights: speed only) through kinsight's ingest, decode included,
  images/s and the share of the peak its ~4.4 GFLOP per picture reach;
* exact search: 1M x 512 vectors, batches of 1,000 queries, top 10, ms per batch (target 10 ms),
  on FAISS's GPU index when FAISS has GPU support, else on a torch fp16 matrix product + top-k
  (said so in the row), beside the time one read of the vectors takes at the copy bandwidth;
* k-means: FAISS's, 1M x 512 into 1,024 centroids, 10 iterations (FAISS with GPU support only);
* ingest end to end: the Debian sample into a fresh store, docs/s (encode, DuckDB, indexes).

    KINSIGHT_DEVICE=cuda python benchmarks/gpu.py          # on the GPU machine
    .venv/bin/python benchmarks/gpu.py --smoke             # tiny sizes on any machine: it runs

The figures go to ``benchmarks/results/gpu.json`` (``--out`` elsewhere) and into the README.
A part whose package is missing (FAISS without GPU support, open_clip) prints why it was skipped
and the rest goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "api" / "demo_data" / "debian_sample.parquet"
TEXT_SPEC = "sentence-transformers:all-MiniLM-L6-v2"
# MiniLM-L6: 6 layers of 4 projections 384x384 and a 384x1536x384 feed-forward: 10.6 M
# multiply-adds per token (attention scores, a few % at these lengths, left out).
MINILM_FLOP_PER_TOKEN = 2 * 6 * (4 * 384 * 384 + 2 * 384 * 1536)
VIT_B32_FLOP_PER_IMAGE = 4.4e9  # open_clip's ViT-B-32 image tower at 224 px
SIZES = {  # (gpu, cpu) sizes of each measure; --smoke shrinks them all
    "sentences": (100_000, 2_000), "pictures": (5_000, 200), "vectors": (1_000_000, 100_000),
    "queries": (1_000, 100), "centroids": (1_024, 256),
}
SMOKE = {"sentences": (64, 32), "pictures": (16, 8), "vectors": (2_000, 1_000),
         "queries": (10, 10), "centroids": (8, 8)}


def timed(run: Callable[[], Any], sync: Callable[[], None] = lambda: None) -> float:
    """Seconds ``run`` takes, the device synchronised on both sides."""
    sync()
    start = time.perf_counter()
    run()
    sync()
    return time.perf_counter() - start


def bounds(torch: Any, device: str) -> dict[str, float]:
    """The device's peak, measured: fp16 matrix product FLOP/s and copy bandwidth (bytes/s)."""
    if device == "cpu":  # numpy float32: the CPU has no fp16 matrix units torch would use
        a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
        seconds = min(timed(lambda: a @ a) for _ in range(3))
        big = np.ones(64 * 2**20 // 4, np.float32)
        copy = min(timed(lambda: big.copy()) for _ in range(3))
        return {"flops": 2 * 2048**3 / seconds, "bandwidth": 2 * big.nbytes / copy}
    sync = torch.cuda.synchronize
    a = torch.randn(8192, 8192, device=device, dtype=torch.float16)
    for _ in range(3):
        a @ a
    seconds = min(timed(lambda: a @ a, sync) for _ in range(5))
    big = torch.empty(2**30, device=device, dtype=torch.uint8)
    copy = min(timed(lambda: big.clone(), sync) for _ in range(5))
    return {"flops": 2 * 8192**3 / seconds, "bandwidth": 2 * big.numel() / copy}


def sample_texts(count: int) -> list[str]:
    import pyarrow.parquet as pq

    table = pq.read_table(SAMPLE, columns=["title", "text"]).to_pylist()
    texts = [f"{row['title']}\n\n{row['text']}" for row in table]
    return [texts[i % len(texts)] for i in range(count)]


def text_encode(device: str, count: int, peak: float) -> dict[str, Any]:
    os.environ["KINSIGHT_DEVICE"] = device
    from kinsight.indexers.sentence_encoder import load_sentence_encoder

    encoder = load_sentence_encoder("all-MiniLM-L6-v2")
    texts = sample_texts(count)
    encoder.encode(texts[:256])  # warm-up: kernels, allocator
    seconds = timed(lambda: encoder.encode(texts))
    tokenizer = getattr(getattr(encoder, "model", None), "tokenizer", None)
    tokens = (sum(min(len(ids), 256) for ids in tokenizer(texts)["input_ids"])
              if tokenizer is not None else None)
    row = {"measure": "MiniLM encode", "device": device, "count": count,
           "per_second": count / seconds, "unit": "sentences/s", "encoder": repr(encoder)}
    if tokens:
        row["share_of_peak"] = tokens * MINILM_FLOP_PER_TOKEN / seconds / peak
    return row


def write_pictures(folder: Path, count: int) -> list[Path]:
    """``count`` distinct 256x256 JPEG files (blocks of colour and noise), decoded as real ones."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        blocks = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        pixels = np.kron(blocks, np.ones((32, 32, 1), np.uint8))
        pixels = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
        path = folder / f"p{i:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def ingest(device: str, records: list[Any], options: Any, folder: Path) -> float:
    """Seconds of one ingest of ``records`` into a fresh store, indexes saved."""
    os.environ["KINSIGHT_DEVICE"] = device
    from kinsight.engine import Store
    from kinsight.indexers import ingest_records

    with Store(folder) as store:
        return timed(lambda: ingest_records(store, records, options, progress=False))


def picture_ingest(device: str, count: int, spec: str, peak: float, work: Path
                   ) -> dict[str, Any]:
    from kinsight.indexers import IngestOptions
    from kinsight.indexers.ingest import SpaceSource
    from kinsight.indexers.records import Record

    folder = work / f"pictures-{device}"
    folder.mkdir()
    records = [Record(p.stem, {"image": str(p)}, "gpu-check", n)
               for n, p in enumerate(write_pictures(folder, count), 1)]
    options = IngestOptions(collection="pictures",
                            spaces=(SpaceSource("image", spec, ("image",), "image"),))
    ingest(device, records[:8], options, work / f"warm-{device}")  # model load, kernels
    seconds = ingest(device, records, options, work / f"pictures-store-{device}")
    row = {"measure": f"{spec} ingest, decode included", "device": device, "count": count,
           "per_second": count / seconds, "unit": "images/s"}
    if "ViT-B-32" in spec:
        row["share_of_peak"] = count * VIT_B32_FLOP_PER_IMAGE / seconds / peak
    return row


def text_ingest(device: str, count: int, work: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from kinsight.indexers import IngestOptions
    from kinsight.indexers.records import Record

    rows = pq.read_table(SAMPLE, columns=["id", "title", "text", "section"]).to_pylist()
    records = []
    for i in range(count):  # the sample repeated to ``count``, each copy under new ids
        row = rows[i % len(rows)]
        records.append(Record(f"{row['id']}-{i // len(rows)}", {
            "title": row["title"], "text": row["text"], "section": row["section"]},
            "debian_sample", i))
    options = IngestOptions(collection="docs", text_fields=("title", "text"), encoder=TEXT_SPEC)
    ingest(device, records[:16], options, work / f"text-warm-{device}")  # model load, kernels
    seconds = ingest(device, records, options, work / f"text-store-{device}")
    return {"measure": "Debian ingest end to end", "device": device, "count": count,
            "per_second": count / seconds, "unit": "docs/s"}


def exact_search(torch: Any, device: str, rows: int, queries: int, bandwidth: float
                 ) -> dict[str, Any]:
    import faiss

    rng = np.random.default_rng(0)
    data = rng.standard_normal((rows, 512), dtype=np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    batch = data[rng.choice(rows, queries, replace=False)]
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if device == "cpu" or gpus:
        index = faiss.IndexFlatIP(512)
        if device != "cpu":
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        index.add(data)
        index.search(batch[:10], 10)
        seconds = min(timed(lambda: index.search(batch, 10)) for _ in range(5))
        how = "FAISS " + ("IndexFlatIP" if device == "cpu" else "GpuIndexFlatIP")
    else:  # FAISS without GPU support here: the same product + top-k in torch, fp16
        on_device = torch.from_numpy(data).to(device, torch.float16)
        asked = torch.from_numpy(batch).to(device, torch.float16)

        def search() -> None:
            torch.topk(asked @ on_device.T, 10, dim=1)

        search()
        seconds = min(timed(search, torch.cuda.synchronize) for _ in range(5))
        how = "torch fp16 product + top-k (FAISS has no GPU support here)"
    return {"measure": f"exact search {rows:,} x 512, {queries:,} queries, top 10", "how": how,
            "device": device, "ms_per_batch": 1000 * seconds,
            "ms_one_read_of_vectors": 1000 * data.nbytes / bandwidth}


def kmeans(device: str, rows: int, centroids: int) -> dict[str, Any]:
    import faiss

    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if device != "cpu" and not gpus:
        return {"measure": "k-means", "device": device,
                "skipped": "FAISS has no GPU support here (pip install 'kinsight[gpu]')"}
    data = np.random.default_rng(1).standard_normal((rows, 512), dtype=np.float32)
    model = faiss.Kmeans(512, centroids, niter=10, gpu=device != "cpu", seed=1,
                         max_points_per_centroid=rows)
    seconds = timed(lambda: model.train(data))
    return {"measure": f"k-means {rows:,} x 512 into {centroids:,}, 10 iterations",
            "device": device, "seconds": seconds}


def measure(device: str, sizes: dict[str, tuple[int, int]], image_encoder: str
            ) -> dict[str, Any]:
    """Every measure on one device (``sizes``: the first of each pair on a GPU)."""
    import torch

    n = 1 if device == "cpu" else 0
    peak = bounds(torch, device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for part, *part_args in (
                (text_encode, device, sizes["sentences"][n], peak["flops"]),
                (picture_ingest, device, sizes["pictures"][n], image_encoder, peak["flops"],
                 work),
                (exact_search, torch, device, sizes["vectors"][n], sizes["queries"][n],
                 peak["bandwidth"]),
                (kmeans, device, sizes["vectors"][n], sizes["centroids"][n]),
                (text_ingest, device, max(16, sizes["sentences"][n] // 10), work)):
            try:
                row = part(*part_args)
            except ImportError as e:  # an optional package (open_clip, a FAISS build)
                row = {"measure": part.__name__, "device": device,
                       "skipped": f"missing package: {e}"}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"device": device, "bounds": peak, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes: checks that every part runs, measures nothing")
    parser.add_argument("--device", help="measure on this device only (default: the GPU, if "
                        "there is one, then the CPU, each in a process of its own)")
    parser.add_argument("--image-encoder", default="open_clip:ViT-B-32@random")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu.json")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else SIZES
    if args.device:
        result = measure(args.device, sizes, args.image_encoder)
    else:  # one process per device: encoders are loaded once per process, on one device
        import torch

        result = {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                  "torch": torch.__version__, "devices": []}
        for device in ["cuda"] * torch.cuda.is_available() + ["cpu"]:
            out = args.out.with_suffix(f".{device}.json")
            subprocess.run([sys.executable, __file__, "--device", device, "--out", str(out),
                            "--image-encoder", args.image_encoder, *["--smoke"] * args.smoke],
                           check=True)
            result["devices"].append(json.loads(out.read_text()))
            out.unlink()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
