"""Free-text fields: which fields a probe reads words of (``lexical.free_text_fields``), and the
probe's TF-IDF block per such field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kinsight.engine import InvalidInputError, Item, ProbeOptions, load_encoder
from kinsight.engine.lexical import FREE_TEXT_SAMPLE, free_text_fields
from kinsight.engine.probes import train_probe
from kinsight.engine.saved_heads import load_head
from kinsight.engine.storage import HeadTable

from .conftest import VECTOR_ENCODER, normalized


def test_free_text_fields_are_string_fields_of_two_words_or_more_on_average(store):
    docs = store.create_collection("docs")
    docs.ensure_space("text", VECTOR_ENCODER, source_fields=["text"])
    rng = np.random.default_rng(0)
    docs.upsert(Item(id=f"d{i}", fields={
        "text": "a long description of the package",
        "title": "short one line summary" if i % 2 else "x",  # 2.5 words on average
        "section": "utils",  # one word: a label, not free text
        "code": "a b" if i < 3 else "z",  # 1.3 words on average: below the line
        "notes": None,  # never set
        "size": i}, vectors={"text": normalized(rng.normal(size=16))}) for i in range(10))
    assert free_text_fields(docs.tables) == ["text", "title"]
    assert free_text_fields(docs.tables, exclude={"text", "section"}) == ["title"]


def test_free_text_fields_are_measured_on_a_sample_of_a_large_collection(store):
    docs = store.create_collection("big")
    docs.ensure_space("text", VECTOR_ENCODER)
    vector = normalized(np.ones(16))
    # Every item but one has a one-word field; the rule answers alike whatever the sample.
    docs.upsert(Item(id=f"d{i:05d}", fields={"name": "pkg" if i else "many words " * 50},
                     vectors={"text": vector}) for i in range(FREE_TEXT_SAMPLE + 500))
    assert free_text_fields(docs.tables) == []


SPEC = "fake:dim=32"
TOPICS = {"python": ("python", "pandas", "pip", "django"),
          "rust": ("rust", "cargo", "serde", "borrow"),
          "go": ("go", "goroutine", "channel", "gofmt")}


def titled_rows() -> list[tuple[str, str, str, str]]:
    """(id, text, title, topic) of 60 packages whose long text says nothing of their topic (the
    same filler words) and whose one-line title names two of its words: only a block of the
    title's words can tell them apart."""
    rng = np.random.default_rng(0)
    rows = []
    for label, words in TOPICS.items():
        for i in range(20):
            filler = " ".join(rng.choice(["tool", "library", "program", "utility", "files"], 4))
            rows.append((f"{label}-{i}", f"a {filler} package",
                         f"the {' '.join(rng.choice(words, 2, replace=False))} package", label))
    return rows


NEW_RECORDS = [{"text": "a tool files package", "title": "the cargo serde package"},
               {"text": "a library program package", "title": "the pip django package"}]


@pytest.fixture
def titled(store):
    rows = titled_rows()
    docs = store.create_collection("pkgs")
    docs.ensure_space("text", load_encoder(SPEC).info, source_fields=["text"])
    vectors = load_encoder(SPEC).encode([text for _, text, _, _ in rows])
    docs.upsert(Item(id=i, fields={"text": text, "title": title, "topic": label},
                     vectors={"text": v}) for (i, text, title, label), v in
                zip(rows, vectors, strict=True))
    return docs


def test_probe_reads_each_free_text_field_as_a_block_of_its_own(titled):
    found = train_probe(titled, "topic", ProbeOptions(regularization=10.0))
    assert found.text_fields == ["title"]  # by the rule: "topic" is the label, "text" the source
    without = train_probe(titled, "topic", ProbeOptions(regularization=10.0, text_fields=()))
    assert without.text_fields == []
    assert found.accuracy >= 0.95 > 0.6 >= without.accuracy
    info, head = load_head(titled, "topic")  # the last one trained: no field blocks
    assert info.text_fields == [] and head.text_fields == []


def test_a_saved_head_predicts_records_with_their_fields(titled):
    titled.train_probe("topic", ProbeOptions(regularization=10.0, text_fields=["title"]))
    [info] = titled.heads()
    assert info.text_fields == ["title"]
    records = NEW_RECORDS
    assert [p.label for p in titled.predict("topic", records).predictions] == ["rust", "python"]
    # A missing field is an empty block; a plain text is a record of the source field alone.
    alike = titled.predict("topic", ["a tool files package"]).predictions[0]
    assert titled.predict("topic", [{"text": "a tool files package"}]).predictions[0] == alike
    with pytest.raises(InvalidInputError, match="record 0 has no text in 'text'"):
        titled.predict("topic", [{"title": "the cargo serde package"}])
    with pytest.raises(InvalidInputError, match="send one kind"):
        titled.predict("topic", [records[0], "a text"])


def test_text_fields_are_checked(titled):
    with pytest.raises(InvalidInputError, match="no field 'summary'"):
        train_probe(titled, "topic", ProbeOptions(text_fields=["summary"]))
    with pytest.raises(InvalidInputError, match="is the label field"):
        train_probe(titled, "topic", ProbeOptions(text_fields=["topic"]))
    with pytest.raises(InvalidInputError, match="logistic head only"):
        titled.train_head("topic", kind="knn", text_fields=["title"])


def test_a_head_saved_before_field_blocks_still_loads_and_predicts(titled):
    titled.train_probe("topic", ProbeOptions(regularization=10.0, text_fields=()))
    table = HeadTable(titled.tables)
    [(name, header, created)] = table.headers()
    old = json.loads(header)
    del old["text_fields"]  # as save_head wrote headers before
    arrays = table.arrays(name)
    assert arrays is not None
    table.save(name, json.dumps(old), arrays, created)
    [info] = titled.heads()
    assert info.text_fields == []
    expected = titled.predict("topic", ["a tool files package"]).predictions
    assert titled.predict("topic", [{"text": "a tool files package", "title": "x"}]
                          ).predictions == expected


def test_http_trains_with_text_fields_and_predicts_records(client):
    items = [{"id": i, "fields": {"text": text, "title": title, "topic": label}}
             for i, text, title, label in titled_rows()]
    client.post("/collections/pkgs/items", json={"items": items}).raise_for_status()
    route = "/collections/pkgs/classify"
    trained = client.post(route, json={"label_field": "topic", "regularization": 10.0,
                                       "text_fields": ["title"]})
    assert trained.status_code == 200, trained.text
    assert trained.json()["text_fields"] == ["title"] and trained.json()["accuracy"] >= 0.95
    answer = client.post(f"{route}/predict", json={"head": "topic", "texts": NEW_RECORDS})
    assert answer.status_code == 200, answer.text
    assert [p["label"] for p in answer.json()["predictions"]] == ["rust", "python"]
    assert answer.json()["head"]["text_fields"] == ["title"]
    wrong = client.post(route, json={"label_field": "topic", "text_fields": ["summary"]})
    assert wrong.status_code == 422 and "no field 'summary'" in wrong.json()["detail"]


def test_cli_trains_with_text_fields_and_predicts_a_file_of_records(tmp_path):
    from typer.testing import CliRunner

    from kinsight.api.cli import app

    source, new = tmp_path / "pkgs.jsonl", tmp_path / "new.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": text, "title": title, "topic": label})
                              + "\n" for i, text, title, label in titled_rows()))
    new.write_text("".join(json.dumps({"id": f"n{k}", **r}) + "\n"
                           for k, r in enumerate(NEW_RECORDS)))
    store = ["--store", str(tmp_path / "store")]
    runner = CliRunner()
    ingested = runner.invoke(app, ["ingest", str(source), *store, "--encoder", SPEC])
    assert ingested.exit_code == 0, ingested.output
    trained = runner.invoke(app, ["classify", "--train", "--label-field", "topic", *store,
                                  "--regularization", "10", "--text-fields", "title", "--json"])
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["text_fields"] == ["title"]
    predicted = runner.invoke(app, ["predict", str(new), *store, "--json"])
    assert predicted.exit_code == 0, predicted.output
    assert [p["label"] for p in json.loads(predicted.stdout)["predictions"]] == ["rust", "python"]
    refused = runner.invoke(app, ["classify", "--train", "--label-field", "topic", *store,
                                  "--text-fields", "topic"])
    assert refused.exit_code != 0 and "is the label field" in refused.output
