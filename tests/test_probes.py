"""Linear probes on synthetic vectors: three separable classes, some labels deliberately flipped,
some items unlabelled."""

from __future__ import annotations

import numpy as np
import pytest

from kinsight.engine import InvalidInputError, Item, read_run_table
from kinsight.engine.heads import regularization_grid
from kinsight.engine.probes import train_probe

from .conftest import VECTOR_ENCODER, normalized

CLASSES = ("cats", "dogs", "fish")
FLIPPED = {"cats-3": "dogs", "dogs-7": "fish", "fish-11": "cats"}


@pytest.fixture
def labelled(store):
    """60 items per class around three directions; 5 per class unlabelled; 3 labels flipped;
    a rare class of 2 items."""
    rng = np.random.default_rng(3)
    docs = store.create_collection("pets")
    docs.ensure_space("text", VECTOR_ENCODER)
    items = []
    for c, name in enumerate(CLASSES):
        centre = np.zeros(16)
        centre[c] = 1.0
        for i in range(65):
            item_id = f"{name}-{i}"
            label = None if i >= 60 else FLIPPED.get(item_id, name)
            items.append(Item(id=item_id, fields={"kind": label, "legs": c},
                              vectors={"text": normalized(centre + 0.1 * rng.normal(size=16))}))
    for i in range(2):
        items.append(Item(id=f"rare-{i}", fields={"kind": "axolotl", "legs": 4},
                          vectors={"text": normalized(rng.normal(size=16))}))
    docs.upsert(items)
    return docs


def test_probe_learns_separable_labels_and_predicts_the_unlabelled(labelled):
    result = train_probe(labelled, "kind")
    assert result.classes == list(CLASSES)
    assert result.labelled == 180 and len(result.fold_accuracies) == 5
    # No source text here: the vectors alone, each fold's C chosen from the vectors' grid.
    assert not result.lexical
    assert all(c in regularization_grid(lexical=False) for c in result.fold_regularizations)
    assert result.accuracy >= 0.97  # only the three flipped labels can be "wrong"
    assert {c.label: c.support for c in result.per_class} == {"cats": 60, "dogs": 60, "fish": 60}
    assert result.skipped_classes == {"axolotl": 2}
    assert len(result.predictions) == 15
    for prediction in result.predictions:
        assert prediction.label == prediction.id.split("-")[0]
        assert prediction.probability > 0.5


def test_probe_lists_flipped_labels_with_the_right_suggestion(labelled):
    result = train_probe(labelled, "kind")
    doubted = {d.id: d for d in result.disagreements}
    assert set(FLIPPED) <= set(doubted)
    for item_id, wrong in FLIPPED.items():
        assert doubted[item_id].stored_label == wrong
        assert doubted[item_id].suggested_label == item_id.split("-")[0]
        assert doubted[item_id].confidence > 0.5 > doubted[item_id].stored_probability
    assert len(doubted) <= 6  # the flipped ones, not a long list of honest items


def test_probe_run_tables(labelled):
    result = labelled.train_probe("kind", where={"field": "legs", "op": "lt", "value": 4})
    predictions = read_run_table(labelled, result.run_id, "predictions")
    assert predictions.num_rows == 195
    unlabelled = [row["id"] for row in predictions.to_pylist() if not row["labelled"]]
    assert sorted(unlabelled) == sorted(p.id for p in result.predictions)
    assert read_run_table(labelled, result.run_id, "classes").column("label").to_pylist() == \
        list(CLASSES)
    doubts = read_run_table(labelled, result.run_id, "disagreements")
    assert doubts.column("id").to_pylist() == [d.id for d in result.disagreements]


def test_probe_errors_name_the_problem(labelled, store):
    with pytest.raises(InvalidInputError, match="no field 'species'"):
        train_probe(labelled, "species")
    with pytest.raises(InvalidInputError, match="1 class"):
        labelled.train_probe("kind", where={"field": "legs", "op": "eq", "value": 0})
    with pytest.raises(InvalidInputError, match="0 class"):
        labelled.train_probe("kind", where={"field": "kind", "op": "is_null"})
    with pytest.raises(InvalidInputError, match="folds"):
        labelled.train_probe("kind", folds=1)


# -- CLI and HTTP (texts embedded by the fake encoder) ----------------------------------------------
TOPICS = {"editors": "text editor for editing source code files",
          "sound": "mp3 audio player music playlist volume",
          "games": "arcade game with levels and high scores"}


def _topic_docs() -> list[dict[str, object]]:
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta"]
    docs: list[dict[str, object]] = []
    for topic, text in TOPICS.items():
        for i in range(12):
            docs.append({"id": f"{topic}{i}", "text": f"{text} {words[i % 8]} {words[(i * 3) % 8]}",
                         "section": None if i >= 10 else topic})
    docs[0]["section"] = "sound"  # editors0 is mislabelled
    return docs


def test_cli_trains_a_probe_and_exports_predictions(tmp_path):
    import json

    from typer.testing import CliRunner

    from kinsight.api.cli import app

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("\n".join(json.dumps(d) for d in _topic_docs()) + "\n")
    store = str(tmp_path / "store")
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(corpus), "--encoder", "fake:dim=256",
                               "--store", store]).exit_code == 0
    out = tmp_path / "predictions.parquet"
    result = runner.invoke(app, ["classify", "--train", "--label-field", "section", "--json",
                                 "--out", str(out), "--store", store])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accuracy"] > 0.9 and report["classes"] == sorted(TOPICS)
    assert {p["id"]: p["label"] for p in report["predictions"]} == {
        f"{t}{i}": t for t in TOPICS for i in (10, 11)}
    assert report["disagreements"][0]["id"] == "editors0"
    assert report["disagreements"][0]["suggested_label"] == "editors"
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == 36
    table = runner.invoke(app, ["classify", "--train", "--label-field", "section",
                                "--store", store])
    assert table.exit_code == 0 and "editors0" in table.stdout and "accuracy" in table.stdout
    unknown = runner.invoke(app, ["classify", "--train", "--label-field", "kind",
                                  "--store", store])
    assert unknown.exit_code == 2 and "no field 'kind'" in unknown.output
    from kinsight.engine import Store, list_runs

    with Store(store, read_only=True) as opened:
        runs_before = len(list_runs(opened.collection("docs")))
    bad_out = runner.invoke(app, ["classify", "--train", "--label-field", "section",
                                  "--out", str(tmp_path / "p.txt"), "--store", store])
    assert bad_out.exit_code == 2 and ".csv or .parquet" in bad_out.output
    with Store(store, read_only=True) as opened:  # refused before training, so no new run
        assert len(list_runs(opened.collection("docs"))) == runs_before
    assert runner.invoke(app, ["classify", "--label-field", "section", "--store",
                               store]).exit_code == 2


def test_http_trains_a_probe():
    from fastapi.testclient import TestClient

    from kinsight.api.http import Settings, create_app
    from kinsight.engine import Store

    with Store(":memory:") as memory, TestClient(create_app(
            Settings(encoder="fake:dim=256", api_key=None), store=memory)) as client:
        items = [{"id": d["id"], "fields": {"text": d["text"], "section": d["section"]}}
                 for d in _topic_docs()]
        assert client.post("/collections/docs/items", json={"items": items}).status_code == 200
        response = client.post("/collections/docs/classify",
                               json={"label_field": "section", "limit": 2})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["labelled"] == 30 and body["unlabelled"] == 6
        assert len(body["predictions"]) == 2 and body["disagreements"][0]["id"] == "editors0"
        assert [c["label"] for c in body["classes"]] == sorted(TOPICS)
        bad = client.post("/collections/docs/classify", json={"label_field": "nope"})
        assert bad.status_code in (400, 422) and "no field 'nope'" in bad.text
        sql = client.post("/collections/docs/classify",
                          json={"label_field": "section", "filter": "1=1"})
        assert sql.status_code == 422 and "raw SQL" in sql.text
