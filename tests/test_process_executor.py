"""The ``process`` encode executor: upserts encoded in a child process of lower CPU priority
give the vectors the server's own process would, and a child that dies loses nothing written."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from kinsight.api.http import Settings, create_app
from kinsight.engine import Store, WorkerLostError, load_encoder
from kinsight.indexers.executors import EncodeJob, LocalExecutor
from kinsight.indexers.process_executor import ProcessExecutor

from .conftest import SPEC, doc_items

pytestmark = pytest.mark.skipif(not hasattr(os, "nice"), reason="needs os.nice (POSIX)")

TEXTS = ["fast text editor for the terminal", "audio mixer with effects", "tcp socket tools"]


@pytest.fixture
def executor() -> Iterator[ProcessExecutor]:
    process = ProcessExecutor(niceness=5)
    try:
        yield process
    finally:
        process.stop()


def _children() -> list[multiprocessing.Process]:
    return multiprocessing.active_children()


def test_the_child_encodes_as_this_process_does_at_a_lower_priority(executor):
    job = EncodeJob(texts={"text": TEXTS})
    (vectors,) = executor.for_ingest({"text": SPEC}).encode_stream([job])
    here = LocalExecutor({"text": load_encoder(SPEC)}).encode(job)
    np.testing.assert_array_equal(vectors["text"], here["text"])
    (child,) = _children()
    assert os.getpriority(os.PRIO_PROCESS, child.pid) == os.getpriority(os.PRIO_PROCESS, 0) + 5
    executor.stop()
    assert not _children()


def test_a_killed_child_fails_its_job_and_the_next_starts_anew(executor):
    view = executor.for_ingest({"text": SPEC})
    job = EncodeJob(texts={"text": TEXTS})
    next(iter(view.encode_stream([job])))
    (child,) = _children()
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    with pytest.raises(WorkerLostError, match="encoding process ended"):
        next(iter(view.encode_stream([job])))
    (vectors,) = view.encode_stream([job])  # a new child
    assert vectors["text"].shape == (3, 32)
    assert [c.pid for c in _children()] != [child.pid]


def test_served_upserts_encode_in_the_child_and_are_searchable():
    settings = Settings(encoder=SPEC, api_key=None, encode_niceness=5, warm_up=False)
    with Store(":memory:") as store:
        with TestClient(create_app(settings, store=store)) as client:
            response = client.post("/collections/docs/items", json={"items": doc_items()})
            assert response.status_code == 200, response.text
            assert len(_children()) == 1  # the upsert's encoding ran there
            hits = client.post("/collections/docs/search",
                               json={"text": "write an http server in go", "k": 1,
                                     "mode": "dense"}).json()["hits"]
            assert hits[0]["id"] == "go-http"
        assert not _children()  # stopped with the app
        stored = store.collection("docs").item_vectors("text", "go-http")
    here = load_encoder(SPEC).encode(["write an http server in go"], role="document")
    np.testing.assert_allclose(stored[0], here[0], rtol=1e-6)


def test_a_child_killed_during_an_upsert_writes_nothing_and_the_next_upsert_works():
    settings = Settings(encoder=SPEC, api_key=None, encode_niceness=5, warm_up=False)
    items = doc_items()
    with Store(":memory:") as store, TestClient(create_app(settings, store=store)) as client:
        assert client.post("/collections/docs/items", json={"items": items[:2]}).status_code == 200
        (child,) = _children()
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        failed = client.post("/collections/docs/items", json={"items": items[2:]})
        assert failed.status_code == 503 and "send it again" in failed.json()["detail"]
        assert store.collection("docs").count() == 2
        assert client.post("/collections/docs/items", json={"items": items[2:]}).status_code == 200
        assert store.collection("docs").count() == len(items)


OWNER = f"""
import multiprocessing, time
from kinsight.indexers.executors import EncodeJob
from kinsight.indexers.process_executor import ProcessExecutor

process = ProcessExecutor(niceness=5)
list(process.for_ingest({{"text": {SPEC!r}}}).encode_stream([EncodeJob(texts={{"text": ["a b"]}})]))
print(multiprocessing.active_children()[0].pid, flush=True)
time.sleep(600)
"""


def test_the_child_ends_when_its_owner_is_killed():
    import subprocess
    import sys
    import time

    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    try:
        child = int(owner.stdout.readline())
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(child)
    finally:
        owner.kill()
        owner.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone in all but name (its new parent, init, reaps it)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:  # no /proc (macOS): it answered the signal, so it is there
        return True
