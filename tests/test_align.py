"""Cross-modal search (text → pictures, picture → captions, an item's caption → pictures) and
adapters: training on paired vectors (InfoNCE, ridge, early stopping), the artifact, the
``adapter:`` encoders, ``kinsight align`` and the shipped default adapter.

Cross-modal search runs on a 2-layer open_clip model on random weights (its towers share one
space); training runs on synthetic pairs with a known linear relation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("open_clip")

from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.engine import (
    ById,
    EncoderInfo,
    InvalidInputError,
    Item,
    SearchOptions,
    Store,
    encoders,
    load_encoder,
)
from kinsight.engine.errors import AlreadyExistsError, EncoderMismatchError
from kinsight.indexers.adapters import Adapter, AdapterSide, load_adapter, save_adapter
from kinsight.indexers.align import AlignOptions, align_collection, cross_modal_recall, train_adapter
from kinsight.indexers.image_files import open_image
from kinsight.indexers.image_query import search_by_image
from kinsight.indexers.ingest import IngestOptions, SpaceSource, ingest_file

from .test_images import COLOURS, TINY, drawing

TINY_TEXT = TINY + ":text"
FAKE_TEXT = "fake:dim=32"


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    """A folder of five coloured pictures and list.jsonl; each but 'black' has a caption."""
    root = tmp_path / "pics"
    root.mkdir()
    with (root / "list.jsonl").open("w") as listing:
        for seed, (name, colour) in enumerate(COLOURS.items(), start=1):
            drawing(colour, seed=seed).save(root / f"{name}.png")
            caption = None if name == "black" else f"a {name} square"
            listing.write(json.dumps({"id": name, "image": f"{name}.png", "caption": caption}) + "\n")
    return root


def clip_spaces(image: str = TINY, text: str = TINY_TEXT) -> IngestOptions:
    return IngestOptions(collection="pics", batch_size=2, spaces=(
        SpaceSource("image", image, ("image",), "image"), SpaceSource("caption", text, ("caption",))))


# -- cross-modal search ---------------------------------------------------------------------------
def test_text_searches_pictures_and_a_picture_searches_captions(pictures: Path) -> None:
    text_tower, image_tower = load_encoder(TINY_TEXT), load_encoder(TINY)
    assert text_tower.info.partner == image_tower.info.spec
    assert image_tower.info.partner == text_tower.info.spec
    with Store(":memory:") as store:
        ingest_file(store, pictures / "list.jsonl", clip_spaces(), progress=False)
        pics = store.collection("pics")
        hits = pics.search("a red square", space="image", k=5)
        query = text_tower.encode(["a red square"])[0]
        expected = {i: float(pics.item_vectors("image", i)[0] @ query) for i in
                    ("red", "green", "blue", "yellow", "black")}
        assert [h.id for h in hits] == sorted(expected, key=lambda i: -expected[i])
        assert hits[0].score == pytest.approx(max(expected.values()), abs=1e-5)

        captions = search_by_image(pics, pictures / "red.png", SearchOptions(space="caption", k=4))
        picture = image_tower.encode([open_image(pictures / "red.png")])[0]
        best = max(("red", "green", "blue", "yellow"),
                   key=lambda i: float(pics.item_vectors("caption", i)[0] @ picture))
        assert captions[0].id == best and len(captions) == 4  # 'black' has no caption

        # An item's caption as the query among the pictures: its own item is left out.
        by_caption = pics.search(ById("red", space="caption"), space="image", k=4)
        caption_vector = pics.item_vectors("caption", "red")[0]
        assert "red" not in [h.id for h in by_caption]
        assert [h.id for h in by_caption] == [h.id for h in pics.search(
            caption_vector, space="image", k=5) if h.id != "red"][:4]


def test_cross_modal_queries_need_a_partner_in_the_same_space(pictures: Path) -> None:
    options = IngestOptions(collection="pics", batch_size=2, spaces=(
        SpaceSource("image", TINY, ("image",), "image"), SpaceSource("caption", FAKE_TEXT, ("caption",))))
    with Store(":memory:") as store:
        ingest_file(store, pictures / "list.jsonl", options, progress=False)
        pics = store.collection("pics")
        with pytest.raises(InvalidInputError, match="has no image encoder"):
            search_by_image(pics, pictures / "red.png", SearchOptions(space="caption"))
        with pytest.raises(EncoderMismatchError):  # open_clip's image space vs fake captions
            pics.search(ById("red", space="caption"), space="image")
        # The tiny CLIP's text tower is a partner of the image space, not of the fake captions.
        assert pics.search("a red square", space="image", k=1)


def test_cli_and_http_search_an_image_space_by_text(pictures: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from kinsight.api.http import Settings, create_app

    store_dir = tmp_path / "store"
    with Store(store_dir) as store:
        ingest_file(store, pictures / "list.jsonl", clip_spaces(), progress=False)
        expected = [h.id for h in store.collection("pics").search("a red square", space="image")]
        with TestClient(create_app(Settings(api_key=None), store=store)) as client:
            response = client.post("/collections/pics/search",
                                   json={"text": "a red square", "space": "image"})
            assert response.status_code == 200, response.text
            assert [h["id"] for h in response.json()["hits"]] == expected
            by_caption = client.post("/collections/pics/search",
                                     json={"id": "red", "id_space": "caption", "space": "image"})
            assert by_caption.status_code == 200 and "red" not in str(
                [h["id"] for h in by_caption.json()["hits"]])
            upload = {"image": ("q.png", (pictures / "red.png").read_bytes(), "image/png")}
            captions = client.post("/collections/pics/search/image", files=upload,
                                   data={"space": "caption", "k": "2"})
            assert captions.status_code == 200 and len(captions.json()["hits"]) == 2
            bad = client.post("/collections/pics/search", json={"text": "x", "id_space": "caption"})
            assert bad.status_code == 422
    runner = CliRunner()
    result = runner.invoke(app, ["search", "a red square", "-c", "pics", "--store", str(store_dir),
                                 "--space", "image", "--json"])
    assert result.exit_code == 0, result.output
    assert [h["id"] for h in json.loads(result.stdout)] == expected
    result = runner.invoke(app, ["search", "--image", str(pictures / "red.png"), "-c", "pics",
                                 "--store", str(store_dir), "--space", "caption", "--json"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == 4
    result = runner.invoke(app, ["search", "--like", "red", "--like-space", "caption", "-c", "pics",
                                 "--store", str(store_dir), "--space", "image", "--json"])
    assert result.exit_code == 0 and "red" not in [h["id"] for h in json.loads(result.stdout)]


# -- training ---------------------------------------------------------------------------------------
SIDES = (AdapterSide("image", "vectors:image", "image-print", 24),
         AdapterSide("text", "vectors:text", "text-print", 12))


def paired(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pictures and captions that are two noisy linear views of one hidden 8-d vector."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(n, 8))
    mixing = np.random.default_rng(99)
    views = [hidden @ mixing.normal(size=(8, d)) + 0.05 * rng.normal(size=(n, d)) for d in (24, 12)]
    return tuple(v / np.linalg.norm(v, axis=1, keepdims=True) for v in views)  # type: ignore[return-value]


def test_infonce_recovers_a_linear_relation_and_stops_early() -> None:
    options = AlignOptions(dim=8, batch_size=64, max_epochs=200, patience=5, learning_rate=1e-2)
    report = train_adapter("synthetic", SIDES, paired(256), paired(64, seed=1), options)
    assert report.before.text_to_image[1] < 0.2
    assert report.after.text_to_image[1] > 0.8 and report.after.image_to_text[1] > 0.8
    assert report.stopped_epoch < options.max_epochs  # recall reached its best and stopped there
    assert report.stopped_epoch - report.best_epoch == options.patience
    assert [e.epoch for e in report.curve] == list(range(1, report.stopped_epoch + 1))
    # The kept adapter is the best epoch's, with the temperature learned by then.
    assert report.adapter.config.temperature == report.curve[report.best_epoch - 1].temperature
    test = paired(64, seed=2)
    adapter = report.adapter
    held_out = cross_modal_recall(adapter.project("image", test[0]), adapter.project("text", test[1]),
                                  np.arange(64))
    assert held_out.text_to_image[5] > 0.9


def test_ridge_baseline_maps_pictures_onto_the_text_space() -> None:
    report = train_adapter("ridge", SIDES, paired(256), paired(64, seed=1),
                           AlignOptions(method="ridge"))
    assert report.adapter.config.dim == 12 and not report.curve
    assert report.after.text_to_image[1] > 0.8 > report.before.text_to_image[5]


def test_recall_counts_repeated_captions_once() -> None:
    image = np.array([[1, 0, 0], [0, 0.6, 0.8], [0, 0, 1]], dtype=np.float32)
    text = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32)  # two share a caption
    recall = cross_modal_recall(image, text, np.array([0, 0, 1]), ks=(1,))
    assert recall.text_to_image[1] == 1.0  # 2 distinct captions, each finds one of its pictures
    assert recall.image_to_text[1] == pytest.approx(2 / 3)  # picture 1 is closer to the other caption


# -- the artifact and the encoders --------------------------------------------------------------------
def clip_and_fake_adapter(name: str, seed: int = 0) -> Adapter:
    image, text = load_encoder(TINY).info, load_encoder(FAKE_TEXT).info
    rng = np.random.default_rng(seed)
    return Adapter.create(name, AdapterSide.of(image), AdapterSide.of(text),
                          {"image": rng.normal(size=image.dim) * 0.01, "text": np.zeros(text.dim)},
                          {"image": rng.normal(size=(image.dim, 16)),
                           "text": rng.normal(size=(text.dim, 16))},
                          method="random", temperature=1.0)


def test_artifact_round_trip_gives_identical_vectors(tmp_path: Path) -> None:
    adapter = clip_and_fake_adapter("roundtrip")
    folder = save_adapter(adapter, tmp_path)
    loaded = load_adapter(str(folder))
    assert loaded.config == adapter.config
    base = np.random.default_rng(3).normal(size=(5, 32)).astype(np.float32)
    for side in ("image", "text"):
        np.testing.assert_array_equal(loaded.project(side, base), adapter.project(side, base))
    with pytest.raises(AlreadyExistsError):
        save_adapter(adapter, tmp_path)
    weights = dict(np.load(folder / "weights.npz"))
    weights["text_matrix"][0, 0] += 1
    np.savez(folder / "weights.npz", **weights)
    with pytest.raises(EncoderMismatchError, match="do not match the fingerprint"):
        load_adapter(str(folder))


def test_an_adapter_refuses_a_base_encoder_with_other_weights(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KINSIGHT_ADAPTERS", str(tmp_path))
    adapter = clip_and_fake_adapter("wrong-base")
    side = AdapterSide("text", FAKE_TEXT, "fake-v0-other-weights", 32)
    save_adapter(Adapter.create("wrong-base", adapter.config.image, side, adapter.means,
                                adapter.matrices, method="random", temperature=1.0), tmp_path)
    encoder = load_encoder("adapter:wrong-base:text")
    with pytest.raises(EncoderMismatchError, match="fake-v0-other-weights"):
        encoder.encode(["a red square"])
    with pytest.raises(InvalidInputError, match="adapter:NAME:image"):
        load_encoder("adapter:wrong-base")


def test_adapter_spaces_are_built_and_queried_across_modalities(pictures: Path, tmp_path: Path,
                                                                monkeypatch) -> None:
    monkeypatch.setenv("KINSIGHT_ADAPTERS", str(tmp_path))
    adapter = clip_and_fake_adapter("end-to-end")
    save_adapter(adapter, tmp_path)
    options = clip_spaces("adapter:end-to-end:image", "adapter:end-to-end:text")
    with Store(":memory:") as store:
        ingest_file(store, pictures / "list.jsonl", options, progress=False)
        pics = store.collection("pics")
        space = pics.space("image")
        assert (space.dim, space.encoder.fingerprint) == (16, adapter.config.fingerprint)
        stored = pics.item_vectors("image", "red")[0]
        base = load_encoder(TINY).encode([open_image(pictures / "red.png")])
        np.testing.assert_allclose(stored, adapter.project("image", base)[0], atol=1e-5)
        query = adapter.project("text", load_encoder(FAKE_TEXT).encode(["a red square"]))[0]
        hits = pics.search("a red square", space="image", k=5)
        assert hits[0].score == pytest.approx(max(float(pics.item_vectors("image", i)[0] @ query)
                                                  for i in [h.id for h in hits]), abs=1e-5)
        assert search_by_image(pics, pictures / "red.png", SearchOptions(space="caption"))


def test_a_retrained_adapter_is_refused_saying_its_fingerprint_changed(pictures: Path,
                                                                       tmp_path: Path,
                                                                       monkeypatch) -> None:
    monkeypatch.setenv("KINSIGHT_ADAPTERS", str(tmp_path))
    save_adapter(clip_and_fake_adapter("retrained"), tmp_path)
    options = clip_spaces("adapter:retrained:image", "adapter:retrained:text")
    with Store(":memory:") as store:
        ingest_file(store, pictures / "list.jsonl", options, progress=False)
        save_adapter(clip_and_fake_adapter("retrained", seed=1), tmp_path, replace=True)
        monkeypatch.setattr(encoders, "_cache", {})  # as a new process would load it
        with pytest.raises(EncoderMismatchError) as refused:
            store.collection("pics").search("a red square", space="image", k=2)
    message = str(refused.value)
    assert "adapter:retrained:image" in message and "now loads fingerprint" in message
    assert "adapter:retrained:text" not in message  # not blamed on the text side


def synthetic_pairs(store: Store, n: int = 200) -> None:
    """A collection whose image and caption spaces hold paired synthetic vectors."""
    image_info = EncoderInfo("vectors:image", "image", 24, "image-print")
    text_info = EncoderInfo("vectors:text", "text", 12, "text-print")
    pairs = store.create_collection("pairs")
    pairs.ensure_space("image", image_info)
    pairs.ensure_space("caption", text_info, source_fields=["caption"])
    image, text = paired(n)
    pairs.upsert(Item(id=f"p{i}", fields={"caption": f"thing {i}", "split": "val" if i % 5 == 0
                                          else "train"},
                      vectors={"image": image[i], "caption": text[i]}) for i in range(n))


def test_align_collection_holds_out_by_filter_or_share() -> None:
    with Store(":memory:") as store:
        synthetic_pairs(store)
        pairs = store.collection("pairs")
        by_filter = align_collection(pairs, "image", "caption", "f", AlignOptions(
            method="ridge", validation_where="split = 'val'"))
        assert (by_filter.train_items, by_filter.validation_items) == (160, 40)
        by_share = align_collection(pairs, "caption", "image", "s", AlignOptions(
            method="ridge", validation=0.25))
        assert by_share.validation_items == 50 and by_share.after.text_to_image[5] > 0.9
        assert by_share.adapter.config.image.base_fingerprint == "image-print"
        with pytest.raises(InvalidInputError, match="an image space and a text space"):
            align_collection(pairs, "caption", "caption", "x", AlignOptions())


def test_cli_align_trains_saves_and_reports(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    with Store(store_dir) as store:
        synthetic_pairs(store)
    runner = CliRunner()
    args = ["align", "-c", "pairs", "--store", str(store_dir), "--from", "image", "--to",
            "caption", "--name", "cli", "--folder", str(tmp_path / "adapters")]
    result = runner.invoke(app, [*args, "--dim", "8", "--patience", "3", "--max-epochs", "30", "--json",
                                 "--plot", str(tmp_path / "curve.svg")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["after"]["text_to_image@10"] > report["before"]["text_to_image@10"] + 0.3
    assert report["specs"] == ["adapter:cli:image", "adapter:cli:text"] and report["curve"]
    assert (tmp_path / "adapters" / "cli" / "adapter.json").exists()
    assert (tmp_path / "curve.svg").read_text().lstrip().startswith("<?xml")
    again = runner.invoke(app, [*args, "--max-epochs", "30"])  # the name is taken: no training
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert "align cli" not in again.stderr  # refused before the training bar started
    replaced = runner.invoke(app, [*args, "--method", "ridge", "--replace"])
    assert replaced.exit_code == 0 and "fingerprint adapter-" in " ".join(replaced.stdout.split())


# -- the shipped default adapter --------------------------------------------------------------------
def test_the_shipped_default_adapter_embeds_texts_and_pictures(pictures: Path) -> None:
    text = load_encoder("adapter:default:text")
    vectors = text.encode(["a frog", "a red car"])
    assert vectors.shape == (2, text.info.dim) and text.info.dim == 256
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    image = load_encoder(text.info.partner or "")
    assert image.info.fingerprint == text.info.fingerprint and image.info.modality == "image"
    assert image.encode([open_image(pictures / "red.png")]).shape == (1, 256)
