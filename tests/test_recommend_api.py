"""Recommendations and interactions over HTTP and from the command line (fake encoder)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.api.http import Settings, create_app
from kinsight.engine import Store

DOCS = {
    "vim": ("Vi IMproved, a highly configurable text editor", "editors"),
    "emacs": ("GNU Emacs, the extensible self-documenting text editor", "editors"),
    "nano": ("small, friendly text editor inspired by Pico", "editors"),
    "mpg123": ("console MPEG audio player for mp3 files", "sound"),
    "sox": ("Swiss army knife of sound processing audio files", "sound"),
    "vlc": ("multimedia player and streamer for audio and video files", "video"),
}


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = Settings(encoder="fake:dim=256", api_key=None)
    with Store(":memory:") as store, TestClient(create_app(settings, store=store)) as c:
        items = [{"id": i, "fields": {"text": t, "section": s}} for i, (t, s) in DOCS.items()]
        assert c.post("/collections/docs/items", json={"items": items}).status_code == 200
        yield c


def rec(client: TestClient, **body: object) -> list[str]:
    response = client.post("/collections/docs/recommend", json=body)
    assert response.status_code == 200, response.text
    return [h["id"] for h in response.json()["hits"]]


def test_http_item_to_item_and_user_recommendations(client):
    assert rec(client, positive=["vim"], k=2, mode="dense") == ["emacs", "nano"]
    assert set(rec(client, positive=["vim"], k=2)) == {"emacs", "nano"}  # hybrid: words too
    assert "vim" not in rec(client, positive=["vim", {"id": "sox", "weight": 0.5}], k=5)
    assert set(rec(client, positive=["vim"], k=5,
                   filter={"field": "section", "op": "eq", "value": "sound"})) == {"mpg123", "sox"}
    response = client.post("/collections/docs/interactions", json={"interactions": [
        {"user": "ann", "item": "vim", "kind": "like"},
        {"user": "ann", "item": "mpg123", "kind": "dislike", "timestamp": "2026-11-01T10:00:00Z"},
    ]})
    assert response.json() == {"written": 2}
    for_ann = rec(client, user="ann", k=5)
    assert "vim" not in for_ann and "mpg123" not in for_ann
    assert for_ann[0] in ("emacs", "nano")  # an editor, like the one she liked
    assert "vim" in rec(client, user="ann", k=5, include_seen=True)
    diverse = client.post("/collections/docs/recommend", json={
        "positive": ["vim"], "k": 3, "diversity": 0.5, "strategy": "best_score", "fields": []})
    assert diverse.status_code == 200 and diverse.json()["hits"][0]["fields"] == {}


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"positive": ["nope"]}, 404, "no item 'nope'"),
    ({"user": "nobody"}, 404, "user 'nobody' has no interactions"),
    ({}, 422, "no positive example"),
    ({"negative": ["vim"]}, 422, "no positive example"),
    ({"positive": ["vim"], "k": 0}, 422, "k"),
    ({"positive": ["vim"], "k": 5000}, 422, "k"),
    ({"positive": ["vim"], "diversity": 2}, 422, "diversity"),
    ({"positive": ["vim"], "space": "text", "spaces": {"text": 1}}, 422, "not both"),
    ({"positive": [[0.1, 0.2]]}, 422, "2 dimensions"),
    ({"positive": [{"id": "vim", "vector": [1.0]}]}, 422, "exactly one of 'id' or 'vector'"),
    ({"positive": ["vim"], "filter": "section = 'x'"}, 422, "raw SQL is not accepted"),
])
def test_http_bad_requests_get_a_clear_4xx(client, body, status, words):
    response = client.post("/collections/docs/recommend", json=body)
    assert response.status_code == status, response.text
    assert words in json.dumps(response.json())


def test_http_bad_interactions_write_nothing(client):
    response = client.post("/collections/docs/interactions", json={"interactions": [
        {"user": "a", "item": "vim"}, {"user": "a", "item": "vim", "weight": "heavy"}]})
    assert response.status_code == 422
    assert client.post("/collections/docs/recommend", json={"user": "a"}).status_code == 404


runner = CliRunner()


def test_cli_recommend_interactions_and_batch(tmp_path):
    store = str(tmp_path / "store")
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": i, "text": t, "section": s}) + "\n"
                            for i, (t, s) in DOCS.items()))
    base = ["--store", store]
    assert runner.invoke(app, ["ingest", str(docs), "--encoder", "fake:dim=256", *base]
                         ).exit_code == 0
    result = runner.invoke(app, ["recommend", "--like", "vim", "-k", "2", "--mode", "dense",
                                 "--json", *base])
    assert result.exit_code == 0, result.output
    assert [h["id"] for h in json.loads(result.output)] == ["emacs", "nano"]

    interactions = tmp_path / "events.csv"
    interactions.write_text("user,item,kind,timestamp\nann,vim,like,2026-11-01T10:00:00Z\n"
                            "ann,mpg123,dislike,1761991200\nbob,sox,purchase,\n"
                            "carl,vlc,view,yesterday\n")
    result = runner.invoke(app, ["interactions", "ingest", str(interactions), "--json", *base])
    report = json.loads(result.output)
    assert report["written"] == 3 and report["total"] == 3
    assert report["problems"][0]["line"] == 5 and "yesterday" in report["problems"][0]["message"]

    result = runner.invoke(app, ["recommend", "--user", "ann", "--json", *base])
    assert {"vim", "mpg123"}.isdisjoint(h["id"] for h in json.loads(result.output))

    out = tmp_path / "recs.parquet"
    result = runner.invoke(app, ["recommend", "--users", "all", "--out", str(out), "-k", "3",
                                 "--json", *base])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["users"] == 2
    table = pq.read_table(out).to_pylist()
    assert {r["user"] for r in table} == {"ann", "bob"} and len(table) == 6
    assert [r["rank"] for r in table if r["user"] == "bob"] == [1, 2, 3]
    users = tmp_path / "users.txt"
    users.write_text("bob\nzoe\n")
    jsonl = tmp_path / "recs.jsonl"
    result = runner.invoke(app, ["recommend", "--users", str(users), "--out", str(jsonl),
                                 *base])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["user"] for line in lines] == ["bob", "zoe"] and lines[1]["items"] == []
    assert "1 users got none" in result.output
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize(("args", "words"), [
    (["recommend"], "give --like ID"),
    (["recommend", "--like", "nope"], "no item 'nope'"),
    (["recommend", "--users", "all"], "needs --out"),
    (["recommend", "--users", "all", "--like", "vim", "--out", "x.parquet"], "leave out"),
    (["recommend", "--like", "vim", "--strategy", "magic"], "strategy must be one of"),
])
def test_cli_errors_say_what_to_do(tmp_path, args, words):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"id": "vim", "text": "an editor"}) + "\n")
    base = ["--store", str(tmp_path / "store")]
    runner.invoke(app, ["ingest", str(docs), "--encoder", "fake:dim=16", *base])
    result = runner.invoke(app, [*args, *base])
    assert result.exit_code == 2
    assert words in " ".join(result.output.split())
