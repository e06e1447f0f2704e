"""The HTTP API as a service: reads racing writes, batch calls, embeddings, health and metrics.
In-process through TestClient with the deterministic fake encoder, as in test_http_api.py."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from kinsight.engine import encoders, load_encoder

from .conftest import DOCS, SPEC, doc_items, search, serve


class SlowEncoder:
    """The fake encoder of ``SPEC``, taking ``seconds`` over every batch of documents."""

    def __init__(self, seconds: float) -> None:
        self.inner = load_encoder(SPEC)
        self.seconds = seconds
        self.encoding = threading.Event()

    @property
    def info(self) -> encoders.EncoderInfo:
        return self.inner.info

    def encode(self, inputs: Sequence[Any], *, role: encoders.Role = "document") -> np.ndarray:
        if role == "document":
            self.encoding.set()
            time.sleep(self.seconds)
        return self.inner.encode(inputs, role=role)


def _in_background(client: TestClient, items: list[dict[str, Any]]) -> threading.Thread:
    writer = threading.Thread(target=lambda: client.post(
        "/collections/docs/items", json={"items": items}).raise_for_status())
    writer.start()
    return writer


NEW_ITEMS = [{"id": f"new-{i}", "fields": {"text": f"a new note about csv number {i}"}}
             for i in range(5)]


# -- reads never wait for writes -------------------------------------------------------------------
def test_a_search_racing_a_slow_encoding_answers_promptly(docs, monkeypatch):
    slow = SlowEncoder(seconds=3)
    monkeypatch.setitem(encoders._cache, SPEC, slow)  # what load_encoder(SPEC) hands out
    writer = _in_background(docs, NEW_ITEMS)
    assert slow.encoding.wait(10)
    started = time.perf_counter()
    hits = search(docs, text="csv file", mode="dense", k=3)
    assert time.perf_counter() - started < 1.0
    assert hits.status_code == 200 and len(hits.json()["hits"]) == 3
    writer.join(30)
    assert docs.get("/collections/docs").json()["count"] == len(doc_items()) + len(NEW_ITEMS)


def test_a_search_racing_a_slow_commit_answers_promptly(docs, monkeypatch):
    """A write holds the database's write lock for its whole transaction; a read of an open
    collection must not queue behind it (it sees the state before the commit)."""
    db = docs.app.state.store.db
    original = db.writing
    committing = threading.Event()

    @contextmanager
    def slow_writing(collection: str | None = None) -> Iterator[Any]:
        with original(collection) as con:
            yield con
            committing.set()
            time.sleep(3)

    monkeypatch.setattr(db, "writing", slow_writing)
    writer = _in_background(docs, NEW_ITEMS)
    assert committing.wait(10)
    started = time.perf_counter()
    found = search(docs, text="csv", k=10)
    assert time.perf_counter() - started < 1.0
    assert found.status_code == 200
    assert not any(hit["id"].startswith("new-") for hit in found.json()["hits"])  # not committed
    writer.join(30)
    assert any(hit["id"].startswith("new-") for hit in search(docs, text="csv", k=20).json()["hits"])


class HeldEncoder:
    """The fake encoder of ``SPEC``, holding every batch of documents with a text containing
    ``HOLD`` until ``release`` is set (``holding`` says one is held); other batches pass."""

    def __init__(self) -> None:
        self.inner = load_encoder(SPEC)
        self.holding = threading.Event()
        self.release = threading.Event()

    @property
    def info(self) -> encoders.EncoderInfo:
        return self.inner.info

    def encode(self, inputs: Sequence[Any], *, role: encoders.Role = "document") -> np.ndarray:
        if role == "document" and any("HOLD" in text for text in inputs):
            self.holding.set()
            if not self.release.wait(30):
                raise TimeoutError("the test never released the encoder")
        return self.inner.encode(inputs, role=role)


def _upsert_in_background(client: TestClient, items: list[dict[str, Any]]
                          ) -> tuple[threading.Thread, list[Any]]:
    answers: list[Any] = []
    writer = threading.Thread(target=lambda: answers.append(client.post(
        "/collections/docs/items", json={"items": items})))
    writer.start()
    return writer, answers


def test_an_upsert_writes_and_a_search_answers_while_another_upsert_encodes(docs, monkeypatch):
    held = HeldEncoder()
    monkeypatch.setitem(encoders._cache, SPEC, held)
    slow = [{"id": f"slow-{i}", "fields": {"text": f"HOLD slow note {i} on csv"}}
            for i in range(3)]
    writer, answers = _upsert_in_background(docs, slow)
    try:
        assert held.holding.wait(10)
        started = time.perf_counter()
        quick = docs.post("/collections/docs/items", json={"items": NEW_ITEMS})
        hits = search(docs, text="csv file", mode="hybrid", k=3)
        # Bounded well below the 30 s the held upsert would take: neither waited for it.
        assert time.perf_counter() - started < 5.0
        assert quick.status_code == 200 and quick.json()["written"] == len(NEW_ITEMS)
        assert hits.status_code == 200 and len(hits.json()["hits"]) == 3
        assert not answers  # the first upsert is still encoding
    finally:
        held.release.set()
        writer.join(30)
    assert answers[0].status_code == 200 and answers[0].json()["written"] == len(slow)
    ids = [item["id"] for item in doc_items() + NEW_ITEMS + slow]
    assert docs.get("/collections/docs").json()["count"] == len(ids)
    for item_id in ids:
        assert docs.get(f"/collections/docs/items/{item_id}").status_code == 200
    assert {h["id"] for h in search(docs, text="HOLD slow note on csv", k=3).json()["hits"]} == {
        item["id"] for item in slow}


def test_an_upsert_whose_collection_is_dropped_while_it_encodes_writes_nothing(docs, monkeypatch):
    held = HeldEncoder()
    monkeypatch.setitem(encoders._cache, SPEC, held)
    writer, answers = _upsert_in_background(docs, [{"id": "x", "fields": {"text": "HOLD x"}}])
    try:
        assert held.holding.wait(10)
        assert docs.delete("/collections/docs").status_code == 204
    finally:
        held.release.set()
        writer.join(30)
    assert answers[0].status_code == 404, answers[0].text
    assert "dropped while these items were encoded" in answers[0].json()["detail"]
    assert docs.get("/collections").json()["collections"] == []


@pytest.mark.parametrize("held_section", ["python", "changed"], ids=["unchanged", "fields-only"])
def test_two_upserts_of_one_id_leave_the_one_written_last_whole(docs, monkeypatch, held_section):
    """The held upsert diffs py-csv against the stored item (unchanged, or its section alone
    changed: no encoding planned), then another upsert gives py-csv a new text and commits. The
    held one, written last, must leave py-csv as it says: its text, vectors and hash."""
    held = HeldEncoder()
    monkeypatch.setitem(encoders._cache, SPEC, held)
    first_text = DOCS[0][1]
    held_items = [{"id": "py-csv", "fields": {"text": first_text, "section": held_section,
                                               "year": 2021}},
                  {"id": "held", "fields": {"text": "HOLD a note that takes long to encode"}}]
    writer, answers = _upsert_in_background(docs, held_items)
    try:
        assert held.holding.wait(10)
        other = {"id": "py-csv", "fields": {"text": "a brand new text about go channels",
                                            "section": "go", "year": 2024}}
        assert docs.post("/collections/docs/items", json={"items": [other]}).json()["written"] == 1
    finally:
        held.release.set()
        writer.join(30)
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].json() | {"problems": [], "warnings": []} == {
        "written": 2, "unchanged": 0, "problems": [], "warnings": []}
    item = docs.get("/collections/docs/items/py-csv").json()["fields"]
    assert (item["text"], item["section"], item["year"]) == (first_text, held_section, 2021)
    stored = docs.app.state.store.collection("docs").item_vectors("text", "py-csv")
    np.testing.assert_allclose(stored, held.inner.encode([first_text]), atol=1e-6)
    again = docs.post("/collections/docs/items", json={"items": held_items[:1]}).json()
    assert (again["written"], again["unchanged"]) == (0, 1)  # its hash says what is stored


# -- batch calls -----------------------------------------------------------------------------------
def test_a_search_batch_answers_in_order_with_an_error_in_place_of_a_bad_query(docs):
    queries: list[dict[str, Any]] = [
        {"text": "rust serde csv", "k": 2},
        {"vector": [1.0, 2.0], "k": 2},  # the space has 32 dimensions
        {"text": "http server", "k": 3, "mode": "bm25",
         "filter": {"field": "section", "op": "eq", "value": "go"}},
        {"id": "no-such-item"},
        {"text": "csv", "k": 1, "space": "pictures"},
        {"id": "py-csv", "k": 4, "fields": []},
    ]
    response = docs.post("/collections/docs/search/batch", json={"queries": queries})
    assert response.status_code == 200, response.text
    answers = response.json()["answers"]
    assert [a["status"] for a in answers] == [200, 422, 200, 404, 404, 200]
    assert "32" in answers[1]["error"]["detail"] and answers[1]["hits"] == []
    assert "no-such-item" in answers[3]["error"]["detail"]
    assert answers[4]["error"]["error"] == "NotFoundError"
    for query, answer in zip(queries, answers, strict=True):
        if answer["status"] == 200:  # the same hits as the query alone
            alone = search(docs, **query).json()["hits"]
            assert answer["hits"] == alone and alone


def test_batched_queries_share_one_encoder_batch(docs, monkeypatch):
    texts = ["read a csv file", "rust ownership", "go http server", "sort a python list"]
    singles = [search(docs, text=t, k=2 + i).json()["hits"] for i, t in enumerate(texts)]
    batches: list[int] = []
    inner = load_encoder(SPEC)

    class Counting:
        info = inner.info

        def encode(self, inputs: Sequence[Any], *, role: encoders.Role = "document"
                   ) -> np.ndarray:
            batches.append(len(inputs))
            return inner.encode(inputs, role=role)

    monkeypatch.setitem(encoders._cache, SPEC, Counting())
    response = docs.post("/collections/docs/search/batch", json={"queries": [
        {"text": t, "k": 2 + i} for i, t in enumerate(texts)]})
    assert [a["hits"] for a in response.json()["answers"]] == singles
    assert batches == [len(texts)]  # each k its own, one encoder call for all


def test_batches_over_the_limit_or_malformed_are_refused_whole(docs):
    with serve(max_batch_items=2) as small:
        small.post("/collections/docs/items", json={"items": doc_items()[:2]})
        refused = small.post("/collections/docs/search/batch",
                             json={"queries": [{"text": "csv"}] * 3})
        assert refused.status_code == 422 and "max_batch_items" in refused.json()["detail"]
    malformed = docs.post("/collections/docs/search/batch",
                          json={"queries": [{"text": "csv"}, {"text": "a", "vector": [1.0]}]})
    assert malformed.status_code == 422
    assert docs.post("/collections/docs/search/batch", json={"queries": []}).status_code == 422


def test_a_recommend_batch_answers_in_order_with_an_error_in_place_of_a_bad_request(docs):
    requests: list[dict[str, Any]] = [
        {"positive": ["rs-csv"], "k": 2},
        {"positive": ["no-such-item"]},
        {"user": "nobody"},
        {"positive": ["go-http"], "k": 3, "filter": {"field": "year", "op": "ge", "value": 2020}},
    ]
    response = docs.post("/collections/docs/recommend/batch", json={"requests": requests})
    assert response.status_code == 200, response.text
    answers = response.json()["answers"]
    assert [a["status"] for a in answers] == [200, 404, 404, 200]
    for request, answer in zip(requests, answers, strict=True):
        if answer["status"] == 200:
            alone = docs.post("/collections/docs/recommend", json=request).json()["hits"]
            assert answer["hits"] == alone and alone


# -- embeddings ------------------------------------------------------------------------------------
def test_embed_returns_the_vectors_a_space_stores(docs):
    store = docs.app.state.store
    texts = [text for _, text, _, _ in DOCS[:3]]
    by_space = docs.post("/embed", json={"texts": texts, "collection": "docs"})
    assert by_space.status_code == 200, by_space.text
    body = by_space.json()
    stored = np.stack([store.collection("docs").item_vectors("text", i)[0] for i, *_ in DOCS[:3]])
    np.testing.assert_allclose(np.array(body["vectors"]), stored, atol=1e-6)
    assert body["dim"] == 32 and body["encoder"] == SPEC and body["normalised"]
    by_encoder = docs.post("/embed", json={"texts": texts, "encoder": SPEC}).json()
    assert by_encoder["vectors"] == body["vectors"]
    python = store.embed(texts, SPEC).vectors  # the same from Python
    np.testing.assert_allclose(python, stored, atol=1e-6)
    np.testing.assert_allclose(store.collection("docs").embed(texts).vectors, stored, atol=1e-6)


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"texts": ["x"], "encoder": "sentence-transformers:/etc"}, 422, "not served here"),
    ({"texts": ["x"]}, 422, "exactly one of"),
    ({"texts": ["x"], "collection": "docs", "encoder": SPEC}, 422, "exactly one of"),
    ({"texts": ["x"], "encoder": SPEC, "space": "text"}, 422, "goes with 'collection'"),
    ({"texts": [], "collection": "docs"}, 422, "at least 1"),
    ({"texts": ["x"], "collection": "nope"}, 404, "no collection 'nope'"),
    ({"texts": ["x"], "collection": "docs", "space": "image"}, 404, "no vector space"),
])
def test_embed_refuses_what_it_cannot_embed(docs, body, status, says):
    response = docs.post("/embed", json=body)
    assert response.status_code == status and says in response.text, response.text


def test_embed_needs_json_or_a_form(docs):
    response = docs.post("/embed", content=b"read a csv file", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "multipart/form-data" in response.json()["detail"]
    assert docs.post("/embed", content=b"{not json",
                     headers={"content-type": "application/json"}).status_code == 400


def test_embed_pictures_as_multipart(tmp_path):
    pytest.importorskip("open_clip")
    from kinsight.api.http import Settings, create_app
    from kinsight.engine import Store
    from kinsight.indexers.ingest import ingest_file

    from .test_images import COLOURS, drawing, two_spaces
    rows = []
    for seed, name in enumerate(("red", "blue"), start=1):
        drawing(COLOURS[name], seed=seed).save(tmp_path / f"{name}.png")
        rows.append(f'{{"id": "{name}", "image": "{name}.png", "caption": "a {name} square"}}')
    (tmp_path / "list.jsonl").write_text("\n".join(rows) + "\n")
    with Store(":memory:") as store:
        ingest_file(store, tmp_path / "list.jsonl", two_spaces(), progress=False)
        with TestClient(create_app(Settings(api_key=None), store=store)) as client:
            files = [("image", (f"{n}.png", (tmp_path / f"{n}.png").read_bytes(), "image/png"))
                     for n in ("blue", "red")]
            response = client.post("/embed", files=files,
                                   data={"collection": "pics", "space": "image"})
            assert response.status_code == 200, response.text
            stored = np.stack([store.collection("pics").item_vectors("image", n)[0]
                               for n in ("blue", "red")])
            np.testing.assert_allclose(np.array(response.json()["vectors"]), stored, atol=1e-4)
            assert "RANDOM" in response.json()["warnings"][0]
            bad = client.post("/embed", files=[("image", ("x.png", b"no picture", "image/png"))],
                              data={"collection": "pics"})
            assert bad.status_code == 422 and "picture 1 (x.png)" in bad.json()["detail"]
            none = client.post("/embed", data={"collection": "pics", "space": "image"},
                               files=[("other", ("a.txt", b"x", "text/plain"))])
            assert none.status_code == 422 and none.json()["detail"][0]["loc"] == ["other"]


def test_cli_embed_writes_the_stored_vectors_to_parquet(tmp_path):
    import json

    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from kinsight.api.cli import app
    from kinsight.engine import Store

    source = tmp_path / "docs.jsonl"
    lines = [json.dumps({"id": i, "text": t}) for i, t, _, _ in DOCS] + ['{"id": "empty"}']
    source.write_text("\n".join(lines) + "\n")
    store = tmp_path / "store"
    runner = CliRunner()
    ingested = runner.invoke(app, ["ingest", str(source), "--store", str(store), "--encoder", SPEC])
    assert ingested.exit_code == 0, ingested.output
    by_space = runner.invoke(app, ["embed", str(source), "--out", str(tmp_path / "a.parquet"),
                                   "-c", "docs", "--store", str(store), "--batch-size", "4"])
    assert by_space.exit_code == 0, by_space.output
    said = " ".join(by_space.output.split())  # rich wraps lines at the terminal's width
    assert f"wrote {len(DOCS)} vectors" in said and "(1 skipped)" in said
    table = pq.read_table(tmp_path / "a.parquet")
    assert table.column("id").to_pylist() == [i for i, *_ in DOCS]
    assert table.schema.metadata[b"encoder"] == SPEC.encode()
    with Store(store, read_only=True) as opened:
        stored = np.stack([opened.collection("docs").item_vectors("text", i)[0] for i, *_ in DOCS])
    np.testing.assert_allclose(np.stack(table.column("vector").to_numpy(zero_copy_only=False)),
                               stored, atol=1e-6)
    by_encoder = runner.invoke(app, ["embed", str(source), "--out", str(tmp_path / "b.parquet"),
                                     "--encoder", SPEC])
    assert by_encoder.exit_code == 0, by_encoder.output
    assert pq.read_table(tmp_path / "b.parquet").equals(table.replace_schema_metadata(
        pq.read_table(tmp_path / "b.parquet").schema.metadata))
    both = runner.invoke(app, ["embed", str(source), "--out", "x.parquet", "-c", "docs",
                               "--encoder", SPEC])
    assert both.exit_code == 2 and "not both" in " ".join(both.output.split())


# -- service hygiene -------------------------------------------------------------------------------
def _until_ready(client: TestClient) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (ready := client.get("/ready")).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.status_code == 200, ready.text
    return dict(ready.json())


def test_ready_once_the_served_spaces_are_warm(tmp_path):
    from kinsight.api.http import Settings, create_app
    from kinsight.engine import Store

    with Store(tmp_path / "store") as store:
        store.create_collection("docs")
        with TestClient(create_app(Settings(encoder=SPEC, api_key=None), store=store)) as c:
            c.post("/collections/docs/items", json={"items": doc_items()}).raise_for_status()
    slow = SlowEncoder(seconds=0)
    with Store(tmp_path / "store") as store, pytest.MonkeyPatch.context() as patch:
        patch.setitem(encoders._cache, SPEC, slow)
        with TestClient(create_app(Settings(encoder=SPEC, api_key=None), store=store)) as c:
            assert c.get("/health").status_code == 200
            assert _until_ready(c) == {"status": "ready", "warmed": ["docs/text"], "failed": []}
            assert store.collection("docs").index("text")._index is not None  # loaded, caught up


class SlowQueries(SlowEncoder):
    """``SlowEncoder`` slow on queries (what warming encodes) instead of documents."""

    def encode(self, inputs: Sequence[Any], *, role: encoders.Role = "document") -> np.ndarray:
        if role == "query":
            self.encoding.set()
            time.sleep(self.seconds)
        return self.inner.encode(inputs, role=role)


def test_an_app_stopping_while_it_warms_up_stops_warming_before_the_store_closes(tmp_path):
    """Warming reads the store in a thread of its own; an app stopped meanwhile waits for the
    space being warmed, warms no other, and leaves no thread reading a store its owner closes
    (closing one a thread is reading raised "connection is busy")."""
    from kinsight.api.http import Settings, create_app
    from kinsight.engine import Store

    with Store(tmp_path / "store") as store:
        for name in ("a", "b", "c"):
            store.create_collection(name)
        with TestClient(create_app(Settings(encoder=SPEC, api_key=None, warm_up=False),
                                   store=store)) as c:
            for name in ("a", "b", "c"):
                c.post(f"/collections/{name}/items",
                       json={"items": doc_items()}).raise_for_status()
    slow = SlowQueries(seconds=1)
    with Store(tmp_path / "store") as store, pytest.MonkeyPatch.context() as patch:
        patch.setitem(encoders._cache, SPEC, slow)
        app = create_app(Settings(encoder=SPEC, api_key=None), store=store)
        with TestClient(app):
            assert slow.encoding.wait(10)  # the first space is warming
        readiness = app.state.readiness
        assert not any(t.name == "kinsight-warm-up" for t in threading.enumerate())
        assert len(readiness.warmed) == 1 and readiness.done.is_set()


def _index_files(store: Path) -> list[str]:
    """The FAISS files and the saved BM25 folders under a store directory."""
    return sorted(p.name for pattern in ("*.faiss", "kinsight.json") for p in store.rglob(pattern))


def test_upserts_leave_the_index_files_to_the_periodic_save_and_the_close(tmp_path):
    from kinsight.api.http import Settings, create_app
    from kinsight.engine import Store

    never = Settings(encoder=SPEC, api_key=None, index_save_seconds=0)
    with Store(tmp_path / "a") as store:
        with TestClient(create_app(never, store=store)) as c:
            c.post("/collections/docs/items", json={"items": doc_items()}).raise_for_status()
            # Caught up in memory: the items are found at once, by both indexes.
            for mode in ("dense", "bm25"):
                assert search(c, text="csv", mode=mode).json()["hits"], mode
            assert _index_files(tmp_path / "a") == []
        assert _index_files(tmp_path / "a") == []  # the app leaves a store given to its owner
    assert _index_files(tmp_path / "a") == ["kinsight.json", "text.faiss"]  # saved on close

    often = Settings(encoder=SPEC, api_key=None, index_save_seconds=0.05)
    with Store(tmp_path / "b") as store, TestClient(create_app(often, store=store)) as c:
        c.post("/collections/docs/items", json={"items": doc_items()}).raise_for_status()
        deadline = time.monotonic() + 30
        while _index_files(tmp_path / "b") != ["kinsight.json", "text.faiss"] \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _index_files(tmp_path / "b") == ["kinsight.json", "text.faiss"]


def test_request_ids_are_echoed_or_made_and_reach_the_logs(docs, caplog):
    from kinsight.api.http.service import RequestIdFilter

    caplog.handler.addFilter(RequestIdFilter())
    caplog.set_level(logging.INFO, logger="kinsight")
    given = docs.get("/collections/nope", headers={"X-Request-ID": "abc-123"})
    assert given.status_code == 404 and given.headers["X-Request-ID"] == "abc-123"
    assert [r.request_id for r in caplog.records if "nope" in r.getMessage()] == ["abc-123"]
    made = docs.get("/health").headers["X-Request-ID"]
    forged = docs.get("/health", headers={"X-Request-ID": "x\\nINFO fake line"})
    assert len(made) == 32 and forged.headers["X-Request-ID"] not in ("x\\nINFO fake line", made)


def test_metrics_count_requests_by_route_and_show_index_sizes(docs):
    docs.post("/collections/docs/search/batch", json={"queries": [{"text": "csv"}] * 3})
    search(docs, text="csv")
    text = docs.get("/metrics").text
    assert ('kinsight_requests_total{method="POST",route="/collections/{name}/search",'
            'status="200"} 1.0') in text
    assert 'kinsight_index_vectors{collection="docs",space="text"} 6.0' in text
    assert 'kinsight_items{collection="docs"} 6.0' in text
    assert 'kinsight_encode_batch_size_count{route="/collections/{name}/search/batch"} 1.0' in text
    assert 'kinsight_encode_batch_size_sum{route="/collections/{name}/search/batch"} 3.0' in text
    assert 'route="/collections/{name}/items"' in text  # the upsert of the fixture
    with serve(api_key="k") as secured:
        assert secured.get("/metrics").status_code == 401
        assert secured.get("/ready").status_code in (200, 503)  # probes need no key


def test_cors_origins_are_a_setting(client):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options(
        "/collections/docs/search", headers=preflight).headers
    with serve(cors_origins=["https://app.example"]) as open_to_one:
        answer = open_to_one.options("/collections/docs/search", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://app.example"


def shutdown_order(tmp_path, in_flight: Callable[[Any, threading.Event, list[str]], None]
                   ) -> list[str]:
    """What happens in what order when the app shuts down while ``in_flight(app, started,
    events)`` runs in a thread (it sets ``started`` once under way): "committed" by it, "closed"
    by the store. TestClient cannot keep a request in flight through its shutdown, so the
    thread does what the route does."""
    from kinsight.api.http import Settings, create_app

    settings = Settings(store=str(tmp_path / "store"), encoder=SPEC, api_key=None, warm_up=False)
    app = create_app(settings)
    events: list[str] = []
    with TestClient(app):
        store = app.state.store
        close = store.close
        store.close = lambda: (events.append("closed"), close())[1]
        started = threading.Event()
        writer = threading.Thread(target=in_flight, args=(app, started, events))
        writer.start()
        assert started.wait(10)
    writer.join(10)
    return events


def test_shutdown_waits_for_a_write_in_flight_before_closing_the_store(tmp_path):
    def write(app, started: threading.Event, events: list[str]) -> None:
        with app.state.write_lock:  # a route in flight holds the write lock to commit
            started.set()
            time.sleep(1)
            events.append("committed")

    assert shutdown_order(tmp_path, write) == ["committed", "closed"]


def test_shutdown_waits_for_an_upsert_still_encoding(tmp_path):
    """An upsert encodes with no lock held, so shutdown waits for the writes under way, not
    only for the write lock."""
    def upsert(app, started: threading.Event, events: list[str]) -> None:
        with app.state.writes_under_way.track():  # encoding, no lock held
            started.set()
            time.sleep(1)
            with app.state.write_lock:
                events.append("committed")

    assert shutdown_order(tmp_path, upsert) == ["committed", "closed"]


def test_warm_up_of_a_store_that_cannot_list_its_collections_still_sets_ready(caplog):
    from kinsight.api.http.service import Readiness, warm_up
    from kinsight.engine import Store

    readiness = Readiness()
    with Store(":memory:") as store:
        store.list_collections = lambda: (_ for _ in ()).throw(RuntimeError("disk gone"))
        with caplog.at_level(logging.WARNING, logger="kinsight.api.http.service"):
            warm_up(store, readiness)  # raised in its thread before: ready was set, the log lost it
    assert readiness.done.is_set() and readiness.warmed == [] and readiness.failed == []
    assert "could not list the spaces to warm: disk gone" in caplog.text
