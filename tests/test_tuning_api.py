"""``kinsight tune`` / ``search --tuned`` and ``POST /collections/{name}/tune`` / ``tuned: true``,
on the synonym corpus of test_tuning.py (queries say words no document has)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.engine import Store

from .test_tuning import FAST, synonym_judgments, synonym_store

runner = CliRunner()
FAST_FLAGS = [f"--{name.replace('_', '-')}={value}" for name, value in FAST.items()]


@pytest.fixture
def synonyms(tmp_path):
    return synonym_store(tmp_path / "store")


@pytest.fixture
def judgment_files(tmp_path):
    queries, qrels = synonym_judgments()
    queries_file, qrels_file = tmp_path / "queries.jsonl", tmp_path / "qrels.tsv"
    queries_file.write_text("".join(json.dumps({"qid": q.qid, "text": q.text}) + "\n"
                                    for q in queries))
    qrels_file.write_text("qid\tdoc_id\trel\n" + "".join(
        f"{qid}\t{doc}\t{rel}\n" for qid, docs in qrels.items() for doc, rel in docs.items()))
    return ["--queries", str(queries_file), "--qrels", str(qrels_file)]


def test_cli_tunes_prints_held_out_figures_and_search_uses_them(synonyms, judgment_files):
    store = ["--store", str(synonyms)]
    before = runner.invoke(app, ["search", "askword3 variant2", "--tuned", *store])
    assert before.exit_code == 2 and "has not been tuned; run `kinsight tune" in before.stderr

    shown = runner.invoke(app, ["tune", *judgment_files, *FAST_FLAGS, *store],
                          env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "held-out queries (20, not trained on)" in shown.stdout
    assert "tuned space 'text' on 68 queries (+12 validation" in shown.stdout
    assert "--tuned --collection docs" in shown.stdout

    result = runner.invoke(app, ["tune", *judgment_files, *FAST_FLAGS, "--json", *store])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["queries"]["held_out"] == 20 and report["curve"][0]["loss"] is None
    assert report["held_out"]["tuned"]["ndcg@10"] > report["held_out"]["default"]["ndcg@10"] + 0.3

    tuned = runner.invoke(app, ["search", "askword3 variant2", "--tuned", "-k", "1", "--json",
                                *store])
    assert tuned.exit_code == 0, tuned.output
    assert [h["id"] for h in json.loads(tuned.stdout)] == ["t3v2"]


def test_cli_evaluates_and_lists_a_tuned_space(synonyms, judgment_files):
    store = ["--store", str(synonyms)]

    def spaces() -> list[dict]:
        listed = runner.invoke(app, ["collections", "--json", *store])
        assert listed.exit_code == 0, listed.output
        return json.loads(listed.stdout)[0]["spaces"]

    assert spaces()[0]["tuned"] is None
    untuned = runner.invoke(app, ["evaluate", *judgment_files, "--tuned", *store])
    assert untuned.exit_code == 2 and "has not been tuned; run `kinsight tune" in untuned.stderr

    assert runner.invoke(app, ["tune", *judgment_files, *FAST_FLAGS, *store]).exit_code == 0
    assert spaces()[0]["tuned"]
    assert ", tuned)" in runner.invoke(app, ["collections", *store], env={"COLUMNS": "200"}).stdout
    shown = runner.invoke(app, ["evaluate", *judgment_files, "--tuned", "--json", *store])
    assert shown.exit_code == 0, shown.output
    scores = json.loads(shown.stdout)
    # judged on every query, most of which the tune trained on: far above the untuned searches
    assert scores["tuned"]["ndcg@10"] > scores["hybrid:zscore"]["ndcg@10"] + 0.3
    assert scores["dense, tuned"]["ndcg@10"] > scores["dense"]["ndcg@10"] + 0.3


def test_cli_refuses_bad_shares_before_opening_anything(synonyms, judgment_files):
    result = runner.invoke(app, ["tune", *judgment_files, "--held-out", "1.5",
                                 "--store", str(synonyms)])
    assert result.exit_code == 2 and "1.5" in result.output


@pytest.fixture
def client(synonyms):
    from fastapi.testclient import TestClient

    from kinsight.api.http import Settings, create_app

    with Store(synonyms) as store, TestClient(create_app(
            Settings(encoder="fake:dim=128", api_key=None), store=store)) as c:
        yield c


def test_http_tunes_and_searches_tuned(client):
    queries, qrels = synonym_judgments()
    body = {"queries": [{"qid": q.qid, "text": q.text} for q in queries], "qrels": qrels, **FAST}
    untuned = client.post("/collections/docs/search", json={"text": "askword3", "tuned": True})
    assert untuned.status_code == 404 and "has not been tuned" in untuned.json()["detail"]

    response = client.post("/collections/docs/tune", json=body)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["queries"] == {"train": 68, "validation": 12, "held_out": 20, "skipped": 0}
    assert report["adapter"] and report["held_out"]["tuned"]["ndcg@10"] > 0.8

    hits = client.post("/collections/docs/search",
                       json={"text": "askword3 variant2", "k": 1, "tuned": True}).json()["hits"]
    assert [h["id"] for h in hits] == ["t3v2"]


def test_http_refuses_bad_tune_requests(client):
    queries, qrels = synonym_judgments()
    body = {"queries": [{"qid": q.qid, "text": q.text} for q in queries], "qrels": qrels}
    assert client.post("/collections/docs/tune", json={**body, "held_out": 0}).status_code == 422
    assert client.post("/collections/docs/tune", json={**body, "adapter": "mlp"}).status_code == 422
    few = client.post("/collections/docs/tune", json={**body, "queries": body["queries"][:8]})
    assert few.status_code == 422 and "at least 5 in each" in few.json()["detail"]
    assert client.post("/collections/nope/tune", json=body).status_code == 404


def synonym_clicks() -> list[dict[str, str]]:
    """The synonym judgments as a search log: each query clicked twice, spelt two ways."""
    queries, qrels = synonym_judgments()
    return [{"query": text, "id": item} for q in queries for item in qrels[q.qid]
            for text in (q.text, f"  {q.text.upper()} ")]


def test_cli_tunes_from_clicks(synonyms, tmp_path):
    clicks = tmp_path / "clicks.csv"
    clicks.write_text("query,id\n" + "".join(f"{c['query']},{c['id']}\n" for c in synonym_clicks()))
    result = runner.invoke(app, ["tune", "--clicks", str(clicks), *FAST_FLAGS, "--json",
                                 "--store", str(synonyms)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # 200 clicks on 100 distinct queries (case and spaces ignored): the same split as judgments
    assert report["queries"] == {"train": 68, "validation": 12, "held_out": 20, "skipped": 0}
    assert report["held_out"]["tuned"]["ndcg@10"] > report["held_out"]["default"]["ndcg@10"] + 0.3


@pytest.mark.parametrize("flags", [[], ["--clicks", "c.jsonl", "--queries", "q.jsonl"],
                                   ["--queries", "q.jsonl"]])
def test_cli_asks_for_one_kind_of_judgments(synonyms, flags):
    result = runner.invoke(app, ["tune", *flags, "--store", str(synonyms)])
    assert result.exit_code == 2 and "--clicks FILE" in result.output


def test_http_tunes_from_clicks_and_refuses_both_kinds(client):
    response = client.post("/collections/docs/tune", json={"clicks": synonym_clicks(), **FAST})
    assert response.status_code == 200, response.text
    assert response.json()["queries"]["held_out"] == 20
    queries, qrels = synonym_judgments()
    both = {"queries": [{"qid": q.qid, "text": q.text} for q in queries], "qrels": qrels,
            "clicks": synonym_clicks()}
    refused = client.post("/collections/docs/tune", json=both)
    assert refused.status_code == 422 and "either queries and qrels" in refused.text
    assert client.post("/collections/docs/tune", json={}).status_code == 422
