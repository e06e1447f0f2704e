"""``kinsight anomalies`` and ``POST /collections/{name}/anomalies`` on a small corpus embedded by
the fake encoder: thirty texts about editors (the reference) and a few about sound."""

from __future__ import annotations

import json

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kinsight.api.cli import app

runner = CliRunner()
FAKE = ["--encoder", "fake:dim=256"]

EDITOR_WORDS = ["vim", "emacs", "nano", "modal", "syntax", "highlighting", "buffers", "macros",
                "plugins", "tabs", "unicode", "terminal"]
EDITORS = [{"id": f"editor{i}", "section": "editors",
            "text": "text editor for editing source code files with "
                    + " ".join(EDITOR_WORDS[(i * step) % 12] for step in (1, 5, 7))}
           for i in range(30)]
SOUND = [{"id": f"sound{i}", "section": "sound",
          "text": f"mp3 audio player music playlist volume {w}"}
         for i, w in enumerate(["ogg", "flac", "radio"])]
NEW_ITEMS = [{"id": "new-editor", "text": "text editor for editing source code files with syntax tabs"},
             {"id": "new-sound", "text": "music audio player for mp3 playlist"}]


@pytest.fixture
def store(tmp_path):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("\n".join(json.dumps(d) for d in EDITORS + SOUND) + "\n")
    path = tmp_path / "store"
    result = runner.invoke(app, ["ingest", str(corpus), *FAKE, "--store", str(path)])
    assert result.exit_code == 0, result.output
    return path


def invoke(*args: str, store) -> object:
    return runner.invoke(app, [*args, "--store", str(store)])


def test_cli_flags_the_other_section_and_exports_every_score(store, tmp_path):
    out = tmp_path / "scores.csv"
    result = invoke("anomalies", "--reference-where", "section = 'editors'", "--json",
                    "--out", str(out), store=store)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["reference"] == 30 and report["targets"] == 33
    assert {s["id"] for s in report["scores"][:3]} == {"sound0", "sound1", "sound2"}
    assert all(s["is_anomaly"] for s in report["scores"][:3])
    assert report["scores"][0]["neighbours"][0]["id"].startswith("editor")
    exported = pcsv.read_csv(out)
    assert exported.num_rows == 33 and "neighbour_ids" in exported.column_names
    table = invoke("anomalies", "--reference-where", "section = 'editors'",
                   "--target-where", "section = 'sound'", "--method", "mahalanobis",
                   "--out", str(tmp_path / "s.parquet"), store=store)
    assert table.exit_code == 0, table.output
    assert "sound0" in table.stdout and "yes" in table.stdout
    assert pq.read_table(tmp_path / "s.parquet").num_rows == 3


def test_cli_saves_a_detector_and_scores_a_file_of_new_items(store, tmp_path):
    detector = tmp_path / "editors.npz"
    fitted = invoke("anomalies", "--reference-where", "section = 'editors'", "--method", "lof",
                    "--neighbors", "5", "--save-detector", str(detector), "--json", store=store)
    assert fitted.exit_code == 0, fitted.output
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(json.dumps(d) for d in NEW_ITEMS) + "\n")
    result = invoke("anomalies", "--detector", str(detector), "--targets", str(batch), "--json",
                    store=store)
    assert result.exit_code == 0, result.output
    scores = {s["id"]: s for s in json.loads(result.stdout)["scores"]}
    assert scores["new-sound"]["is_anomaly"] and not scores["new-editor"]["is_anomaly"]
    assert json.loads(result.stdout)["method"] == "lof"


def test_cli_errors_are_one_line(store, tmp_path):
    empty = invoke("anomalies", "--reference-where", "section = 'none'", store=store)
    assert empty.exit_code == 2 and "matches no item" in empty.output
    both = invoke("anomalies", "--reference-where", "1=1", "--reference-collection", "x",
                  store=store)
    assert both.exit_code == 2 and "not both" in both.output
    method = invoke("anomalies", "--method", "svm", store=store)
    assert method.exit_code != 0 and "knn" in method.output
    bad_out = invoke("anomalies", "--out", str(tmp_path / "s.xlsx"), store=store)
    assert bad_out.exit_code == 2 and ".csv or .parquet" in bad_out.output


# -- HTTP -----------------------------------------------------------------------------------------
@pytest.fixture
def client():
    from fastapi.testclient import TestClient

    from kinsight.api.http import Settings, create_app
    from kinsight.engine import Store

    with Store(":memory:") as memory, TestClient(create_app(
            Settings(encoder="fake:dim=256", api_key=None), store=memory)) as c:
        items = [{"id": d["id"], "fields": {"text": d["text"], "section": d["section"]}}
                 for d in EDITORS + SOUND]
        assert c.post("/collections/docs/items", json={"items": items}).status_code == 200
        yield c


EDITORS_FILTER = {"field": "section", "op": "eq", "value": "editors"}


def test_http_scores_stored_items_and_new_texts(client):
    response = client.post("/collections/docs/anomalies", json={
        "reference": EDITORS_FILTER, "targets": {"not": EDITORS_FILTER}, "neighbours": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["targets"] == 3 and body["anomalies"] == 3 and body["reference"] == 30
    assert len(body["scores"][0]["neighbours"]) == 2
    texts = client.post("/collections/docs/anomalies", json={
        "reference": EDITORS_FILTER,
        "texts": [d["text"] for d in NEW_ITEMS], "ids": [d["id"] for d in NEW_ITEMS]})
    assert texts.status_code == 200, texts.text
    assert [s["id"] for s in texts.json()["scores"]] == ["new-sound", "new-editor"]
    assert texts.json()["scores"][0]["is_anomaly"]


def test_http_takes_vectors_and_refuses_bad_requests(client):
    vectors = client.post("/collections/docs/anomalies", json={
        "reference": EDITORS_FILTER, "vectors": [[0.0] * 255 + [1.0]]})
    assert vectors.status_code == 200 and vectors.json()["scores"][0]["id"] == "new-0"
    for body, message in [
        ({"reference": "section = 'editors'"}, "raw SQL"),
        ({"targets": EDITORS_FILTER, "texts": ["x"]}, "at most one"),
        ({"texts": ["x"], "ids": ["a", "b"]}, "one per text"),
        ({"method": "iforest", "n_neighbors": 3}, "knn and lof"),
        ({"vectors": [[1.0, 2.0]]}, "dimensions"),
        ({"reference": {"field": "section", "op": "eq", "value": "none"}}, "matches no item"),
    ]:
        response = client.post("/collections/docs/anomalies", json=body)
        assert response.status_code in (400, 422), (body, response.text)
        assert message in response.text, (body, response.text)
