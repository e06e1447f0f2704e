"""The CPU variants of the bundled image model: their vectors agree with torch float32, ingest
chooses and records the fastest one on its first pictures, and a space built with one variant
is searched with another. The ONNX graph is exported once per test run into its model cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from kinsight.engine import InvalidInputError, SearchOptions, Store, encoders, load_encoder
from kinsight.indexers import model_cache
from kinsight.indexers.image_encoders import efficientnet_fingerprint, load_efficientnet_variant
from kinsight.indexers.image_query import search_by_image
from kinsight.indexers.image_variants import IMAGE_VARIANT_ENV, image_variant_here
from kinsight.indexers.ingest import IngestOptions, SpaceSource, ingest_file

from .test_images import COLOURS, clef, drawing

SPEC = "efficientnet:lite0"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Six pictures of several shapes and a list file."""
    root = tmp_path / "pics"
    root.mkdir()
    pictures = {name: drawing(colour, (64 + 24 * i, 48), seed=i)
                for i, (name, colour) in enumerate(COLOURS.items())}
    pictures["clef"] = clef(0)
    with (root / "list.jsonl").open("w", encoding="utf-8") as rows:
        for name, picture in pictures.items():
            picture.save(root / f"{name}.png")
            rows.write(json.dumps({"id": name, "image": f"{name}.png"}) + "\n")
    return root


def test_variants_agree_with_float32_and_share_its_info(folder: Path) -> None:
    from kinsight.indexers.image_files import open_image

    images = [open_image(p) for p in sorted(folder.glob("*.png"))]
    reference = load_efficientnet_variant("lite0", "torch-fp32")
    expected = reference.encode(images)
    for variant in ("onnx-fp32", "torch-bf16"):
        encoder = load_efficientnet_variant("lite0", variant)
        assert encoder.variant == variant and encoder.info == reference.info
        cosines = np.sum(encoder.encode(images) * expected, axis=1)
        assert cosines.min() >= (0.9999 if variant == "onnx-fp32" else 0.99), (variant, cosines)


@pytest.mark.slow  # times three variants and exports the graph: ~1 min on 2 cores
def test_ingest_records_the_fastest_passing_variant_and_search_uses_any(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(model_cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(IMAGE_VARIANT_ENV)
    monkeypatch.setattr(encoders, "_cache", {})
    fingerprint = efficientnet_fingerprint()
    options = IngestOptions(collection="pics", spaces=(SpaceSource("image", SPEC, ("image",),
                                                                   "image"),))
    with Store(":memory:") as store:
        assert ingest_file(store, folder / "list.jsonl", options, progress=False).written == 6
        choice = model_cache.read_choice(fingerprint)
        assert choice is not None and choice.sample_texts == 6
        timed = {r.variant: r for r in choice.results if r.docs_per_second is not None}
        assert {"torch-fp32", "onnx-fp32"} <= set(timed) and timed["onnx-fp32"].passed
        assert timed[choice.variant].docs_per_second == max(
            r.docs_per_second or 0.0 for r in timed.values() if r.passed)
        assert image_variant_here(fingerprint) == choice.variant
        assert load_encoder(SPEC).variant == choice.variant  # type: ignore[attr-defined]
        for variant in ("torch-fp32", "onnx-fp32"):  # whichever built it, the others search it
            monkeypatch.setitem(encoders._cache, SPEC, load_efficientnet_variant("lite0", variant))
            hits = search_by_image(store.collection("pics"), folder / "clef.png",
                                   SearchOptions(k=2))
            assert hits[0].id == "clef" and hits[0].score > 0.999


def test_pinned_image_variant_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(IMAGE_VARIANT_ENV, "onnx-int4")
    with pytest.raises(InvalidInputError, match="KINSIGHT_IMAGE_VARIANT"):
        image_variant_here(efficientnet_fingerprint())
