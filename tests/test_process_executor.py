"""The ``process`` encode executor: upserts encoded in a child process of lower CPU priority
give the vectors the server's own process would, a child that dies loses nothing written, and a
child never outlives its server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from kinsight.api.http import Settings, create_app
from kinsight.engine import EncoderError, Store, WorkerLostError, load_encoder
from kinsight.indexers import process_executor
from kinsight.indexers.executors import EncodeJob, LocalExecutor
from kinsight.indexers.process_executor import ProcessExecutor

from .conftest import SPEC, doc_items

pytestmark = pytest.mark.skipif(not process_executor.available(), reason="POSIX only")

TEXTS = ["fast text editor for the terminal", "audio mixer with effects", "tcp socket tools"]
JOB = EncodeJob(texts={"text": TEXTS})


@pytest.fixture
def executor() -> Iterator[ProcessExecutor]:
    process = ProcessExecutor(niceness=5)
    try:
        yield process
    finally:
        process.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone in all but name (its parent reaps it)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:  # no /proc (macOS): it answered the signal, so it is there
        return True


def _gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _alive(pid)


def test_the_child_encodes_as_this_process_does_at_a_lower_priority(executor):
    (vectors,) = executor.for_ingest({"text": SPEC}).encode_stream([JOB])
    here = LocalExecutor({"text": load_encoder(SPEC)}).encode(JOB)
    np.testing.assert_array_equal(vectors["text"], here["text"])
    child = executor.pid
    assert child is not None and child != os.getpid()
    assert os.getpriority(os.PRIO_PROCESS, child) == os.getpriority(os.PRIO_PROCESS, 0) + 5
    executor.stop()
    assert executor.pid is None and _gone(child)


def test_an_error_in_the_child_is_raised_here_and_the_child_goes_on(executor):
    view = executor.for_ingest({"text": "no-such-scheme:x"})
    with pytest.raises(EncoderError, match="no encoder is installed for scheme"):
        next(iter(view.encode_stream([JOB])))
    child = executor.pid
    (vectors,) = executor.for_ingest({"text": SPEC}).encode_stream([JOB])
    assert vectors["text"].shape == (3, 32) and executor.pid == child


def test_a_killed_child_fails_its_job_and_the_next_starts_anew(executor):
    view = executor.for_ingest({"text": SPEC})
    next(iter(view.encode_stream([JOB])))
    child = executor.pid
    os.kill(child, signal.SIGKILL)
    assert _gone(child)
    with pytest.raises(WorkerLostError, match="encoding process ended"):
        next(iter(view.encode_stream([JOB])))
    (vectors,) = view.encode_stream([JOB])  # a new child
    assert vectors["text"].shape == (3, 32) and executor.pid not in (None, child)


def test_served_upserts_encode_in_the_child_and_are_searchable():
    settings = Settings(encoder=SPEC, api_key=None, encode_niceness=5, warm_up=False)
    with Store(":memory:") as store:
        app = create_app(settings, store=store)
        with TestClient(app) as client:
            response = client.post("/collections/docs/items", json={"items": doc_items()})
            assert response.status_code == 200, response.text
            child = app.state.encode_process.pid
            assert child is not None  # the upsert's encoding ran there
            hits = client.post("/collections/docs/search",
                               json={"text": "write an http server in go", "k": 1,
                                     "mode": "dense"}).json()["hits"]
            assert hits[0]["id"] == "go-http"
        assert _gone(child)  # stopped with the app
        stored = store.collection("docs").item_vectors("text", "go-http")
    here = load_encoder(SPEC).encode(["write an http server in go"], role="document")
    np.testing.assert_allclose(stored[0], here[0], rtol=1e-6)


def test_a_child_killed_during_an_upsert_writes_nothing_and_the_next_upsert_works():
    settings = Settings(encoder=SPEC, api_key=None, encode_niceness=5, warm_up=False)
    items = doc_items()
    with Store(":memory:") as store:
        app = create_app(settings, store=store)
        with TestClient(app) as client:
            assert client.post("/collections/docs/items",
                               json={"items": items[:2]}).status_code == 200
            os.kill(app.state.encode_process.pid, signal.SIGKILL)
            failed = client.post("/collections/docs/items", json={"items": items[2:]})
            assert failed.status_code == 503 and "send it again" in failed.json()["detail"]
            assert store.collection("docs").count() == 2
            assert client.post("/collections/docs/items",
                               json={"items": items[2:]}).status_code == 200
            assert store.collection("docs").count() == len(items)


# An owner that starts a child and waits; it is killed with SIGKILL, which it cannot clean up.
OWNER = f"""
import time
from kinsight.indexers.executors import EncodeJob
from kinsight.indexers.process_executor import ProcessExecutor

process = ProcessExecutor(niceness=5)
list(process.for_ingest({{"text": {SPEC!r}}}).encode_stream([EncodeJob(texts={{"text": ["a b"]}})]))
print(process.pid, flush=True)
time.sleep(600)
"""


def test_the_child_ends_when_its_owner_is_killed():
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        child = int(owner.stdout.readline())
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
        assert _gone(child)
    finally:
        owner.kill()
        if owner.stdout is not None:
            owner.stdout.close()


def test_a_script_without_a_main_guard_is_not_run_again_by_the_child(tmp_path):
    """multiprocessing's spawn starts a worker by re-importing the parent's __main__: a server
    script with no ``if __name__ == "__main__"`` guard would start a second server there."""
    runs = tmp_path / "runs.txt"
    script = tmp_path / "serve.py"
    script.write_text(OWNER.replace("time.sleep(600)", "process.stop()").replace(
        "import time\n", f"import time\nopen({str(runs)!r}, 'a').write('ran\\n')\n"))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert runs.read_text() == "ran\n"
