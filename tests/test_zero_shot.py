"""Zero-shot classification by label prompts, on a text space (fake encoder) and a picture space
(tiny open_clip towers with random weights: only the plumbing can be checked there)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.engine import InvalidInputError, NotFoundError, Store, read_run_table
from kinsight.engine.zero_shot import TEXT_TEMPLATES, zero_shot
from kinsight.indexers import IngestOptions, ingest_records
from kinsight.indexers.records import Record

DOCS = [
    ("vim", "a modal text editor for the console", "editor"),
    ("emacs", "an extensible text editor and more", "editor"),
    ("nano", "small text editor for beginners", "editor"),
    ("sox", "audio files converted and played, audio effects", "audio"),
    ("mpg123", "fast console audio player for mp3 audio", "audio"),
    ("ogg", "audio codec tools for ogg audio", "audio"),
]


@pytest.fixture
def docs():
    with Store(":memory:") as store:
        records = [Record(i, {"text": t, "kind": k}, "docs", n) for n, (i, t, k) in
                   enumerate(DOCS, start=1)]
        ingest_records(store, records, IngestOptions(collection="docs", encoder="fake:dim=256"))
        yield store.collection("docs")


def test_text_items_take_the_label_their_words_share(docs):
    result = docs.zero_shot(["editor", "audio"], label_field="kind")
    assert {p.id: p.label for p in result.predictions} == {i: k for i, _, k in DOCS}
    assert result.accuracy == 1.0 and result.templates == list(TEXT_TEMPLATES)
    for p in result.predictions:
        assert p.probability == max(p.probabilities.values())
        assert sum(p.probabilities.values()) == pytest.approx(1.0)
    table = read_run_table(docs, result.run_id, "predictions")
    assert table.column("label").to_pylist() == [p.label for p in result.predictions]
    assert np.allclose(table.column("probabilities").to_pylist()[0],
                       list(result.predictions[0].probabilities.values()))


def test_labels_spelled_unlike_the_field_values_are_named_in_a_warning(docs):
    exact = docs.zero_shot(["editor", "audio"], label_field="kind")
    assert exact.warnings == []
    plural = docs.zero_shot(["editors", "audio"], label_field="kind")
    assert plural.accuracy == 0.5
    [warning] = plural.warnings
    assert "3 of 6 items" in warning and "'editor' (the label 'editors'?)" in warning


def test_temperature_sharpens_and_filters_select(docs):
    soft = docs.zero_shot(["editor", "audio"], temperature=1.0)
    sharp = docs.zero_shot(["editor", "audio"], temperature=0.01)
    assert max(p.probability for p in soft.predictions) < min(
        p.probability for p in sharp.predictions)
    only = docs.zero_shot(["editor", "audio"], where="kind = 'audio'")
    assert {p.id for p in only.predictions} == {"sox", "mpg123", "ogg"}
    custom = docs.zero_shot(["editor", "audio"], templates=["software for {}"])
    assert custom.templates == ["software for {}"]


def test_bad_input_is_named(docs):
    with pytest.raises(InvalidInputError, match="at least two different"):
        zero_shot(docs, ["editor"])
    with pytest.raises(InvalidInputError, match="exactly one"):
        docs.zero_shot(["a", "b"], templates=["no placeholder"])
    with pytest.raises(NotFoundError, match="no field 'genre'"):
        docs.zero_shot(["a", "b"], label_field="genre")
    with pytest.raises(InvalidInputError, match="matches the filter"):
        docs.zero_shot(["a", "b"], where="kind = 'video'")


def test_picture_space_is_labelled_through_its_text_tower(tmp_path):
    from PIL import Image

    from kinsight.indexers.ingest import SpaceSource

    for n, colour in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"{n}.png")
    spec = "open_clip:kinsight-tiny@random:image"
    records = [Record(str(n), {"image": f"{n}.png"}, "list", n) for n in range(3)]
    with Store(tmp_path / "store") as store:
        ingest_records(store, records, IngestOptions(
            collection="pics", spaces=(SpaceSource("image", spec, ("image",), "image"),)),
            progress=False, image_root=tmp_path)
        result = zero_shot(store.collection("pics"), ["a red square", "a blue square"])
    assert len(result.predictions) == 3 and result.templates[0] == "a photo of a {}."


def test_cli_zero_shot(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": i, "text": t, "kind": k}) + "\n" for i, t, k in DOCS))
    base = ["--store", str(tmp_path / "s")]
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(docs), "--encoder", "fake:dim=256", *base]).exit_code == 0
    result = runner.invoke(app, ["classify", "--zero-shot", "editor,audio", "--label-field", "kind",
                                 "--json", *base])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["accuracy"] == 1.0 and payload["labels"] == ["editor", "audio"]
    result = runner.invoke(app, ["classify", "--zero-shot", "editor", *base])
    assert result.exit_code == 2 and "at least two" in result.output
    result = runner.invoke(app, ["classify", *base])
    assert result.exit_code == 2 and "--train" in result.output and "--zero-shot" in result.output


def test_http_zero_shot(docs):
    from fastapi.testclient import TestClient

    from kinsight.api.http import Settings, create_app

    settings = Settings(encoder="fake:dim=256", api_key=None)
    with TestClient(create_app(settings, store=docs.store)) as client:
        response = client.post("/collections/docs/classify/zero-shot", json={
            "labels": ["editor", "audio"], "label_field": "kind", "limit": 2})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["accuracy"] == 1.0 and body["items"] == 6 and len(body["predictions"]) == 2
        bad = client.post("/collections/docs/classify/zero-shot", json={"labels": ["one"]})
        assert bad.status_code == 422
