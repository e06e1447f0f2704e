"""Pictures: loading (orientation, transparency, animation, bad files), the image encoders, image
ingest with several spaces, thumbnails, and search by picture from Python, the CLI and HTTP.

Pictures are made with Pillow in tmp_path. Most tests use a 2-layer open_clip model on random
weights (fast); one uses the bundled EfficientNet-Lite0 on a few pictures."""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("open_clip")

import torch
from PIL import Image
from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.engine import ById, InvalidInputError, SearchOptions, Store, load_encoder
from kinsight.engine.errors import EncoderMismatchError, ImageFileError
from kinsight.indexers.image_files import open_image
from kinsight.indexers.image_query import search_by_image
from kinsight.indexers.ingest import IngestOptions, SpaceSource, ingest_file
from kinsight.indexers.open_clip_encoder import parse_spec

TINY = "open_clip:kinsight-tiny@random"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220),
           "yellow": (240, 220, 20), "black": (10, 10, 10)}


def drawing(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48), seed: int = 0
            ) -> Image.Image:
    """A picture with structure (a coloured block on noise) so models tell pictures apart."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    pixels[size[1] // 4: 3 * size[1] // 4, size[0] // 4: 3 * size[0] // 4] = colour
    return Image.fromarray(pixels, "RGB")


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    """A folder: five good pictures (PNG, JPEG, GIF, RGBA, EXIF-rotated) and a list file."""
    root = tmp_path / "pics"
    (root / "sub").mkdir(parents=True)
    drawing(COLOURS["red"], seed=1).save(root / "red.png")
    drawing(COLOURS["green"], seed=2).save(root / "green.jpg", quality=95)
    drawing(COLOURS["blue"], seed=3).save(root / "sub" / "blue.gif")
    drawing(COLOURS["yellow"], (300, 200), seed=4).convert("RGBA").save(root / "yellow.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    drawing(COLOURS["black"], (80, 40), seed=5).save(root / "rotated.jpg", exif=exif)
    rows = [("red", "red.png", "a red square"), ("green", "green.jpg", "a green square"),
            ("blue", "sub/blue.gif", "a blue square"), ("yellow", "yellow.png", "a yellow square"),
            ("black", "rotated.jpg", None)]
    with (root / "list.jsonl").open("w") as f:
        for item_id, image, caption in rows:
            f.write(json.dumps({"id": item_id, "image": image, "caption": caption,
                                "group": "colours"}) + "\n")
    return root


def add_bad_files(root: Path) -> dict[str, str]:
    """Bad files next to good ones; returns file name → the reason the ingest must give."""
    (root / "empty.png").write_bytes(b"")
    (root / "notes.png").write_text("this is not a picture")
    whole = io.BytesIO()
    drawing(COLOURS["red"], (200, 200), seed=9).save(whole, format="PNG")
    (root / "cut.png").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    # 10,000 x 9,000 one-bit pixels compress to a few kB but would decode to 270 MB of RGB.
    Image.new("1", (10_000, 9_000)).save(root / "bomb.png")
    return {"empty.png": "empty", "notes.png": "not an image", "cut.png": "truncated",
            "bomb.png": "decompression bomb", "missing.png": "no such file"}


# -- loading --------------------------------------------------------------------------------------
def test_open_image_makes_upright_flat_rgb(pictures: Path, tmp_path: Path) -> None:
    rotated = open_image(pictures / "rotated.jpg")
    assert rotated.mode == "RGB" and rotated.size == (40, 80)  # EXIF orientation 6 applied

    clear = tmp_path / "clear.png"
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(clear)
    assert open_image(clear).getpixel((0, 0)) == (255, 255, 255)  # transparency on white
    grey = tmp_path / "grey.png"
    Image.new("LA", (4, 4), (0, 0)).save(grey)
    assert open_image(grey).getpixel((0, 0)) == (255, 255, 255)
    palette = tmp_path / "palette.png"
    Image.new("P", (4, 4), 0).save(palette, transparency=0)
    assert open_image(palette).getpixel((0, 0)) == (255, 255, 255)

    animated = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(animated, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert open_image(animated).getpixel((4, 4))[0] > 200  # the first (red) frame
    assert open_image((pictures / "red.png").read_bytes()).size == (64, 48)  # bytes work too


def test_bad_files_raise_with_a_reason(pictures: Path) -> None:
    reasons = add_bad_files(pictures)
    for name, reason in reasons.items():
        with pytest.raises(ImageFileError, match=reason):
            open_image(pictures / name)
    with pytest.raises(ImageFileError, match="decompression bomb"):
        open_image(pictures / "red.png", max_pixels=100)


# -- encoders -------------------------------------------------------------------------------------
def test_open_clip_towers_share_one_space_and_say_they_are_random() -> None:
    image, text = load_encoder(TINY), load_encoder(f"{TINY}:text")
    assert image.info == load_encoder(f"{TINY}:image").info  # the tower defaults to image
    assert (image.info.modality, text.info.modality) == ("image", "text")
    assert image.info.fingerprint == text.info.fingerprint
    assert image.info.fingerprint.startswith("random-") and image.info.dim == text.info.dim == 32
    assert image.info.random_weights and "RANDOM" in image.info.warnings()[0]
    vectors = image.encode([drawing(COLOURS["red"]), drawing(COLOURS["blue"], seed=3)])
    assert vectors.shape == (2, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert text.encode(["a red square", "a blue square"]).shape == (2, 32)
    with pytest.raises(InvalidInputError, match="not a PIL image"):
        image.encode(["a text"])


@pytest.mark.parametrize("argument", ["kinsight-tiny", "kinsight-tiny@", "no-such-arch@random"])
def test_open_clip_spec_needs_known_architecture_and_explicit_weights(argument: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_spec(argument)


def test_open_clip_spec_forms(tmp_path: Path) -> None:
    assert parse_spec("kinsight-tiny@random:text").spec == "open_clip:kinsight-tiny@random:text"
    checkpoint = tmp_path / "weights.pt"
    checkpoint.write_bytes(b"x")
    parsed = parse_spec(f"kinsight-tiny@{checkpoint}")
    assert (parsed.weights, parsed.tower) == (str(checkpoint.resolve()), "image")
    assert parse_spec("ViT-B-32@laion2b_s34b_b79k:text").weights == "laion2b_s34b_b79k"


# -- ingest ---------------------------------------------------------------------------------------
def two_spaces(encoder: str = TINY) -> IngestOptions:
    return IngestOptions(collection="pics", batch_size=2, spaces=(
        SpaceSource("image", encoder, ("image",), "image"),
        SpaceSource("caption", "fake:dim=32", ("caption",))))


def test_ingest_two_spaces_reports_each_bad_file_and_keeps_the_rest(pictures: Path) -> None:
    reasons = add_bad_files(pictures)
    with (pictures / "list.jsonl").open("a") as f:
        for name in reasons:
            f.write(json.dumps({"id": name, "image": name, "caption": "bad"}) + "\n")
    with Store(":memory:") as store:
        report = ingest_file(store, pictures / "list.jsonl", two_spaces(), progress=False)
        assert report.written == 5 and report.read == 10
        assert set(report.seconds) >= {"decode", "encode", "write"}
        by_name = {Path(p.message.split("image ")[1].split(":")[0]).name: p for p in report.problems}
        assert set(by_name) == set(reasons)
        for name, reason in reasons.items():
            assert reason in by_name[name].message and by_name[name].fix
            assert by_name[name].source.endswith("list.jsonl") and by_name[name].line
        pics = store.collection("pics")
        assert set(pics.spaces()) == {"image", "caption"}
        assert pics.count_vectors("image") == 5
        assert pics.count_vectors("caption") == 4  # 'black' has no caption
        assert pics.fields()["thumbnail"] == "BLOB"
        fields = pics.fields_of(["yellow", "black"])
        thumb = Image.open(io.BytesIO(fields["yellow"]["thumbnail"]))
        assert thumb.format == "WEBP" and max(thumb.size) == 128 and thumb.size[0] > thumb.size[1]
        assert Image.open(io.BytesIO(fields["black"]["thumbnail"])).size[1] > 0
        assert fields["yellow"]["group"] == "colours"

        again = ingest_file(store, pictures / "list.jsonl", two_spaces(), progress=False)
        assert (again.written, again.unchanged) == (0, 5)
        drawing(COLOURS["red"], seed=42).save(pictures / "red.png")  # a changed picture
        changed = ingest_file(store, pictures / "list.jsonl", two_spaces(), progress=False)
        assert (changed.written, changed.unchanged) == (1, 4)


def test_ingest_folder_recursively_with_relative_ids(pictures: Path) -> None:
    options = IngestOptions(collection="folder", spaces=(
        SpaceSource("image", TINY, ("path",), "image"),))
    with Store(":memory:") as store:
        report = ingest_file(store, pictures, options, progress=False)
        assert report.written == 5 and not report.problems
        folder = store.collection("folder")
        assert folder.fields_of(["sub/blue.gif"])["sub/blue.gif"]["path"] == "sub/blue.gif"


def test_an_image_space_needs_an_image_encoder(pictures: Path) -> None:
    options = IngestOptions(collection="pics", spaces=(
        SpaceSource("image", "fake:dim=8", ("image",), "image"),))
    with Store(":memory:") as store, pytest.raises(InvalidInputError, match="encodes texts"):
        ingest_file(store, pictures / "list.jsonl", options, progress=False)


# -- search by picture ----------------------------------------------------------------------------
def test_search_by_image_finds_the_same_picture_first_and_warns(pictures: Path, caplog) -> None:
    with Store(":memory:") as store:
        ingest_file(store, pictures / "list.jsonl", two_spaces(), progress=False)
        pics = store.collection("pics")
        for item_id, file in (("red", "red.png"), ("green", "green.jpg"), ("blue", "sub/blue.gif")):
            with caplog.at_level(logging.WARNING):
                hits = search_by_image(pics, pictures / file, SearchOptions(k=3))
            assert hits[0].id == item_id and hits[0].score > 0.99
        assert "RANDOM" in caplog.text
        by_bytes = search_by_image(pics, (pictures / "yellow.png").read_bytes())
        assert by_bytes[0].id == "yellow"
        by_id = pics.search(ById("red"), k=2, space="image")
        assert "red" not in [h.id for h in by_id] and len(by_id) == 2
        with pytest.raises(InvalidInputError, match="holds text vectors"):
            search_by_image(pics, pictures / "red.png", SearchOptions(space="caption"))
        with pytest.raises(InvalidInputError, match="not an image"):
            search_by_image(pics, b"plain text")


def test_a_space_refuses_queries_from_another_model(pictures: Path) -> None:
    from kinsight.indexers.image_query import image_query_vector

    with Store(":memory:") as store:
        ingest_file(store, pictures / "list.jsonl", two_spaces(), progress=False)
        space = store.collection("pics").space("image")
        other = type(space)(**{**space.__dict__, "encoder": load_encoder(
            "efficientnet:lite0").info})
        with pytest.raises(EncoderMismatchError):
            space.check_encoder(other.encoder)
        assert image_query_vector(space, pictures / "red.png").shape == (32,)


def test_bundled_efficientnet_finds_a_resized_copy(pictures: Path, tmp_path: Path) -> None:
    encoder = load_encoder("efficientnet:lite0")
    assert (encoder.info.dim, encoder.info.modality, encoder.info.random_weights) == (
        1280, "image", False)
    options = IngestOptions(collection="real", spaces=(
        SpaceSource("image", "efficientnet:lite0", ("image",), "image"),))
    with Store(":memory:") as store:
        assert ingest_file(store, pictures / "list.jsonl", options, progress=False).written == 5
        copy = tmp_path / "copy.jpg"
        open_image(pictures / "green.jpg").resize((100, 75)).save(copy, quality=80)
        hits = search_by_image(store.collection("real"), copy, SearchOptions(k=5))
        assert hits[0].id == "green" and hits[0].score > hits[1].score + 0.05


def clef(end: int) -> Image.Image:
    """A 256×72 white strip with a mark near its left end (``end`` picks which), as the treble
    and bass clef of Tux Paint were: the same picture but for one end."""
    pixels = np.full((72, 256, 3), 255, np.uint8)
    pixels[20:52, 30:56] = 0
    pixels[30 + 8 * end:44, 4:24] = (200, 20, 20)  # the part that differs: within 24 px of the end
    pixels[30:40, 100:156] = (20, 20, 200)
    return Image.fromarray(pixels, "RGB")


def test_wide_pictures_are_padded_not_cropped() -> None:
    encoder = load_encoder(TINY)
    pixels = encoder.pixels
    fitted = encoder.transform(clef(0))
    assert tuple(fitted.shape) == (3, pixels.size, pixels.size)
    white = [(1.0 - m) / s for m, s in zip(pixels.mean, pixels.std, strict=True)]
    for channel, value in enumerate(white):  # white bands above and below, content between
        assert torch.allclose(fitted[channel, 0], torch.full((pixels.size,), value), atol=1e-4)
        assert torch.allclose(fitted[channel, -1], torch.full((pixels.size,), value), atol=1e-4)
    assert not torch.allclose(fitted[:, pixels.size // 2, :4], fitted[:, 0, :4])  # left end kept
    vectors = encoder.encode([clef(0), clef(1)])
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-4  # the ends tell them apart (cropped: equal)
    # the GPU path's tensor transform puts the picture in the same place
    tensor = torch.from_numpy(np.array(clef(0))).permute(2, 0, 1).contiguous()
    assert (pixels.tensor_transform()(tensor) - fitted).abs().mean() < 0.02


def test_a_space_of_older_preprocessing_says_to_ingest_again(pictures: Path) -> None:
    encoder = load_encoder(TINY)
    old = type(encoder.info)(**{**encoder.info.__dict__, "fingerprint": "random-before-padding"})
    with Store(":memory:") as store:
        pics = store.create_collection("pics")
        pics.ensure_space("image", old)
        with pytest.raises(EncoderMismatchError) as refused:
            search_by_image(pics, pictures / "red.png")
    message = str(refused.value)
    assert "preprocessing" in message and "kinsight collections drop pics" in message
    assert "random-before-padding" in message and encoder.info.fingerprint in message


# -- CLI and HTTP ---------------------------------------------------------------------------------
def test_cli_ingests_pictures_and_searches_by_image(pictures: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    store = str(tmp_path / "store")
    result = runner.invoke(app, ["ingest", str(pictures / "list.jsonl"), "-c", "pics", "--store",
                                 store, "--image-field", "image", "--encoder", TINY,
                                 "--caption-field", "caption", "--text-encoder", "fake:dim=32",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["written"] == 5
    result = runner.invoke(app, ["search", "--image", str(pictures / "red.png"), "-c", "pics",
                                 "--store", store, "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert hits[0]["id"] == "red" and isinstance(hits[0]["fields"]["thumbnail"], str)
    assert "RANDOM" in result.stderr
    result = runner.invoke(app, ["search", "--image", str(pictures / "red.png"), "-c", "pics",
                                 "--store", store])
    assert result.exit_code == 0 and "a red square" in result.stdout
    result = runner.invoke(app, ["search", "--image", str(tmp_path / "nope.png"), "-c", "pics",
                                 "--store", store])
    assert result.exit_code == 2 and "no such file" in " ".join(result.stderr.split())


def test_http_search_by_uploaded_image(pictures: Path) -> None:
    from fastapi.testclient import TestClient

    from kinsight.api.http import Settings, create_app

    with Store(":memory:") as store:
        ingest_file(store, pictures / "list.jsonl", two_spaces(), progress=False)
        with TestClient(create_app(Settings(api_key=None), store=store)) as client:
            upload = {"image": ("q.png", (pictures / "red.png").read_bytes(), "image/png")}
            response = client.post("/collections/pics/search/image", files=upload,
                                   data={"k": "2", "filter": json.dumps(
                                       {"field": "group", "op": "eq", "value": "colours"})})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["hits"][0]["id"] == "red" and "RANDOM" in body["warnings"][0]
            thumb = Image.open(io.BytesIO(base64.b64decode(body["hits"][0]["fields"]["thumbnail"])))
            assert thumb.format == "WEBP"
            bad = client.post("/collections/pics/search/image",
                              files={"image": ("q.png", b"not an image", "image/png")})
            assert bad.status_code == 422 and "not an image" in bad.json()["detail"]
            by_id = client.post("/collections/pics/search", json={"id": "red", "space": "image"})
            assert by_id.status_code == 200 and by_id.json()["warnings"]
