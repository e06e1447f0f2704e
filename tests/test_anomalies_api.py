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
    # The default detector of a text space reads the words too, and names the odd ones.
    assert report["method"] == "combined" and "drift_p_value" in report
    assert {"mp3", "audio"} <= set(report["scores"][0]["unusual_words"])
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
                    "--neighbours", "5", "--save-detector", str(detector), "--json", store=store)
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


# -- the HTML report --------------------------------------------------------------------------------
def _report(store, tmp_path, *extra: str):
    scored = invoke("anomalies", "--reference-where", "section = 'editors'", "--json", store=store)
    assert scored.exit_code == 0, scored.output
    out = tmp_path / "report.html"
    result = invoke("report", "anomalies", "--out", str(out), *extra, "--json", store=store)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run_id"] == json.loads(scored.stdout)["run_id"]  # latest
    return out, json.loads(scored.stdout)


def test_report_renders_every_part_of_a_run(store, tmp_path):
    out, run = _report(store, tmp_path)
    html = out.read_text()
    for part in ('id="parameters"', 'id="scores"', 'id="anomalies"', 'id="neighbours"',
                 'id="map"'):
        assert part in html
    assert html.count("<svg") == 2 and "threshold" in html
    assert run["run_id"] in html and "section = &#39;editors&#39;" in html  # escaped parameter
    anomalies_part = html[html.index('id="anomalies"'):html.index('id="neighbours"')]
    assert all(f"sound{i}" in anomalies_part for i in range(3))
    assert "mp3 audio player" in anomalies_part  # the items' fields
    neighbours_part = html[html.index('id="neighbours"'):html.index('id="map"')]
    assert "editor" in neighbours_part
    assert "mp3" in anomalies_part  # the unusual words
    drift_part = html[html.index('id="drift"'):]
    assert "this batch" in drift_part and "section =" not in drift_part
    by_section, _ = _report(store, tmp_path, "--by", "section")
    drift_part = by_section.read_text()[by_section.read_text().index('id="drift"'):]
    assert "section =" in drift_part and "sound" in drift_part and "earlier run" in drift_part
    missing = invoke("report", "anomalies", "--run", "anomalies-nope", "--out",
                     str(tmp_path / "x.html"), store=store)
    assert missing.exit_code == 2 and "no run" in missing.output


def test_report_has_a_thumbnail_column_only_when_asked(tmp_path):
    """Stores hold no image bytes yet: the column is there, empty, and nothing breaks."""
    from kinsight.api.reports.anomalies import render_anomaly_report
    from kinsight.engine import Item, Store
    from kinsight.engine.anomalies import anomalies

    from .conftest import VECTOR_ENCODER
    from .test_anomalies import cloud, outliers

    with Store(":memory:") as memory:
        pictures = memory.create_collection("pictures")
        pictures.ensure_space("image", VECTOR_ENCODER)
        vectors = list(cloud(40, seed=1)) + list(outliers(2, seed=2))
        pictures.upsert(Item(id=f"p{i}", fields={"thumb": f"p{i}.png", "kind": "photo"},
                             vectors={"image": v}) for i, v in enumerate(vectors))
        run = anomalies(pictures)
        plain = render_anomaly_report(pictures, run.run_id)
        with_column = render_anomaly_report(pictures, run.run_id, thumbnail_field="thumb")
    assert "<th>thumbnail</th>" in with_column and "<th>thumbnail</th>" not in plain
    assert "p41" in with_column and "<th>thumb</th>" not in with_column


def test_browser_shows_the_report(browser, store, tmp_path):
    from selenium.webdriver.common.by import By

    out, _ = _report(store, tmp_path)
    browser.get(out.as_uri())
    assert browser.title.startswith("Anomalies in docs")
    for section in ("parameters", "scores", "anomalies", "neighbours", "map"):
        assert browser.find_element(By.ID, section).is_displayed()
    histogram = browser.find_element(By.CSS_SELECTOR, "#scores svg")
    assert histogram.size["width"] > 200 and histogram.size["height"] > 100
    assert "sound0" in browser.find_element(By.ID, "anomalies").text
    assert browser.find_element(By.CSS_SELECTOR, "#map svg").size["height"] > 100


def test_new_texts_are_encoded_like_stored_items(tmp_path):
    """A long new text is chunked and averaged as ingest stores it: the same vector."""
    import numpy as np

    from kinsight.engine import Store
    from kinsight.engine.vectors import item_matrix
    from kinsight.indexers import IngestOptions, Record, ingest_records
    from kinsight.indexers.embed import encode_items

    long_text = " ".join(f"word{i % 97} topic{i % 13}" for i in range(300))
    with Store(":memory:") as memory:
        ingest_records(memory, [Record(id="long", fields={"text": long_text}, source="t", line=1)],
                       IngestOptions(collection="docs", encoder="fake:dim=64,max_tokens=50"),
                       progress=False)
        docs = memory.collection("docs")
        space = docs.space("text")
        assert docs.count_vectors("text") > 1  # it was chunked
        _, stored = item_matrix(docs, space, ["long"])
        np.testing.assert_allclose(encode_items(space, [long_text]), stored, atol=1e-6)
