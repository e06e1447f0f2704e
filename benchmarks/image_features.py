"""Base features of every captioned picture and its caption, computed once and cached.

Encoding the 2,820 pictures with EfficientNet-Lite0 takes ~10 minutes on a loaded 2-core CPU,
so the cross-modal benchmark and the default-adapter script share one cache per encoder in
benchmarks/results/ (``features-<encoder>-<fingerprint>.npz``: ids and float32 vectors of every
item of ``image_data.image_items()``, in that order). A changed model (another fingerprint) or
picture list gets a fresh file.

    .venv/bin/python benchmarks/image_features.py     # fill the caches of the default encoders
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from _common import RESULTS
from image_data import ImageItem, image_items
from tqdm import tqdm

from kinsight.engine import DEFAULT_TEXT_ENCODER, Encoder, load_encoder

__all__ = ["DEFAULT_IMAGE_ENCODER", "encode_images", "features", "picture_features", "split_features"]

DEFAULT_IMAGE_ENCODER = "efficientnet:lite0"
_BLOCK = 64


def features(spec: str, items: Sequence[ImageItem] | None = None) -> np.ndarray:
    """Vectors ``(len(items), dim)`` float32 of the items (default: all): pictures for an image
    encoder, captions for a text encoder; read from the cache, filled on first use."""
    wanted = list(items if items is not None else image_items())
    everything = image_items()
    encoder = load_encoder(spec)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", spec).strip("-")
    path = RESULTS / f"features-{slug}-{encoder.info.fingerprint}.npz"
    ids = [item.id for item in everything]
    position = {item_id: n for n, item_id in enumerate(ids)}
    cached = np.load(path) if path.exists() else None
    if cached is not None and list(cached["ids"]) == ids:
        vectors = cached["vectors"]
    else:
        vectors = np.concatenate([_encode(encoder, everything[start:start + _BLOCK])
                                  for start in tqdm(range(0, len(everything), _BLOCK),
                                                    desc=f"encoding with {spec}", unit="block")])
        RESULTS.mkdir(parents=True, exist_ok=True)
        np.savez(path, ids=np.array(ids), vectors=vectors)
    return np.asarray(vectors[[position[i.id] for i in wanted]], dtype=np.float32)


def _encode(encoder: object, block: Sequence[ImageItem]) -> np.ndarray:
    from kinsight.indexers.image_files import open_image

    if encoder.info.modality == "image":  # type: ignore[attr-defined]
        return encoder.encode([open_image(i.image) for i in block])  # type: ignore[attr-defined,no-any-return]
    return encoder.encode([i.caption for i in block])  # type: ignore[attr-defined,no-any-return]


def picture_features(items: Sequence[ImageItem] | None = None) -> tuple[list[str], np.ndarray]:
    """``(ids, unit vectors)`` of the pictures (default: all) by the default image encoder."""
    wanted = list(items if items is not None else image_items())
    vectors = features(DEFAULT_IMAGE_ENCODER, wanted)
    return [i.id for i in wanted], vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def encode_images(paths: Sequence[Path], *, encoder: Encoder | None = None, desc: str = "encode"
                  ) -> np.ndarray:
    """Unit vectors ``(len(paths), dim)`` of picture files that are not in the cache (augmented
    copies, say), in order, by ``encoder`` (default: the default image encoder)."""
    from kinsight.indexers.image_files import open_image

    encoder = encoder or load_encoder(DEFAULT_IMAGE_ENCODER)
    blocks = [np.zeros((0, encoder.info.dim), np.float32)]
    for start in tqdm(range(0, len(paths), _BLOCK), desc=desc, unit=" batches"):
        vectors = encoder.encode([open_image(p) for p in paths[start:start + _BLOCK]])
        blocks.append(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return np.concatenate(blocks).astype(np.float32)


def split_features(image_spec: str, text_spec: str, split: str
                   ) -> tuple[list[ImageItem], np.ndarray, np.ndarray]:
    """The items of one split with their picture and caption features, row for row."""
    items = image_items(split)  # type: ignore[arg-type]
    return items, features(image_spec, items), features(text_spec, items)


if __name__ == "__main__":
    for spec in (DEFAULT_TEXT_ENCODER, DEFAULT_IMAGE_ENCODER):
        print(spec, features(spec).shape)
