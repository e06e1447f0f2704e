"""Image throughput: kinsight's ingest end to end vs the raw model forward on the same pictures.

One run, same pictures (../shared/data/images: Tux Paint + emoji PNGs), same encoder, same batch
size, measured in two passes:

* raw: for each batch, decode + preprocess the pictures (timed as "decode"), then time only the
  model's forward pass on them ("forward"): the ceiling no pipeline can beat;
* kinsight: ``ingest_records`` into a fresh store (decode workers, encode, thumbnails, DuckDB
  writes, index build), timed end to end, with its own time per stage.

The headline is kinsight images/s ÷ raw-forward images/s. On the CPU the default encoder is the
bundled EfficientNet-Lite0; with a GPU, ViT-B-32 on random weights (speed only; target ≥ 5,000
images/s end to end).

    .venv/bin/python benchmarks/image_throughput.py --limit 400        # CPU: a few minutes
    .venv/bin/python benchmarks/image_throughput.py                     # all 2,820 pictures
    KINSIGHT_DEVICE=cuda .venv/bin/python benchmarks/image_throughput.py   # GPU: ViT-B-32
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import DATA, git_state, machine, print_table, save

from kinsight.engine import Store, load_encoder
from kinsight.indexers import IngestOptions, ingest_records
from kinsight.indexers.image_encoders import TorchImageEncoder
from kinsight.indexers.image_files import open_image
from kinsight.indexers.ingest import SpaceSource
from kinsight.indexers.records import Record

IMAGES = DATA / "images"
CPU_ENCODER = "efficientnet:lite0"
GPU_ENCODER = "open_clip:ViT-B-32@random"


def picture_records(root: Path, limit: int | None) -> list[Record]:
    """Every captioned picture of both sets (ids prefixed by set), image paths made absolute."""
    records = []
    for name in ("tuxpaint", "emoji"):
        folder = root / name
        with (folder / "captions.jsonl").open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                row = json.loads(line)
                fields = {"image": str(folder / row["image"]), "caption": row["caption"],
                          "category": row["category"]}
                records.append(Record(f"{name}/{row['id']}", fields, str(folder), number))
    return records[:limit]


def raw_pass(encoder: TorchImageEncoder, records: list[Record], batch_size: int) -> dict[str, float]:
    """Decode each batch, then time the bare forward pass on it (synchronised on CUDA)."""
    decode = forward = 0.0
    for start in range(0, len(records), batch_size):
        began = time.perf_counter()
        pixels = torch.stack([encoder.transform(open_image(r.fields["image"],
                                                           min_side=encoder.pixels.resize))
                              for r in records[start:start + batch_size]])
        decoded = time.perf_counter()
        encoder.encode_pixels(pixels)  # returns numpy: the GPU work has finished
        forward += time.perf_counter() - decoded
        decode += decoded - began
    return {"decode": decode, "forward": forward}


def kinsight_pass(spec: str, records: list[Record], batch_size: int, root: Path) -> dict[str, Any]:
    options = IngestOptions(collection="pictures", batch_size=batch_size,
                            spaces=(SpaceSource("image", spec, ("image",), "image"),))
    with tempfile.TemporaryDirectory() as folder, Store(folder) as store:
        began = time.perf_counter()
        report = ingest_records(store, records, options, progress=False, image_root=root)
        wall = time.perf_counter() - began
    if report.written != len(records):
        raise SystemExit(f"kinsight wrote {report.written} of {len(records)} pictures: "
                         f"{report.problems[:3]}")
    return {"wall": wall, "stages": report.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="first N pictures (default all)")
    parser.add_argument("--data", type=Path, default=IMAGES, help=f"the images folder ({IMAGES})")
    parser.add_argument("--encoder", default=None,
                        help=f"image encoder spec (default {CPU_ENCODER}; {GPU_ENCODER} on CUDA)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="pictures per batch (default: the encoder's own)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    spec = args.encoder or (GPU_ENCODER if torch.cuda.is_available() else CPU_ENCODER)
    encoder = load_encoder(spec)
    if not isinstance(encoder, TorchImageEncoder):
        raise SystemExit(f"{spec} is not a torch image encoder")
    batch_size = args.batch_size or encoder.batch_size
    records = picture_records(args.data, args.limit)
    n = len(records)
    encoder.encode_pixels(torch.zeros(2, 3, encoder.pixels.size, encoder.pixels.size))  # warm-up
    for record in records:  # into the page cache, so neither pass pays for the first disk read
        Path(record.fields["image"]).read_bytes()

    raw = raw_pass(encoder, records, batch_size)
    ours = kinsight_pass(spec, records, batch_size, args.data)
    forward_rate = n / raw["forward"]
    ours_rate = n / ours["wall"]
    rows = [
        ["raw forward only", f"{raw['forward']:.1f}", f"{forward_rate:.1f}", "1.00"],
        ["raw decode + forward", f"{raw['decode'] + raw['forward']:.1f}",
         f"{n / (raw['decode'] + raw['forward']):.1f}",
         f"{raw['forward'] / (raw['decode'] + raw['forward']):.2f}"],
        ["kinsight ingest, end to end", f"{ours['wall']:.1f}", f"{ours_rate:.1f}",
         f"{ours_rate / forward_rate:.2f}"],
    ]
    print_table(f"{n} pictures, {spec} on {encoder.device}, batch {batch_size}",
                ["pass", "seconds", "images/s", "÷ raw forward"], rows)
    print(f"raw decode + preprocess (1 thread): {raw['decode']:.1f}s = "
          f"{n / raw['decode']:.1f} images/s")
    print("kinsight stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in ours["stages"].items()))
    path = save("image_throughput", {
        "pictures": n, "encoder": spec, "device": encoder.device, "batch_size": batch_size,
        "raw": raw, "kinsight": ours, "ratio": ours_rate / forward_rate,
        "images_per_s": {"raw_forward": forward_rate, "kinsight": ours_rate},
        "machine": machine(), "git": git_state()})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
