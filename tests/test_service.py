"""The HTTP API as a service: reads racing writes, batch calls, embeddings, health and metrics.
In-process through TestClient with the deterministic fake encoder, as in test_http_api.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from kinsight.engine import encoders, load_encoder

from .test_http_api import SPEC, doc_items, search, serve


@pytest.fixture
def client() -> Iterator[TestClient]:
    with serve() as c:
        yield c


@pytest.fixture
def docs(client: TestClient) -> TestClient:
    response = client.post("/collections/docs/items", json={"items": doc_items()})
    assert response.status_code == 200, response.text
    return client


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
