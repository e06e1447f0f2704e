"""EfficientNet-Lite0 features of the captioned pictures, computed once and cached.

Encoding all 2,820 pictures on a loaded 2-core CPU takes ~10 minutes, so the benchmarks that need
image vectors (label mismatch, near-duplicates) read them from
``benchmarks/results/mismatch-efficientnet-lite0.npz`` (ids and unit vectors), computed on first use.

    KINSIGHT_DATA=/work/shared/data nice -n 10 .venv/bin/python benchmarks/image_features.py
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from _common import RESULTS
from image_data import ImageItem, image_items
from tqdm import tqdm

from kinsight.engine import Encoder

__all__ = ["ENCODER", "encode_images", "picture_features"]

ENCODER = "efficientnet:lite0"
CACHE = RESULTS / "mismatch-efficientnet-lite0.npz"
BATCH = 64


def encode_images(paths: Sequence[Path], *, encoder: Encoder | None = None, desc: str = "encode"
                  ) -> np.ndarray:
    """Unit vectors ``(len(paths), dim)`` of image files, in order, by ``encoder`` (default:
    EfficientNet-Lite0)."""
    from kinsight.engine import load_encoder
    from kinsight.indexers.image_files import open_image

    encoder = encoder or load_encoder(ENCODER)
    blocks = [np.zeros((0, encoder.info.dim), np.float32)]
    for start in tqdm(range(0, len(paths), BATCH), desc=desc, unit=" batches"):
        vectors = encoder.encode([open_image(p) for p in paths[start:start + BATCH]])
        blocks.append(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return np.concatenate(blocks).astype(np.float32)


def picture_features(items: Sequence[ImageItem] | None = None) -> tuple[list[str], np.ndarray]:
    """``(ids, vectors)`` of ``items`` (default: every picture), from the cache when it has them."""
    items = list(items) if items is not None else image_items()
    cached: dict[str, np.ndarray] = {}
    if CACHE.exists():
        with np.load(CACHE, allow_pickle=False) as data:
            cached = dict(zip(data["ids"].tolist(), data["vectors"], strict=True))
    missing = [i for i in items if i.id not in cached]
    if missing:
        vectors = encode_images([i.image for i in missing], desc="EfficientNet features")
        cached.update(zip([i.id for i in missing], vectors, strict=True))
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        ids = sorted(cached)
        np.savez(CACHE, ids=np.array(ids), vectors=np.stack([cached[i] for i in ids]))
    return [i.id for i in items], np.stack([cached[i.id] for i in items]).astype(np.float32)


if __name__ == "__main__":
    found_ids, found = picture_features()
    print(f"{len(found_ids)} pictures, features {found.shape} in {CACHE}")
