"""Concurrent single searches over HTTP run as batches (api/http/search_batcher.py): each caller
gets the answer it would have got alone, a bad query fails only itself, and batches form."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from kinsight.api.http.search_batcher import SearchBatcher
from kinsight.engine import SearchCall, encoders, load_encoder

from .conftest import SPEC, doc_items, search, serve


class SlowQueries:
    """The fake encoder of ``SPEC``, taking ``seconds`` over every batch of queries, so that
    searches sent together overlap; records the size of each query batch."""

    def __init__(self, seconds: float) -> None:
        self.inner = load_encoder(SPEC)
        self.seconds = seconds
        self.query_batches: list[int] = []
        # A check of the batch's size: the next query batch waits until it is true (<= 60 s).
        self.hold: Any = None

    @property
    def info(self) -> encoders.EncoderInfo:
        return self.inner.info

    def encode(self, inputs: Sequence[Any], *, role: encoders.Role = "document") -> np.ndarray:
        if role == "query":
            self.query_batches.append(len(inputs))
            time.sleep(self.seconds)
            hold, self.hold = self.hold, None
            deadline = time.monotonic() + 60
            while hold is not None and not hold(len(inputs)) and time.monotonic() < deadline:
                time.sleep(0.01)
        return self.inner.encode(inputs, role=role)


@pytest.fixture
def slow() -> Iterator[tuple[TestClient, SlowQueries]]:
    encoder = SlowQueries(seconds=0.3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(encoders._cache, SPEC, encoder)
        with serve() as client:
            client.post("/collections/docs/items", json={"items": doc_items()}).raise_for_status()
            encoder.query_batches.clear()
            yield client, encoder


def _all_at_once(client: TestClient, bodies: list[dict[str, Any]]) -> list[Any]:
    start = threading.Barrier(len(bodies))

    def send(body: dict[str, Any]) -> Any:
        start.wait()
        return client.post("/collections/docs/search", json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


BODIES = [{"text": text, "k": k, "mode": mode}
          for text, k, mode in [("csv file", 3, "hybrid"), ("rust serde", 2, "dense"),
                                ("python list", 4, "bm25"), ("go http server", 1, "hybrid"),
                                ("ownership", 5, "auto"), ("stream large csv", 2, "hybrid")]]
BODIES.append({"id": "rs-csv", "k": 3})
BODIES.append({"vector": [0.5] * 32, "k": 2, "exact": True})
BODIES.append({"text": "csv", "filter": {"field": "section", "op": "eq", "value": "go"}})


def _hits(response: Any) -> list[tuple[str, float]]:
    assert response.status_code == 200, response.text
    return [(hit["id"], round(hit["score"], 5)) for hit in response.json()["hits"]]


def test_concurrent_searches_answer_as_sequential_ones_and_run_in_batches(slow):
    client, encoder = slow
    alone = [_hits(search(client, **body)) for body in BODIES]
    encoded = [body for body in BODIES if "text" in body and body.get("mode") != "bm25"]
    assert encoder.query_batches == [1] * len(encoded)
    encoder.query_batches.clear()
    together = [_hits(response) for response in _all_at_once(client, BODIES)]
    assert together == alone
    assert max(encoder.query_batches) > 1  # texts of several requests were encoded together
    metrics = client.get("/metrics").text
    route = 'route="/collections/{name}/search"'
    batches = float(re.search(rf"kinsight_encode_batch_size_count{{{route}}} (\S+)",
                              metrics).group(1))
    texts = float(re.search(rf"kinsight_encode_batch_size_sum{{{route}}} (\S+)", metrics).group(1))
    sent = 2 * sum("text" in body for body in BODIES)
    # Every text was counted, in fewer observations than texts: some batch held several.
    assert texts == sent and batches < sent


def test_a_bad_query_among_concurrent_ones_fails_alone(slow):
    client, _ = slow
    bad = [{"text": "csv", "filter": {"field": "nope", "op": "eq", "value": 1}},
           {"id": "ghost"}, {"text": "csv", "space": "image"}, {"vector": [1.0, 0.0]}]
    expected = [(response.status_code, response.json()) for response in
                (search(client, **body) for body in bad)]
    assert [status for status, _ in expected] == [422, 404, 404, 422]
    bodies = BODIES[:4] + bad + BODIES[4:]
    answers = _all_at_once(client, bodies)
    for body, response in zip(bodies, answers, strict=True):
        if body in bad:
            assert (response.status_code, response.json()) == expected[bad.index(body)]
        else:
            assert response.status_code == 200 and response.json()["hits"], body


def test_a_lone_search_runs_at_once_and_the_batch_size_is_capped(slow):
    client, encoder = slow
    started = time.perf_counter()
    _hits(search(client, text="csv"))
    assert time.perf_counter() - started < encoder.seconds + 0.25  # no wait for company
    client.app.state.search_batcher.max_batch = 2
    encoder.query_batches.clear()
    for response in _all_at_once(client, [{"text": f"csv {i}"} for i in range(6)]):
        _hits(response)
    assert max(encoder.query_batches) == 2 and sum(encoder.query_batches) == 6


class _Broken:
    """A collection whose batches of more than one call raise what is not a query's fault."""

    name = "broken"

    def search_batch(self, calls: Sequence[SearchCall]) -> list[Any]:
        if len(calls) > 1:
            raise RuntimeError("the batch broke")
        if calls[0].query == "boom":
            raise OSError("disk gone")
        time.sleep(0.2)
        return [[]]


def test_a_batch_that_breaks_is_rerun_one_call_at_a_time():
    batcher = SearchBatcher(max_batch=8)
    broken: Any = _Broken()

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(
            *(batcher.search(broken, SearchCall(query), lambda calls: None)
              for query in ["a", "b", "boom", "c"]), return_exceptions=True)

    answers = asyncio.run(all_at_once())
    assert [type(answer).__name__ for answer in answers] == ["list", "list", "OSError", "list"]
    assert batcher._lanes == {}  # an idle collection keeps no state
    with pytest.raises(ValueError, match="max_batch"):
        SearchBatcher(max_batch=0)


def test_a_caller_that_goes_away_is_left_out_and_the_others_answer():
    batcher = SearchBatcher(max_batch=8)
    broken: Any = _Broken()

    async def one_cancelled() -> list[Any]:
        first = asyncio.ensure_future(batcher.search(broken, SearchCall("a"), lambda c: None))
        await asyncio.sleep(0)  # the first batch runs; these two queue behind it
        gone = asyncio.ensure_future(batcher.search(broken, SearchCall("b"), lambda c: None))
        kept = asyncio.ensure_future(batcher.search(broken, SearchCall("c"), lambda c: None))
        await asyncio.sleep(0)
        gone.cancel()
        return await asyncio.gather(first, gone, kept, return_exceptions=True)

    answers = asyncio.run(one_cancelled())
    # Had the cancelled call stayed in its batch, that batch of two would have broken.
    assert answers[0] == [] and isinstance(answers[1], asyncio.CancelledError)
    assert answers[2] == []
    assert batcher._lanes == {}


def test_many_more_concurrent_searches_than_worker_threads_all_answer_in_few_batches():
    # Sync routes run on anyio's 40 worker threads; a search waiting for its batch holds none,
    # so 64 concurrent ones are all in the batcher at once: the first batch is held until the
    # rest wait behind it (at most 60 s: a route that held a thread while it waited would never
    # get past 40), and they run together in the next.
    encoder = SlowQueries(seconds=0)
    in_flight: list[int] = []

    def all_arrived(size: int) -> bool:
        in_flight.append(size + sum(len(lane.queued) for lane in lanes.values()))
        return in_flight[-1] >= 64

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(encoders._cache, SPEC, encoder)
        with serve() as client:
            client.post("/collections/docs/items", json={"items": doc_items()}).raise_for_status()
            alone = _hits(search(client, text="csv 7", k=3))
            encoder.query_batches.clear()
            lanes = client.app.state.search_batcher._lanes
            encoder.hold = all_arrived
            bodies = [{"text": f"csv {i}", "k": 3} for i in range(64)]
            answers = _all_at_once(client, bodies)
    assert all(response.status_code == 200 for response in answers)
    assert _hits(answers[7]) == alone
    assert max(in_flight) == 64
    assert sum(encoder.query_batches) == 64 and len(encoder.query_batches) <= 2
