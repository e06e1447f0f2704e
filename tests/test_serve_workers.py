"""``kinsight serve --read-only`` and ``--workers N``: read scaling over worker processes, which
DuckDB allows only when no process writes the store. Real servers on loopback ports, bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from kinsight.api.http import Settings, create_app
from kinsight.engine import Store
from kinsight.indexers.ingest import IngestOptions, ingest_records
from kinsight.indexers.records import Record

from .conftest import DOCS, SPEC, doc_items
from .test_service_faults import _no_proxy, served  # noqa: F401  (_no_proxy: a fixture)


def _filled_store(path: Path) -> Path:
    records = [Record(item["id"], item["fields"], "test", n + 1)
               for n, item in enumerate(doc_items())]
    with Store(path) as store:
        ingest_records(store, records, IngestOptions(collection="docs", encoder=SPEC),
                       progress=False)
    return path


def test_a_read_only_app_answers_reads_and_refuses_writes_with_409(tmp_path):
    settings = Settings(store=str(_filled_store(tmp_path / "store")), encoder=SPEC,
                        api_key=None, read_only=True, warm_up=False)
    with TestClient(create_app(settings)) as client:
        found = client.post("/collections/docs/search", json={"text": "rust serde csv", "k": 2})
        assert found.status_code == 200 and found.json()["hits"][0]["id"] == "rs-csv"
        refused = client.post("/collections/docs/items", json={"items": doc_items()[:1]})
        assert refused.status_code == 409 and "read-only" in refused.json()["detail"]


def test_read_only_workers_answer_searches(tmp_path):
    store, log = _filled_store(tmp_path / "store"), tmp_path / "server.log"
    with served(store, log, "--read-only", "--workers", "2") as (_, http):
        deadline = time.monotonic() + 60  # /health answers once the first worker is up
        while log.read_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        for _, text, _, _ in DOCS:
            found = http.post("/collections/docs/search", json={"text": text, "k": 1})
            assert found.status_code == 200, found.text
            assert found.json()["hits"][0]["fields"]["text"] == text
        refused = http.post("/collections/docs/items", json={"items": doc_items()[:1]})
        assert refused.status_code == 409
    text = log.read_text()
    assert text.count("Started server process") == 2 and "Traceback" not in text, text


def test_workers_without_read_only_are_refused_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KINSIGHT_")}
    done = subprocess.run(
        [sys.executable, "-c", "from kinsight.api.cli import main; main()", "serve",
         "--store", str(tmp_path / "store"), "--workers", "2"],
        env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --workers 2 needs --read-only: DuckDB lets one process write a store, or many "
        "processes read it; add --read-only (writes then answer 409), or serve writes with "
        "--workers 1"], done.stderr
    assert not (tmp_path / "store").exists()  # refused before anything was opened
