"""The captioned pictures of ../shared/data/images (tuxpaint + emoji) and their fixed split.

Items are split into train / validation / test by caption group: pictures whose captions are
the same (after lower-casing and trimming) always land in the same split, so a test caption has
never been seen in training. The split is a hash of the group, not a random draw: it is the same
on every machine and does not move when pictures are added. Figures are reported on ``test``
only; ``train`` fits adapters and probes, ``validation`` stops their training.

    from image_data import image_items, mismatch_rows
    train = image_items("train")
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from _common import DATA

__all__ = ["DATASETS", "ImageItem", "Split", "image_items", "mismatch_rows", "split_of"]

Split = Literal["train", "validation", "test"]
DATASETS = ("tuxpaint", "emoji")
SHARES = (("train", 70), ("validation", 15), ("test", 15))  # percent of caption groups


@dataclass(frozen=True)
class ImageItem:
    id: str  # "DATASET/ID"
    image: Path  # absolute path of the picture
    caption: str
    category: str  # "DATASET/CATEGORY": tuxpaint and emoji categories never mix
    subcategory: str
    keywords: tuple[str, ...]
    split: Split


def split_of(dataset: str, caption: str) -> Split:
    group = f"{dataset}\t{' '.join(caption.lower().split()).rstrip('.')}"
    bucket = int(hashlib.sha256(group.encode()).hexdigest(), 16) % 100
    for name, share in SHARES:
        if bucket < share:
            return name  # type: ignore[return-value]
        bucket -= share
    raise AssertionError("shares must add up to 100")


def image_items(split: Split | None = None, root: Path | None = None) -> list[ImageItem]:
    """Every picture (or those of one split), tuxpaint first, in file order."""
    base = root or DATA / "images"
    items = []
    for dataset in DATASETS:
        folder = base / dataset
        for line in (folder / "captions.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            item = ImageItem(
                id=f"{dataset}/{row['id']}", image=(folder / row["image"]).resolve(),
                caption=row["caption"], category=f"{dataset}/{row['category']}",
                subcategory=f"{dataset}/{row['subcategory']}",
                keywords=tuple(row.get("keywords") or ()), split=split_of(dataset, row["caption"]))
            if split is None or item.split == split:
                items.append(item)
    return items


def mismatch_rows(split: Split, root: Path | None = None) -> list[dict[str, object]]:
    """Rows of mismatch.jsonl for pictures of ``split``: item id (DATASET/ID), caption, label
    (1 = the true caption), neg_type (none | random | hard)."""
    base = root or DATA / "images"
    wanted = {i.id for i in image_items(split, base)}
    rows = []
    for dataset in DATASETS:
        for line in (base / dataset / "mismatch.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            item_id = f"{dataset}/{row['image_id']}"
            if item_id in wanted:
                rows.append({"id": item_id, "caption": row["caption"], "label": int(row["label"]),
                             "neg_type": row["neg_type"]})
    return rows
