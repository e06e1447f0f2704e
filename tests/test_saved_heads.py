"""Heads saved with the collection by ``train_probe`` and applied to new texts: round trip through
the store, the encoder check, and what a head cannot read; the same over HTTP
(``classify/predict``) and the CLI (``kinsight predict``). Vectors from the fake encoder."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from kinsight.engine import (
    EncoderMismatchError,
    InvalidInputError,
    Item,
    NotFoundError,
    Store,
    load_encoder,
)
from kinsight.engine.saved_heads import load_head

SPEC = "fake:dim=32"
TOPICS = {
    "python": ("python", "pandas", "pip", "django"),
    "rust": ("rust", "cargo", "serde", "borrow"),
    "go": ("go", "goroutine", "channel", "gofmt"),
}


def topic_notes() -> list[tuple[str, str, str]]:
    """(id, text, topic): 20 notes per topic, each naming three of its topic's words."""
    rng = np.random.default_rng(0)
    notes = []
    for label, words in TOPICS.items():
        for i in range(20):
            picked = rng.choice(words, size=3, replace=False)
            notes.append((f"{label}-{i}", f"note {i} on {' '.join(picked)} and more", label))
    return notes


def topic_items() -> list[Item]:
    notes = topic_notes()
    vectors = load_encoder(SPEC).encode([text for _, text, _ in notes])
    return [Item(id=item_id, fields={"text": text, "topic": label}, vectors={"text": vector})
            for (item_id, text, label), vector in zip(notes, vectors, strict=True)]


def topics_collection(store: Store):
    docs = store.create_collection("notes")
    docs.ensure_space("text", load_encoder(SPEC).info, source_fields=["text"])
    docs.upsert(topic_items())
    return docs


# New notes written like the training ones (the fake encoder hashes words; filler words count).
NEW = ["note 99 on pip django pandas and more", "note 99 on serde borrow cargo and more",
       "note 99 on channel gofmt go and more"]


@pytest.mark.parametrize("lexical", [True, False])
def test_a_trained_head_is_saved_and_labels_new_texts_after_reopening(tmp_path, lexical):
    with Store(tmp_path / "store") as store:
        result = topics_collection(store).train_probe("topic", lexical=lexical)
    assert result.head == "topic"
    with Store(tmp_path / "store", read_only=True) as store:
        notes = store.collection("notes")
        [info] = notes.heads()
        assert (info.name, info.label_field, info.space, info.lexical) == \
            ("topic", "topic", "text", lexical)
        assert info.encoder.fingerprint == load_encoder(SPEC).info.fingerprint
        assert info.classes == ["go", "python", "rust"] and info.trained_on == 60
        assert info.run_id == result.run_id
        predicted = notes.predict("topic", NEW, top=2)
    assert [p.label for p in predicted.predictions] == ["python", "rust", "go"]
    for p in predicted.predictions:
        assert next(iter(p.probabilities)) == p.label and len(p.probabilities) == 2
        assert p.probability == max(p.probabilities.values()) > 0.5


def test_the_loaded_head_predicts_as_the_trained_one(store):
    notes = topics_collection(store)
    notes.train_probe("topic", save_as="first", regularization=1.0)
    _, head = load_head(notes, "first")
    vectors = load_encoder(SPEC).encode(NEW)
    expected = head.predict_proba(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), NEW)
    got = notes.predict("first", NEW, top=3).predictions
    for row, p in zip(expected, got, strict=True):
        assert p.probabilities == pytest.approx(
            {str(c): float(v) for c, v in zip(head.classes_, row, strict=True)})


def test_saving_under_a_taken_name_replaces_the_head(store):
    notes = topics_collection(store)
    first = notes.train_probe("topic", save_as="h")
    notes.upsert([Item(id="python-0", fields={"topic": None}, vectors={
        "text": load_encoder(SPEC).encode(["note on pip"])[0]})])
    second = notes.train_probe("topic", save_as="h")
    [info] = notes.heads()
    assert info.run_id == second.run_id != first.run_id and info.trained_on == 59


def test_a_space_of_another_encoder_is_refused(store):
    notes = topics_collection(store)
    notes.ensure_space("small", load_encoder("fake:dim=16").info, source_fields=["text"])
    notes.train_probe("topic")
    with pytest.raises(EncoderMismatchError, match=r"head 'topic'.*space 'small'.*fake:dim=16"):
        notes.predict("topic", NEW, space="small")


def test_unknown_heads_and_inputs_a_head_cannot_read_are_refused(store):
    notes = topics_collection(store)
    with pytest.raises(NotFoundError, match=r"no head 'topic'.*none"):
        notes.predict("topic", NEW)
    notes.train_probe("topic")
    with pytest.raises(NotFoundError, match=r"no head 'genre'.*'topic'"):
        notes.predict("genre", NEW)
    with pytest.raises(InvalidInputError, match="reads the words"):
        notes.predict("topic", [Image.new("RGB", (8, 8))])
    with pytest.raises(InvalidInputError, match="nothing to embed"):
        notes.predict("topic", [])


# -- HTTP ----------------------------------------------------------------------------------------
def test_http_trains_a_head_and_predicts_new_texts(client):
    items = [{"id": i, "fields": {"text": t, "topic": label}} for i, t, label in topic_notes()]
    assert client.post("/collections/notes/items", json={"items": items}).status_code == 200
    trained = client.post("/collections/notes/classify", json={"label_field": "topic",
                                                                "save_as": "topics"})
    assert trained.status_code == 200, trained.text
    assert trained.json()["head"] == "topics"
    answer = client.post("/collections/notes/classify/predict",
                         json={"head": "topics", "texts": NEW, "top": 1})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [p["label"] for p in body["predictions"]] == ["python", "rust", "go"]
    assert all(len(p["probabilities"]) == 1 for p in body["predictions"])
    assert body["head"]["fingerprint"] == load_encoder(SPEC).info.fingerprint
    assert body["head"]["run_id"] == trained.json()["run_id"] and body["space"] == "text"


def test_http_predict_refuses_what_it_cannot_answer(client):
    items = [{"id": i, "fields": {"text": t, "topic": label}} for i, t, label in topic_notes()]
    client.post("/collections/notes/items", json={"items": items}).raise_for_status()
    client.post("/collections/notes/classify", json={"label_field": "topic"}).raise_for_status()
    store = client.app.state.store
    store.collection("notes").ensure_space("small", load_encoder("fake:dim=16").info)
    route = "/collections/notes/classify/predict"
    other = client.post(route, json={"head": "topic", "texts": NEW, "space": "small"})
    assert other.status_code == 422 and "fake:dim=16" in other.json()["detail"]
    missing = client.post(route, json={"head": "genre", "texts": NEW})
    assert missing.status_code == 404 and "'topic'" in missing.json()["detail"]
    assert client.post(route, json={"head": "topic", "texts": []}).status_code == 422
    assert client.post(route, content=b"x", headers={"content-type": "text/plain"}
                       ).status_code == 415
    picture = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(picture, format="PNG")
    pictures = client.post(route, data={"head": "topic"},
                           files=[("image", ("red.png", picture.getvalue(), "image/png"))])
    assert pictures.status_code == 422 and "reads the words" in pictures.json()["detail"]


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_trains_then_predicts_a_file(tmp_path):
    import pyarrow.csv
    from typer.testing import CliRunner

    from kinsight.api.cli import app

    source, new = tmp_path / "notes.jsonl", tmp_path / "new.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t, "topic": label}) + "\n"
                              for i, t, label in topic_notes()))
    new.write_text("".join(json.dumps({"id": f"n{k}", "text": t}) + "\n"
                           for k, t in enumerate(NEW)))
    store = ["--store", str(tmp_path / "store")]
    runner = CliRunner()
    ingested = runner.invoke(app, ["ingest", str(source), *store, "--encoder", SPEC])
    assert ingested.exit_code == 0, ingested.output
    none = runner.invoke(app, ["predict", str(new), *store])
    assert none.exit_code == 2 and "0 saved heads" in none.output
    trained = runner.invoke(app, ["classify", "--train", "--label-field", "topic", *store])
    assert trained.exit_code == 0, trained.output
    assert "saved head topic" in " ".join(trained.output.split())
    out = tmp_path / "labels.csv"
    predicted = runner.invoke(app, ["predict", str(new), *store, "--out", str(out), "--json"])
    assert predicted.exit_code == 0, predicted.output
    table = pyarrow.csv.read_csv(out)
    assert table.column("id").to_pylist() == ["n0", "n1", "n2"]
    assert table.column("label").to_pylist() == ["python", "rust", "go"]
    as_json = json.loads(predicted.stdout)
    assert [p["label"] for p in as_json["predictions"]] == ["python", "rust", "go"]
    assert len(as_json["predictions"][0]["probabilities"]) == 3


def test_cli_predict_reads_a_long_text_whole_as_ingest_does(tmp_path):
    """A text of one python chunk then five rust ones: its stored vector (the mean of its chunks)
    is rust's, so `kinsight predict` and HTTP say rust; encoding only its beginning, as Python's
    `predict` without `encode` does, says python."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from kinsight.api.cli import app
    from kinsight.api.http import Settings, create_app

    with Store(tmp_path / "store") as store:
        notes = store.create_collection("notes")  # chunked as ingest chunks the fake's texts
        notes.ensure_space("text", load_encoder(SPEC).info, source_fields=["text"],
                           chunk_words=38)
        notes.upsert(topic_items())
        notes.train_probe("topic", lexical=False)
    python_chunk = " ".join(["pip django pandas python"] * 10)  # 40 words: past one chunk
    long_text = python_chunk + " " + " ".join(["rust cargo serde borrow"] * 50)
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps({"id": "long", "text": long_text}) + "\n")
    predicted = CliRunner().invoke(app, ["predict", str(new), "--store", str(tmp_path / "store"),
                                         "--json"])
    assert predicted.exit_code == 0, predicted.output
    assert [p["label"] for p in json.loads(predicted.stdout)["predictions"]] == ["rust"]
    with Store(tmp_path / "store", read_only=True) as store:
        [beginning] = store.collection("notes").predict("topic", [long_text]).predictions
        with TestClient(create_app(Settings(encoder=SPEC), store=store)) as client:
            answer = client.post("/collections/notes/classify/predict",
                                 json={"head": "topic", "texts": [long_text]})
    assert beginning.label == "python"
    assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] == "rust"


def test_predict_refuses_vectors_that_do_not_fit_the_head(tmp_path):
    with Store(tmp_path / "store") as store:
        notes = topics_collection(store)
        notes.train_probe("topic", lexical=False)
        with pytest.raises(InvalidInputError, match="one vector of 32 per input"):
            notes.predict("topic", NEW, encode=lambda space, inputs: np.zeros((1, 32)))


def test_cli_predict_refuses_workers_for_pictures(tmp_path):
    from typer.testing import CliRunner

    from kinsight.api.cli import app

    with Store(tmp_path / "store") as store:
        topics_collection(store).train_probe("topic", lexical=False)
    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.new("RGB", (8, 8), "red").save(folder / "red.png")
    refused = CliRunner().invoke(app, ["predict", str(folder), "--store", str(tmp_path / "store"),
                                       "--workers", "2"])
    assert refused.exit_code != 0 and "--workers/--ray encode texts" in refused.output
    assert "Traceback" not in refused.output
