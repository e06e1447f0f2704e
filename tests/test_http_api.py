"""The HTTP API: in-process through TestClient on in-memory stores, and once through a real
uvicorn server on a store directory. Vectors come from the deterministic fake encoder."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kinsight.api.http import Settings, create_app
from kinsight.engine import KinsightError, Store, load_encoder

from .conftest import DOCS, SPEC, doc_items, search, serve


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["hits"]]


# -- service ---------------------------------------------------------------------------------------
def test_health_and_openapi(client):
    assert client.get("/health").json() == {"status": "ok", "collections": 0}
    schema = client.get("/openapi.json").json()
    assert schema["info"]["title"] == "kinsight"
    assert schema["info"]["version"] == version("kinsight")
    models = schema["components"]["schemas"]
    assert models["SearchRequest"]["examples"][0]["text"] == "read a csv file"
    for body in ("CreateCollection", "UpsertRequest", "ItemIn", "DeleteRequest", "SearchRequest"):
        assert models[body]["examples"], body


def test_app_opens_and_closes_its_own_store(tmp_path):
    app = create_app(Settings(store=str(tmp_path / "store"), encoder=SPEC, api_key=None))
    with TestClient(app) as c:
        assert c.post("/collections/docs/items", json={"items": doc_items()}).status_code == 200
    assert app.state.store is None
    with Store(tmp_path / "store") as store:  # the lock was released and the data committed
        assert store.collection("docs").count() == len(DOCS)


def test_a_store_passed_in_stays_open(tmp_path):
    with Store(":memory:") as store:
        with TestClient(create_app(Settings(encoder=SPEC, api_key=None), store=store)) as c:
            c.post("/collections", json={"name": "kept"})
        assert store.list_collections() == ["kept"]


# -- collections -----------------------------------------------------------------------------------
def test_collection_lifecycle(client):
    created = client.post("/collections", json={"name": "notes"})
    assert created.status_code == 201
    assert created.headers["location"] == "/collections/notes"
    assert created.json() == {"name": "notes", "count": 0, "fields": {}, "spaces": []}
    assert [c["name"] for c in client.get("/collections").json()["collections"]] == ["notes"]
    assert client.get("/collections/notes").json()["count"] == 0

    duplicate = client.post("/collections", json={"name": "notes"})
    assert duplicate.status_code == 409
    assert duplicate.json()["error"] == "AlreadyExistsError"

    dropped = client.delete("/collections/notes")
    assert dropped.status_code == 204 and dropped.content == b""
    assert client.get("/collections").json() == {"collections": []}
    assert client.delete("/collections/notes").status_code == 404


def test_unknown_collection_is_404_with_the_message(docs):
    response = docs.post("/collections/nope/search", json={"text": "csv"})
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "NotFoundError"
    assert "no collection 'nope'" in body["detail"] and "docs" in body["detail"]
    assert docs.get("/collections/nope").status_code == 404


def test_invalid_collection_name_is_422(client):
    response = client.post("/collections", json={"name": "Bad Name"})
    assert response.status_code == 422
    assert response.json()["error"] == "InvalidInputError"


# -- items -----------------------------------------------------------------------------------------
def test_upsert_describes_the_collection_and_skips_unchanged(docs):
    info = docs.get("/collections/docs").json()
    assert info["count"] == len(DOCS)
    assert info["fields"] == {"section": "VARCHAR", "text": "VARCHAR", "year": "BIGINT"}
    [space] = info["spaces"]
    assert (space["name"], space["encoder"], space["dim"]) == ("text", SPEC, 32)
    assert space["source_fields"] == ["text"] and space["modality"] == "text"

    again = docs.post("/collections/docs/items", json={"items": doc_items()[:2]}).json()
    assert again == {"written": 0, "unchanged": 2, "problems": [], "warnings": []}


def test_upsert_reports_bad_items_as_problems(client):
    items = [
        {"id": "ok", "fields": {"text": "fine text", "tags": [{"a": 1}], "meta": {"b": 2}}},
        {"id": "empty", "fields": {"text": "   "}},
        {"id": "no-fields"},
        {"id": "nested", "fields": {"text": {"not": "text"}}},
        {"id": "bad-name", "fields": {"text": "words", "id": "shadowing the id"}},
        {"id": "number", "fields": {"text": 42}},
        {"id": "cased", "fields": {"text": "words", "Text": "same column"}},
    ]
    body = client.post("/collections/notes/items", json={"items": items}).json()
    assert body["written"] == 2
    assert [(p["source"], p["line"]) for p in body["problems"]] == [
        ("request", 2), ("request", 3), ("request", 4), ("request", 5), ("request", 7)]
    assert "no text in field 'text'" in body["problems"][0]["message"]
    assert body["problems"][0]["fix"]
    assert "invalid field name 'id'" in body["problems"][3]["message"]
    ok = client.get("/collections/notes/items/ok").json()["fields"]
    assert ok["meta"] == '{"b": 2}' and ok["tags"] == ['{"a": 1}']  # as the file readers store them
    assert client.get("/collections/notes/items/number").json()["fields"]["text"] == "42"


def test_upsert_of_only_bad_items_creates_nothing(client):
    body = client.post("/collections/notes/items", json={"items": [{"id": "x"}]}).json()
    assert body["written"] == 0 and len(body["problems"]) == 1
    assert client.get("/collections").json() == {"collections": []}


def test_upsert_batch_limit_and_validation():
    with serve(max_batch_items=2) as c:
        too_many = c.post("/collections/docs/items", json={"items": doc_items()[:3]})
        assert too_many.status_code == 422 and "max_batch_items" in too_many.json()["detail"]
        assert c.post("/collections/docs/items", json={"items": []}).status_code == 422
        blank_id = {"items": [{"id": "  ", "fields": {"text": "x"}}]}
        assert c.post("/collections/docs/items", json=blank_id).status_code == 422


def test_upsert_keeps_the_text_fields_of_an_existing_space(docs):
    item = {"id": "titled", "fields": {"title": "only a title", "text": "body words"}}
    wrong = docs.post("/collections/docs/items", json={"items": [item], "text_fields": ["title"]})
    assert wrong.status_code == 422 and "built from text fields ['text']" in wrong.text
    assert docs.post("/collections/docs/items", json={"items": [item]}).json()["written"] == 1


def test_get_item_and_ids_with_slashes(docs):
    assert docs.get("/collections/docs/items/py-csv").json() == {
        "id": "py-csv", "fields": {"text": DOCS[0][1], "section": "python", "year": 2021}}
    missing = docs.get("/collections/docs/items/ghost")
    assert missing.status_code == 404 and "no item 'ghost'" in missing.json()["detail"]
    item = {"id": "guides/intro.md", "fields": {"text": "an introduction"}}
    docs.post("/collections/docs/items", json={"items": [item]})
    assert docs.get("/collections/docs/items/guides/intro.md").json()["id"] == "guides/intro.md"


def test_patch_sets_and_removes_fields_without_encoding(docs, monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a field update ran the encoder")

    monkeypatch.setattr(load_encoder(SPEC), "encode", refuse)
    patched = docs.patch("/collections/docs/items/py-csv",
                         json={"set": {"price": 3.5, "section": "data"}, "remove": ["year"]})
    assert patched.status_code == 200 and patched.json() == {"updated": 1}, patched.text
    fields = docs.get("/collections/docs/items/py-csv").json()["fields"]
    assert fields["price"] == 3.5 and fields["section"] == "data" and fields["year"] is None
    found = docs.post("/collections/docs/items/update", json={"updates": [
        {"id": "rs-csv", "set": {"price": 1.0}}, {"id": "go-csv", "set": {"price": 9.0}}]})
    assert found.json() == {"updated": 2}
    cheap = {"field": "price", "op": "lt", "value": 4}
    assert sorted(ids(docs.post("/collections/docs/search",
                                json={"vector": [0.1] * 32, "k": 10, "filter": cheap}))) == [
        "py-csv", "rs-csv"]


def test_field_updates_refuse_unknown_ids_and_encoded_fields_whole(docs):
    ghost = docs.patch("/collections/docs/items/ghost", json={"set": {"price": 1}})
    assert ghost.status_code == 404 and "ghost" in ghost.json()["detail"]
    batch = docs.post("/collections/docs/items/update", json={"updates": [
        {"id": "py-csv", "set": {"price": 1}}, {"id": "ghost", "set": {"price": 2}}]})
    assert batch.status_code == 404
    assert docs.get("/collections/docs/items/py-csv").json()["fields"].get("price") is None
    encoded = docs.patch("/collections/docs/items/py-csv", json={"set": {"text": "new words"}})
    assert encoded.status_code == 422 and "text" in encoded.json()["detail"]
    for body in ({}, {"set": {"a": 1}, "remove": ["a"]}, {"sett": {"a": 1}}):
        assert docs.patch("/collections/docs/items/py-csv", json=body).status_code == 422


def test_delete_by_ids_and_by_filter(docs):
    gone = docs.post("/collections/docs/items/delete", json={"ids": ["py-csv", "ghost"]})
    assert gone.json() == {"deleted": 1}
    by_filter = {"filter": {"field": "section", "op": "eq", "value": "go"}}
    assert docs.post("/collections/docs/items/delete", json=by_filter).json() == {"deleted": 2}
    assert docs.get("/collections/docs").json()["count"] == len(DOCS) - 3
    for body in ({}, {"ids": ["a"], **by_filter}, {"filter": "section = 'go'"}):
        assert docs.post("/collections/docs/items/delete", json=body).status_code == 422


# -- search ----------------------------------------------------------------------------------------
def test_search_by_text(docs):
    response = search(docs, text="python pandas csv", k=3)
    body = response.json()
    assert ids(response)[0] == "py-csv" and len(body["hits"]) == 3
    top = body["hits"][0]
    assert top["fields"] == {"text": DOCS[0][1], "section": "python", "year": 2021}
    assert top["chunk"] == {"index": 0, "start": 0, "end": len(DOCS[0][1])}
    assert body["took_ms"] >= 0
    scores = [hit["score"] for hit in body["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_search_by_vector(docs):
    vector = load_encoder(SPEC).encode([DOCS[3][1]])[0].tolist()
    hits = search(docs, vector=vector, k=2, exact=True).json()["hits"]
    assert hits[0]["id"] == "rs-own" and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    short = search(docs, vector=[1.0, 0.0])
    assert short.status_code == 422 and "dimensions" in short.json()["detail"]


def test_search_by_id_leaves_the_item_out(docs):
    found = ids(search(docs, id="rs-csv", k=5))
    assert "rs-csv" not in found and len(found) == 5
    assert search(docs, id="ghost").status_code == 404


def test_search_with_structured_filters(docs):
    rust = search(docs, text="csv", filter={"field": "section", "op": "eq", "value": "rust"})
    assert set(ids(rust)) == {"rs-csv", "rs-own"}
    nested = {"and": [{"field": "year", "op": "ge", "value": 2020},
                      {"not": {"field": "section", "op": "in", "value": ["go"]}}]}
    assert set(ids(search(docs, text="csv", filter=nested))) == {"py-csv", "rs-csv", "rs-own"}
    unknown = search(docs, text="csv", filter={"field": "nope", "op": "eq", "value": 1})
    assert unknown.status_code == 422 and unknown.json()["error"] == "FilterError"


@pytest.mark.parametrize("sql", ["year > 2020", "1=1; DROP SCHEMA docs CASCADE"])
def test_raw_sql_filters_are_refused(docs, sql):
    for where in (sql, {"or": [sql]}, {"sql": sql}):
        response = search(docs, text="csv", filter=where)
        assert response.status_code == 422, where
    assert "raw SQL is not accepted" in search(docs, text="csv", filter=sql).text
    assert docs.get("/collections/docs").json()["count"] == len(DOCS)


def test_bm25_and_hybrid(docs):
    bm25 = search(docs, text="serde", mode="bm25")
    assert ids(bm25) == ["rs-csv"]
    for fusion in ("zscore", "minmax", "rrf"):
        hybrid = ids(search(docs, text="csv file", mode="hybrid", fusion=fusion, dense_weight=0.3))
        assert set(hybrid[:3]) >= {"py-csv", "go-csv"}
    assert search(docs, vector=[0.1] * 32, mode="bm25").status_code == 422


@pytest.mark.parametrize(("route", "body"), [
    ("search", '{"vector": [1e39, 0.5]}'),  # past float32: it would be searched as an infinity
    ("search", '{"vector": [NaN, 0.5]}'),
    ("recommend", '{"positive": [[0.5, -1e39]]}'),
    ("recommend", '{"positive": [{"id": "py-csv", "weight": Infinity}]}'),
    ("recommend", '{"user": "u1", "half_life_days": Infinity}'),
    ("anomalies", '{"vectors": [[0.5, 0.5], [0.5]]}'),
    ("mismatch/duplicates", '{"threshold": NaN}'),
    ("cluster", '{"seed": -1}'),  # scikit-learn refuses it
    ("cluster", '{"k": 2, "seed": 2147483648}'),  # FAISS refuses it
    ("mismatch/pairs", '{"a": "text", "b": "text", "seed": -1}'),
    ("mismatch/labels", '{"label_field": "section", "seed": -1}'),
    ("classify/zero-shot", '{"labels": ["a", "b"], "temperature": 1e-320}'),  # NaN probabilities
])
def test_numbers_the_engine_cannot_use_are_422(docs, route, body):
    response = docs.post(f"/collections/docs/{route}", content=body.encode(),
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "ValidationError"


def test_returned_fields(docs):
    assert search(docs, text="csv", fields=["year"]).json()["hits"][0]["fields"].keys() == {"year"}
    assert all(h["fields"] == {} for h in search(docs, text="csv", fields=[]).json()["hits"])
    unknown = search(docs, text="csv", fields=["yaer"])
    assert unknown.status_code == 422 and "'yaer'" in unknown.json()["detail"]


@pytest.mark.parametrize("query", [
    {}, {"text": "a", "vector": [0.1] * 32}, {"text": "a", "id": "py-csv"},
    {"text": "a", "vector": [0.1] * 32, "id": "py-csv"},
])
def test_exactly_one_query(docs, query):
    response = search(docs, **query)
    assert response.status_code == 422
    assert response.json()["error"] == "ValidationError"
    assert "exactly one of 'text', 'vector' or 'id'" in response.text


@pytest.mark.parametrize(("field", "value"), [
    ("k", 0), ("k", 1001), ("dense_weight", 1.5), ("mode", "fuzzy"), ("fusion", "max"),
    ("fitler", {}),
])
def test_out_of_range_options_are_422(docs, field, value):
    assert search(docs, text="csv", **{field: value}).status_code == 422
    assert ids(search(docs, text="csv", k=1000))  # the bound itself is fine


# -- security, limits, failures --------------------------------------------------------------------
def test_api_key():
    with serve(api_key="s3cret") as c:
        assert c.get("/health").status_code == 200
        assert c.get("/openapi.json").status_code == 200
        missing = c.get("/collections")
        assert missing.status_code == 401 and missing.json()["error"] == "Unauthorized"
        assert missing.headers["www-authenticate"] == "APIKey"
        assert c.get("/collections", headers={"X-API-Key": "s3creT"}).status_code == 401
        assert c.post("/collections", json={"name": "x"}).status_code == 401
        assert c.get("/collections", headers={"X-API-Key": "s3cret"}).status_code == 200


def test_request_too_large():
    with serve(max_request_bytes=2_000) as c:
        small = c.post("/collections/docs/items", json={"items": doc_items()[:1]})
        assert small.status_code == 200
        big = {"items": [{"id": "big", "fields": {"text": "word " * 1_000}}]}
        response = c.post("/collections/docs/items", json=big)
        assert response.status_code == 413 and response.json()["error"] == "RequestTooLarge"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
            yield b'{"items": [{"id": "big", "fields": {"text": "'
            for _ in range(100):
                yield b"word " * 10
            yield b'"}}]}'

        streamed = c.post("/collections/docs/items", content=chunks(),
                          headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        assert c.get("/collections/docs").json()["count"] == 1


@pytest.mark.parametrize("error", [RuntimeError("boom at /srv/secret/path"),
                                   KinsightError("store closed at /srv/secret/path")])
def test_internal_errors_hide_the_details(client, monkeypatch, caplog, error):
    def fail(self: Store) -> list[str]:
        raise error

    monkeypatch.setattr(Store, "list_collections", fail)
    with caplog.at_level(logging.ERROR, logger="kinsight.api.http"):
        response = client.get("/collections")
    assert response.status_code == 500
    assert response.json() == {"error": "InternalError",
                               "detail": "internal error; see the server log"}
    assert "secret" not in response.text and "Traceback" not in response.text
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is error]
    assert len(logged) == 1  # the traceback is in the server log, once


def test_unreadable_bodies_are_a_documented_400(client):
    # Bytes that are not UTF-8 cannot be parsed as JSON; FastAPI answers 400 before validation.
    response = client.post("/collections/docs/search", content=b'{"text": "\x81"}',
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "BadRequest"
    bad_length = client.post("/collections", content=b"{}",
                             headers={"Content-Type": "application/json", "Content-Length": "x"})
    assert bad_length.status_code == 400
    paths = client.get("/openapi.json").json()["paths"]
    assert "400" in paths["/collections/{name}/search"]["post"]["responses"]
    assert "400" in paths["/collections"]["get"]["responses"]


def test_errors_that_echo_nan_or_infinity_still_render(docs):
    # Not JSON, but Python's parser takes them: the 422 must not turn into a 500 when rendered.
    response = docs.post("/collections/docs/search", content=b'{"text": "csv", "dense_weight": NaN}',
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["input"] == "nan"


def test_unknown_route_keeps_the_error_shape(client):
    response = client.get("/nowhere")
    assert response.status_code == 404 and response.json()["error"] == "NotFound"


# -- analysis runs -------------------------------------------------------------------------------
def test_run_times_carry_their_utc_offset(docs):
    run_id = docs.post("/collections/docs/cluster", json={"k": 2}).json()["run_id"]
    listed = docs.get("/collections/docs/runs").json()["runs"][0]["created_at"]
    created = datetime.fromisoformat(docs.get(f"/collections/docs/runs/{run_id}").json()["created_at"])
    assert created == datetime.fromisoformat(listed)
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - created) < timedelta(minutes=5)


# Found as 500s by the fuzz test; the engine refuses both now.
def test_hdbscan_with_groups_larger_than_the_items_is_422(docs):
    response = docs.post("/collections/docs/cluster",
                         json={"method": "hdbscan", "min_cluster_size": len(DOCS) + 1})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("fields", [{"big": 2**70}, {"year": 1e300}])
def test_numbers_past_64_bit_fields_are_refused_not_500(docs, fields):
    response = docs.post("/collections/docs/items",
                         json={"items": [{"id": "n", "fields": {"text": "a note", **fields}}]})
    assert response.status_code < 500, response.text


# -- a real server ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_healthy(http: httpx.Client, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}:\n{log.read_text()}")
        try:
            if http.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the server did not answer /health within 60 s:\n{log.read_text()}")


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)  # uvicorn's graceful shutdown: the lifespan closes the store
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def test_real_uvicorn_server(tmp_path):
    store_dir, log = tmp_path / "store", tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KINSIGHT_")}
    env |= {"KINSIGHT_STORE": str(store_dir), "KINSIGHT_ENCODER": SPEC}
    port = _free_port()
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "kinsight.api.http:create_app",
             "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            _wait_until_healthy(http, server, log)
            upsert = http.post("/collections/docs/items", json={"items": doc_items()})
            assert upsert.json()["written"] == len(DOCS)
            found = http.post("/collections/docs/search", json={"text": "rust serde csv", "k": 2})
            assert found.json()["hits"][0]["id"] == "rs-csv"

            # Concurrent first writes to one new collection must not race to create it.
            statuses: list[int] = []

            def write(n: int) -> None:
                item = {"id": f"n{n}", "fields": {"text": f"note number {n}"}}
                statuses.append(http.post("/collections/notes/items",
                                          json={"items": [item]}).status_code)

            threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert statuses == [200] * 8
            assert http.get("/collections/notes").json()["count"] == 8
    finally:
        _stop(server)
    # Recent uvicorn re-raises the signal once it has shut down, so -SIGTERM is a clean exit too.
    assert server.returncode in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete" in log.read_text()
    with Store(store_dir) as store:  # the server released the write lock and kept everything
        assert store.collection("docs").count() == len(DOCS)
        assert any(store.collection("docs").index_folder.iterdir())


def test_long_items_are_chunked_and_scores_aggregate(docs):
    words = " ".join(f"filler{i}" for i in range(90))
    docs.post("/collections/docs/items", json={"items": [
        {"id": "long", "fields": {"text": f"zebra stripes {words}"}}]})
    best = search(docs, text="zebra stripes", k=1, mode="dense").json()["hits"][0]
    mean = search(docs, text="zebra stripes", k=1, mode="dense", aggregate="mean").json()["hits"][0]
    assert best["id"] == mean["id"] == "long"
    assert best["chunk"]["index"] == 0 and best["chunk"]["end"] < len(f"zebra stripes {words}")
    assert mean["score"] < best["score"]  # the later chunks do not mention zebras
    assert search(docs, text="x", aggregate="median").status_code == 422
