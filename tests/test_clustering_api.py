"""Clustering through the CLI, HTTP and the HTML report, on fake-encoder texts of four topics."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.csv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.api.reports.clusters import cluster_report
from kinsight.api.reports.page import write_report
from kinsight.engine import Store

from .conftest import serve

runner = CliRunner()
TOPICS = {
    "music": "guitar piano violin drums concert melody",
    "code": "python rust compiler debugger syntax library",
    "sport": "football tennis golf stadium match referee",
    "food": "bread cheese wine recipe kitchen oven",
}


def topic_docs(per_topic: int = 10) -> list[dict[str, str]]:
    rng = np.random.default_rng(0)
    return [{"id": f"{topic}{i}", "text": " ".join(rng.choice(words.split(), 4)), "topic": topic}
            for topic, words in TOPICS.items() for i in range(per_topic)]


@pytest.fixture
def store_dir(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in topic_docs()))
    store = tmp_path / "store"
    result = runner.invoke(app, ["ingest", str(path), "--encoder", "fake:dim=256",
                                 "--store", str(store)])
    assert result.exit_code == 0, result.output
    return store


def invoke(*args: str, store) -> object:
    return runner.invoke(app, [*args, "--store", str(store)])


def test_cli_clusters_lists_runs_and_exports_tables(store_dir, tmp_path):
    result = invoke("cluster", "-k", "4", "--label", "guitar concert", "--label",
                    "football match", "--json", store=store_dir)
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert [c["size"] for c in run["clusters"]] == [10, 10, 10, 10]
    for c in run["clusters"]:
        assert len({r.rstrip("0123456789") for r in c["representatives"]}) == 1
    music = next(c for c in run["clusters"] if c["representatives"][0].startswith("music"))
    assert music["label"] == "guitar concert"

    table = invoke("cluster", "-k", "4", "--where", "topic <> 'food'", store=store_dir)
    assert table.exit_code == 0, table.output
    assert "cohesion" in table.stdout and "run cluster-" in table.stdout

    runs = json.loads(invoke("runs", "--json", store=store_dir).stdout)
    assert [r["operation"] for r in runs] == ["cluster", "cluster"]
    assert runs[1]["run_id"] == run["run_id"] and runs[0]["summary"]["items"] == 30
    rows = json.loads(invoke("runs", "show", run["run_id"], "--table", "assignments", "--limit",
                             "3", "--json", store=store_dir).stdout)
    assert len(rows) == 3 and set(rows[0]) == {"id", "cluster", "similarity"}
    for out in (tmp_path / "a.parquet", tmp_path / "c.csv"):
        name = "assignments" if out.suffix == ".parquet" else "clusters"
        exported = invoke("runs", "show", run["run_id"], "-t", name, "--out", str(out),
                          store=store_dir)
        assert exported.exit_code == 0, exported.output
    assert pq.read_table(tmp_path / "a.parquet").num_rows == 40
    csv = pyarrow.csv.read_csv(tmp_path / "c.csv")
    assert csv.num_rows == 4 and json.loads(csv.column("terms")[0].as_py())


def test_cli_errors_are_one_line(store_dir):
    too_many = invoke("cluster", "-k", "99", store=store_dir)
    assert too_many.exit_code == 2 and "k=99 is more than the 40 items" in too_many.output
    bad_k = invoke("cluster", "-k", "many", store=store_dir)
    assert bad_k.exit_code == 2 and "'auto'" in bad_k.output
    no_run = invoke("runs", "show", "cluster-nope", store=store_dir)
    assert no_run.exit_code == 2 and "no run 'cluster-nope'" in no_run.output


def test_http_cluster_and_runs():
    with serve(encoder="fake:dim=256") as client:
        items = [{"id": d["id"], "fields": {"text": d["text"], "topic": d["topic"]}}
                 for d in topic_docs()]
        assert client.post("/collections/docs/items", json={"items": items}).status_code == 200
        response = client.post("/collections/docs/cluster", json={
            "k": 3, "filter": {"field": "topic", "op": "ne", "value": "food"},
            "labels": ["bread and cheese", "python compiler"]})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["items"] == 30 and [c["size"] for c in body["clusters"]] == [10, 10, 10]
        code = next(c for c in body["clusters"] if c["representatives"][0].startswith("code"))
        assert code["label"] == "python compiler"

        listed = client.get("/collections/docs/runs").json()["runs"]
        assert [r["run_id"] for r in listed] == [body["run_id"]]
        assert listed[0]["params"]["where"] == {"field": "topic", "op": "ne", "value": "food"}
        page = client.get(f"/collections/docs/runs/{body['run_id']}/map",
                          params={"offset": 5, "limit": 10}).json()
        assert page["total"] == 30 and len(page["rows"]) == 10 and set(page["rows"][0]) == {"id", "x", "y"}

        sql = client.post("/collections/docs/cluster", json={"filter": "topic = 'food'"})
        assert sql.status_code == 422 and "raw SQL is not accepted" in sql.text
        missing = client.get(f"/collections/docs/runs/{body['run_id']}/scores")
        assert missing.status_code == 404 and "has no table 'scores'" in missing.text
        too_many = client.post("/collections/docs/cluster", json={"k": 100})
        assert too_many.status_code == 422 and "k=100" in too_many.text


def _report(tmp_path) -> str:
    from kinsight.engine import Item, load_encoder

    encoder = load_encoder("fake:dim=256")
    docs = topic_docs()
    with Store(tmp_path / "report-store") as store:
        coll = store.create_collection("docs")
        coll.ensure_space("text", encoder.info, source_fields=["text"])
        vectors = encoder.encode([d["text"] for d in docs])
        coll.upsert(Item(id=d["id"], fields={"text": d["text"], "topic": d["topic"]},
                         vectors={"text": v}) for d, v in zip(docs, vectors, strict=True))
        run = coll.cluster(k="auto", k_range=(2, 6))
        coll.cluster(k=2)  # a later run: the report must show the one asked for
        return cluster_report(coll, run.run_id)


def test_report_shows_a_past_run(tmp_path):
    html = _report(tmp_path)
    assert "Clusters of docs" in html and "silhouette of each k tried" in html
    assert html.count("<svg") == 2  # the size bars and the map
    for topic, words in TOPICS.items():
        assert re.search(f"<td>{topic}[0-9]+</td>", html)  # representatives are listed
        assert any(w in html for w in words.split())
    assert 'id="cluster-3"' in html  # auto picked the four topics
    assert "Clusters of clusters" in html and "table class=\"groups\"" in html


def test_report_in_a_browser(browser, tmp_path):
    from selenium.webdriver.common.by import By

    path = write_report(tmp_path / "clusters.html", _report(tmp_path))
    browser.get(path.as_uri())
    assert browser.title == "Clusters of docs"
    for section in ("parameters", "clusters", "groups", "map", "members"):
        assert browser.find_element(By.ID, section).is_displayed()
    plot = browser.find_element(By.CSS_SELECTOR, "#map svg")
    assert plot.size["width"] > 200 and plot.size["height"] > 100
    rows = browser.find_elements(By.CSS_SELECTOR, "#clusters table.clusters tbody tr")
    assert len(rows) == 4
    assert len(browser.find_elements(By.CSS_SELECTOR, "#members table.members")) == 4
