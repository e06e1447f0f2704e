"""Faults of a served store: ``kinsight serve`` in a subprocess on a free loopback port, killed
with SIGKILL during batch upserts, and clients that go away in the middle of a request. Every
upsert is one transaction, so what a 200 acknowledged survives, and a batch is all or nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from kinsight.engine import Store

from .conftest import SPEC
from .test_http_api import _free_port, _stop, _wait_until_healthy

BATCH = 40  # items per upsert


def batch(n: int) -> dict[str, list[dict[str, object]]]:
    return {"items": [{"id": f"b{n}-{i}", "fields": {"text": f"batch {n} note {i} on csv"}}
                      for i in range(BATCH)]}


@contextmanager
def served(store: Path, log: Path, *options: str
           ) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """``kinsight serve`` over ``store`` with the fake encoder (and ``options``), and a client
    of it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KINSIGHT_")}
    env |= {"KINSIGHT_ENCODER": SPEC}
    port = _free_port()
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-c", "from kinsight.api.cli import main; main()", "serve",
             "--store", str(store), "--host", "127.0.0.1", "--port", str(port), *options],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            _wait_until_healthy(http, server, log)
            yield server, http
    finally:
        _stop(server)


def stored_ids(store: Path) -> set[str]:
    """The ids committed, checking that the indexes hold every one: the server saves no index
    file on an upsert, so the indexes are caught up with (or rebuilt from) the database on open."""
    with Store(store) as opened:
        docs = opened.collection("docs")
        found = {item.id for item in docs.get([f"b{n}-{i}" for n in range(200)
                                               for i in range(BATCH)])}
        with docs.index("text").searching() as index:
            assert index.ntotal == docs.count_vectors("text")
        lexical, fresh = docs.lexical("text").current()
        assert fresh and set(lexical.ids) == set(docs.ids_matching(None)) == found
        return found


def test_sigkill_during_batch_upserts_loses_nothing_acknowledged(tmp_path):
    store, log = tmp_path / "store", tmp_path / "server.log"
    acknowledged: list[int] = []
    stop = threading.Event()
    with served(store, log) as (server, http):
        def upsert_until_killed() -> None:
            for n in range(200):
                if stop.is_set():
                    return
                try:
                    response = http.post("/collections/docs/items", json=batch(n))
                except httpx.TransportError:
                    return  # the server died under this request: not acknowledged
                if response.status_code == 200 and response.json()["written"] == BATCH:
                    acknowledged.append(n)

        writer = threading.Thread(target=upsert_until_killed)
        writer.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.send_signal(signal.SIGKILL)  # the writer's next batch is on its way by now
        server.wait(timeout=30)
        stop.set()
        writer.join(60)
    assert server.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 3, log.read_text()
    found = stored_ids(store)
    for n in acknowledged:
        assert {f"b{n}-{i}" for i in range(BATCH)} <= found, f"batch {n} was acknowledged"
    batches = {item.split("-")[0] for item in found}
    for name in batches:  # the batch in flight is there whole or not at all
        assert sum(item.startswith(f"{name}-") for item in found) == BATCH, name


def _request(n: int) -> bytes:
    body = httpx.Request("POST", "http://x/", json=batch(n)).read()
    return (b"POST /collections/docs/items HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


def test_a_client_that_disconnects_mid_request_leaves_no_half_written_batch(tmp_path):
    store, log = tmp_path / "store", tmp_path / "server.log"
    with served(store, log) as (_, http):
        http.post("/collections/docs/items", json=batch(0)).raise_for_status()
        address = (http.base_url.host, http.base_url.port)
        # Gone halfway through the body: the route never runs, nothing of batch 1 is written.
        cut = _request(1)
        with socket.create_connection(address, timeout=10) as raw:
            raw.sendall(cut[: len(cut) // 2])
        # Gone after the whole body, before the answer: batch 2 commits whole (or not at all).
        with socket.create_connection(address, timeout=10) as raw:
            raw.sendall(_request(2))
        deadline = time.monotonic() + 30
        count = 0
        while time.monotonic() < deadline:
            count = http.get("/collections/docs").json()["count"]
            if count >= 2 * BATCH:
                break
            time.sleep(0.1)
        assert count == 2 * BATCH, count  # batches 0 and 2, whole
        # The server still answers, and its next write goes through.
        http.post("/collections/docs/items", json=batch(3)).raise_for_status()
        assert http.get("/collections/docs").json()["count"] == 3 * BATCH
    found = stored_ids(store)
    assert not any(item.startswith("b1-") for item in found)
    assert {item.split("-")[0] for item in found} == {"b0", "b2", "b3"}
    assert len(found) == 3 * BATCH


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Loopback only: a proxy of the environment must not see these requests."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
