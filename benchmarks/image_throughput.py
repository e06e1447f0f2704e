"""Image throughput: the CPU variants of the bundled model, and kinsight's ingest end to end.

One run, same pictures (../shared/data/images: Tux Paint + emoji PNGs, spread over both sets).
On the CPU with the bundled EfficientNet-Lite0, first every forward variant side by side with
eager NCHW torch float32 (the forward of kinsight <= 0.x before channels-last): images/s, the
ratio, and the cosine of each picture's vector with eager float32's (min, mean; the gate is a
mean >= 0.99). The variants: torch channels-last fp32 (the previous default), torch bf16
autocast (AMX CPUs only), ONNX Runtime fp32 at batch 1, 8, 32, and ONNX Runtime int8 (static
QDQ quantisation calibrated on 32 pictures outside the measured ones). Then ingest end to end,
the variant kinsight chooses against torch fp32 pinned. Then, as before, two passes:

* raw: for each batch, decode + preprocess the pictures (timed as "decode"), then time only the
  model's forward pass on them ("forward"): the ceiling no pipeline can beat;
* kinsight: ``ingest_records`` into a fresh store (decode workers, encode, thumbnails, DuckDB
  writes, index build), timed end to end, with its own time per stage.

The headline is kinsight images/s ÷ raw-forward images/s. On the CPU the default encoder is the
bundled EfficientNet-Lite0; with a GPU, ViT-B-32 on random weights (speed only; target ≥ 5,000
images/s end to end).

    .venv/bin/python benchmarks/image_throughput.py --limit 200        # CPU: ~10 minutes
    .venv/bin/python benchmarks/image_throughput.py                     # all 2,820 pictures
    KINSIGHT_DEVICE=cuda .venv/bin/python benchmarks/image_throughput.py   # GPU: ViT-B-32
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import DATA, git_state, machine, print_table, save

from kinsight.engine import Encoder, Store, load_encoder
from kinsight.indexers import IngestOptions, ingest_records, model_cache
from kinsight.indexers.image_encoders import (
    TorchImageEncoder,
    efficientnet_features,
    load_efficientnet_variant,
)
from kinsight.indexers.image_files import open_image
from kinsight.indexers.image_variants import IMAGE_VARIANT_ENV, onnx_path
from kinsight.indexers.ingest import SpaceSource
from kinsight.indexers.model_prepare import prepare_image_if_unrecorded
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
    return records[::max(1, len(records) // limit)][:limit] if limit else records


def calibration_pixels(encoder: TorchImageEncoder, records: list[Record], measured: list[Record]
                       ) -> np.ndarray:
    """32 preprocessed pictures that are not among the measured ones, for int8 calibration."""
    ids = {r.id for r in measured}
    others = [r for r in records if r.id not in ids][::7][:32]
    return torch.stack([encoder.transform(open_image(r.fields["image"])) for r in others]).numpy()


def int8_forward(graph: Path, calibration: np.ndarray, folder: Path) -> Any:
    """ONNX Runtime int8: static QDQ quantisation (per-channel int8 weights, uint8 activations)."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"pixels": calibration[i:i + 8]}
                                 for i in range(0, len(calibration), 8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    prepared, int8 = folder / "prepared.onnx", folder / "int8.onnx"
    quant_pre_process(str(graph), str(prepared))
    quantize_static(str(prepared), str(int8), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    return lambda batch: torch.from_numpy(session.run(None, {"pixels": batch.numpy()})[0])


def timed_vectors(forward: Any, pixels: torch.Tensor, batch_size: int) -> tuple[float, np.ndarray]:
    """Seconds of ``forward`` over ``pixels`` in batches (after one warm-up batch), unit vectors."""
    with torch.inference_mode():
        forward(pixels[:batch_size])
        began = time.perf_counter()
        blocks = [forward(pixels[i:i + batch_size]).float().numpy()
                  for i in range(0, len(pixels), batch_size)]
        seconds = time.perf_counter() - began
    vectors = np.concatenate(blocks).astype(np.float64)
    return seconds, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def variants_pass(records: list[Record], every: list[Record]) -> list[dict[str, Any]]:
    """Each CPU forward variant over the same preprocessed pictures (see the module docstring)."""
    reference = load_efficientnet_variant("lite0", "torch-fp32")
    pixels = torch.stack([reference.transform(open_image(r.fields["image"])) for r in records])
    nchw = efficientnet_features()
    fingerprint = reference.info.fingerprint
    runs: list[tuple[str, Any, int]] = [("torch fp32 NCHW eager", nchw, 32),
                                        ("torch fp32 channels-last", reference.forward, 32)]
    if model_cache.has_amx():
        runs.append(("torch bf16 autocast", load_efficientnet_variant("lite0", "torch-bf16").forward, 32))
    onnx = load_efficientnet_variant("lite0", "onnx-fp32").forward
    runs += [(f"onnx fp32 batch {b}", onnx, b) for b in (1, 8, 32)]
    with tempfile.TemporaryDirectory() as folder:
        int8 = int8_forward(onnx_path(fingerprint), calibration_pixels(reference, every, records),
                            Path(folder))
        runs.append(("onnx int8 static", int8, 32))
        rows = []
        for name, forward, batch in runs:
            seconds, vectors = timed_vectors(forward, pixels, batch)
            rows.append({"variant": name, "batch": batch, "images_per_s": len(records) / seconds,
                         "vectors": vectors})
    base = rows[0]["vectors"]
    for row in rows:
        cosines = np.sum(row.pop("vectors") * base, axis=1)
        row.update(ratio=row["images_per_s"] / rows[0]["images_per_s"],
                   min_cosine=float(cosines.min()), mean_cosine=float(cosines.mean()))
    return rows


def ingest_variants(records: list[Record], root: Path) -> dict[str, dict[str, Any]]:
    """Ingest end to end with torch fp32 pinned (the previous default) and with the variant
    kinsight chooses here (prepared on the first pictures when none is recorded)."""
    os.environ.pop(IMAGE_VARIANT_ENV, None)
    prepare_image_if_unrecorded(CPU_ENCODER, (open_image(r.fields["image"]) for r in records),
                                progress=False)
    chosen = load_efficientnet_variant("lite0", None)
    out = {}
    for encoder in (load_efficientnet_variant("lite0", "torch-fp32"), chosen):
        out[encoder.variant] = kinsight_pass(CPU_ENCODER, records, encoder.batch_size, root,
                                             encoder=encoder)
    return out


def raw_pass(encoder: TorchImageEncoder, records: list[Record], batch_size: int) -> dict[str, float]:
    """Decode each batch, then time the bare forward pass on it (synchronised on CUDA)."""
    decode = forward = 0.0
    for start in range(0, len(records), batch_size):
        began = time.perf_counter()
        pixels = torch.stack([encoder.transform(open_image(r.fields["image"],
                                                           min_side=encoder.pixels.size))
                              for r in records[start:start + batch_size]])
        decoded = time.perf_counter()
        encoder.encode_pixels(pixels)  # returns numpy: the GPU work has finished
        forward += time.perf_counter() - decoded
        decode += decoded - began
    return {"decode": decode, "forward": forward}


def kinsight_pass(spec: str, records: list[Record], batch_size: int, root: Path, *,
                  encoder: Encoder | None = None) -> dict[str, Any]:
    options = IngestOptions(collection="pictures", batch_size=batch_size,
                            spaces=(SpaceSource("image", spec, ("image",), "image"),))
    with tempfile.TemporaryDirectory() as folder, Store(folder) as store:
        began = time.perf_counter()
        report = ingest_records(store, records, options, progress=False, image_root=root,
                                encoder=encoder)
        wall = time.perf_counter() - began
    if report.written != len(records):
        raise SystemExit(f"kinsight wrote {report.written} of {len(records)} pictures: "
                         f"{report.problems[:3]}")
    return {"wall": wall, "stages": report.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None,
                        help="N pictures spread over both sets (default all)")
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
    every = picture_records(args.data, None)
    records = picture_records(args.data, args.limit)
    n = len(records)
    for record in records:  # into the page cache, so neither pass pays for the first disk read
        Path(record.fields["image"]).read_bytes()
    results: dict[str, Any] = {}
    if spec == CPU_ENCODER and encoder.device == "cpu":
        results["variants"] = variants = variants_pass(records, every)
        print_table(f"{n} pictures, {spec} forward variants on the CPU (cosine vs eager fp32)",
                    ["variant", "batch", "images/s", "x eager NCHW", "min cos", "mean cos"],
                    [[v["variant"], v["batch"], f"{v['images_per_s']:.1f}", f"{v['ratio']:.2f}",
                      f"{v['min_cosine']:.4f}", f"{v['mean_cosine']:.4f}"] for v in variants])
        results["ingest"] = ingest = ingest_variants(records, args.data)
        base = n / ingest["torch-fp32"]["wall"]
        print_table(f"{n} pictures, kinsight ingest end to end by variant",
                    ["variant", "seconds", "images/s", "x torch fp32"],
                    [[name, f"{run['wall']:.1f}", f"{n / run['wall']:.1f}",
                      f"{n / run['wall'] / base:.2f}"] for name, run in ingest.items()])
        encoder = load_efficientnet_variant("lite0", None)  # the passes below: the chosen one
    encoder.encode_pixels(torch.zeros(2, 3, encoder.pixels.size, encoder.pixels.size))  # warm-up

    raw = raw_pass(encoder, records, batch_size)
    # The encoder loaded here, not by spec: one loaded before the variant was first chosen
    # (above) would stay the variant it loaded as.
    ours = kinsight_pass(spec, records, batch_size, args.data, encoder=encoder)
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
    print_table(f"{n} pictures, {spec} on {encoder.device} ({encoder.variant}), batch {batch_size}",
                ["pass", "seconds", "images/s", "÷ raw forward"], rows)
    print(f"raw decode + preprocess (1 thread): {raw['decode']:.1f}s = "
          f"{n / raw['decode']:.1f} images/s")
    print("kinsight stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in ours["stages"].items()))
    path = save("image_throughput", {
        "pictures": n, "encoder": spec, "device": encoder.device, "batch_size": batch_size,
        "raw": raw, "kinsight": ours, "ratio": ours_rate / forward_rate,
        "images_per_s": {"raw_forward": forward_rate, "kinsight": ours_rate}, **results,
        "machine": machine(), "git": git_state()})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
