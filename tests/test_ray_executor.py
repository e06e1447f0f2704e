"""The ``ray`` encode executor: the same vectors as ``local``, item for item, through the pipeline,
the CLI (``--workers``), ``anomalies --targets`` and ``predict``; clear errors without Ray or with
a bad model.

Tests that start Ray are marked ``ray`` (skipped by default: ``pytest -m ray`` runs them) and share
one local Ray of two CPUs for the whole run (``ray_local``); the crash test, also ``slow``, runs
drivers of their own (``pytest -m "ray and slow"``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.engine import EncoderError, KinsightError, Store, load_encoder
from kinsight.indexers import IngestOptions, ingest_records
from kinsight.indexers.executors import EncodeJob, LocalExecutor
from kinsight.indexers.model_cache import VARIANT_ENV
from kinsight.indexers.ray_executor import IN_FLIGHT_PER_WORKER, RayExecutor
from kinsight.indexers.records import Record

from .killed_children import killed_output

SPEC = "fake:dim=32,max_tokens=8"  # short chunks: items of several chunks cross slice bounds
OPTIONS = IngestOptions(collection="docs", encoder=SPEC, batch_size=8)
MINILM = "sentence-transformers:all-MiniLM-L6-v2"
CRASH_CHILD = Path(__file__).with_name("ray_crash_child.py")


def docs(n: int) -> list[Record]:
    return [Record(id=f"d{i}", fields={"text": f"note {i} about birds " + "and trees " * (i % 9),
                                       "n": i}, source="test", line=i + 1) for i in range(n)]


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray for the run (two CPUs, as CI has), started after conftest set the cache and
    variant environment that its workers inherit."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_without_ray_the_error_names_the_setup_step(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if not installed
    with pytest.raises(EncoderError, match=r"bash scripts/setup.sh --ray"):
        RayExecutor({"text": SPEC}, workers=2)
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": r.id, **r.fields}) + "\n" for r in docs(3)))
    result = CliRunner().invoke(app, ["ingest", str(path), "--store", str(tmp_path / "s"),
                                      "--encoder", SPEC, "--workers", "2"])
    assert result.exit_code == 2
    assert "bash scripts/setup.sh --ray" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s").exists()  # refused before the store was made


@pytest.mark.ray
@pytest.mark.parametrize("workers", [1, 2])
def test_ray_ingest_writes_what_local_writes(ray_local: None, workers: int) -> None:
    records = docs(30)
    with Store(":memory:") as remote, Store(":memory:") as local:
        report = ingest_records(remote, records, OPTIONS, progress=False,
                                executor=RayExecutor({"text": SPEC}, workers=workers))
        expected = ingest_records(local, records, OPTIONS, progress=False)
        assert (report.written, report.chunks) == (expected.written, expected.chunks) == (
            30, expected.chunks)
        assert expected.chunks > 30  # some items span several chunks
        ours, theirs = remote.collection("docs"), local.collection("docs")
        for record in records:
            np.testing.assert_array_equal(ours.item_vectors("text", record.id),
                                          theirs.item_vectors("text", record.id))
        again = ingest_records(remote, records, OPTIONS, progress=False,
                               executor=RayExecutor({"text": SPEC}, workers=workers))
        assert again.unchanged == 30 and again.chunks == 0


@pytest.mark.ray
def test_ray_workers_run_the_pinned_onnx_variant_of_minilm(
        ray_local: None, minilm_export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    from kinsight.indexers.sentence_encoder import load_sentence_variant

    texts = [r.fields["text"] for r in docs(9)] + ["a kitten on a rug", "stock market report"]
    monkeypatch.setenv(VARIANT_ENV, "onnx-int8")  # the workers must load this one too
    local = LocalExecutor({"text": load_sentence_variant("", "onnx-int8")})
    expected = local.encode(EncodeJob(texts={"text": texts}))["text"]
    executor = RayExecutor({"text": MINILM}, workers=2)
    try:
        jobs = [EncodeJob(texts={"text": texts}), EncodeJob(texts={"text": texts[:3]})]
        vectors, head = (block["text"] for block in executor.encode_stream(jobs))
    finally:
        executor.close()
    assert vectors.shape == (len(texts), 384) and vectors.dtype == np.float32
    # Each job is encoded whole, as local encodes it: int8 quantises a batch's activations
    # together, so a job cut in two would move these by ~0.02.
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    np.testing.assert_allclose(head, local.encode(EncodeJob(texts={"text": texts[:3]}))["text"],
                               atol=1e-5)
    fp32 = load_sentence_variant("", "torch-fp32").encode(texts)
    assert np.abs(vectors - fp32).max() > 1e-3  # int8 ran there, not the float32 model


@pytest.mark.ray
def test_results_come_in_order_with_a_bounded_window(ray_local: None) -> None:
    executor = RayExecutor({"text": SPEC}, workers=2)
    sent = 0

    def jobs() -> Iterator[EncodeJob]:
        nonlocal sent
        for n in range(12):
            sent += 1
            yield EncodeJob(texts={"text": [f"job {n} word{m}" for m in range(n % 4)]})

    local = LocalExecutor({"text": load_encoder(SPEC)})
    try:
        assert list(executor.encode_stream([EncodeJob(texts={"text": ["warm"]})]))  # starts them
        for n, block in enumerate(executor.encode_stream(jobs())):  # a second stream, same actors
            assert sent - n <= IN_FLIGHT_PER_WORKER * 2  # never more jobs out than the window
            expected = local.encode(EncodeJob(texts={"text": [f"job {n} word{m}"
                                                              for m in range(n % 4)]}))
            assert block.keys() == expected.keys()  # an empty job: {}
            for space in block:
                np.testing.assert_array_equal(block[space], expected[space])
    finally:
        executor.close()
    assert n == 11


@pytest.mark.ray
def test_a_model_a_worker_cannot_load_is_a_clear_error(ray_local: None) -> None:
    executor = RayExecutor({"text": "fake:dim=0"}, workers=1)
    with pytest.raises(KinsightError, match="dim") as raised:
        list(executor.encode_stream([EncodeJob(texts={"text": ["hello"]})]))
    assert "Traceback" not in str(raised.value) and "File " not in str(raised.value)
    assert not executor.actors  # stopped


@pytest.mark.ray
def test_cli_ingest_and_anomalies_targets_on_workers(ray_local: None, tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": r.id, **r.fields}) + "\n" for r in docs(40)))
    targets = tmp_path / "new.jsonl"
    targets.write_text("".join(json.dumps({"id": f"n{i}", "text": text}) + "\n" for i, text in
                               enumerate(["note about birds", "quarterly tax law", "trees"])))
    scores = {}
    for name, extra in (("ray", ["--workers", "2"]), ("local", [])):
        store = str(tmp_path / name)
        result = CliRunner().invoke(app, ["ingest", str(path), "--store", store, "--encoder", SPEC,
                                          "--json", *extra])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["written"] == 40
        result = CliRunner().invoke(app, ["anomalies", "--store", store, "--targets",
                                          str(targets), "--json", *extra])
        assert result.exit_code == 0, result.output
        scores[name] = {s["id"]: s["score"] for s in json.loads(result.stdout)["scores"]}
    assert scores["ray"] == pytest.approx(scores["local"], abs=1e-6) and len(scores["ray"]) == 3
    with Store(tmp_path / "ray") as ray_store, Store(tmp_path / "local") as local_store:
        np.testing.assert_array_equal(ray_store.collection("docs").item_vectors("text", "d7"),
                                      local_store.collection("docs").item_vectors("text", "d7"))



@pytest.mark.ray
def test_cli_predict_on_workers_gives_the_local_probabilities(ray_local: None,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": r.id, **r.fields, "kind": "ab"[r.fields["n"] % 2]})
                            + "\n" for r in docs(40)))
    new = tmp_path / "new.jsonl"
    new.write_text("".join(json.dumps({"id": f"n{i}", "text": text}) + "\n" for i, text in
                           enumerate(["note about birds " + "and trees " * 7, "quarterly tax"])))
    store = str(tmp_path / "s")
    for command in (["ingest", str(path), "--encoder", SPEC],
                    ["classify", "--train", "--label-field", "kind"]):
        result = CliRunner().invoke(app, [*command, "--store", store])
        assert result.exit_code == 0, result.output
    probabilities = {}
    for name, extra in (("ray", ["--workers", "2"]), ("local", [])):
        result = CliRunner().invoke(app, ["predict", str(new), "--store", store, "--json", *extra])
        assert result.exit_code == 0, result.output
        probabilities[name] = [p["probabilities"] for p in json.loads(result.stdout)["predictions"]]
    assert len(probabilities["ray"]) == 2
    for ray_row, local_row in zip(probabilities["ray"], probabilities["local"], strict=True):
        assert ray_row == pytest.approx(local_row, abs=1e-6)

def test_workers_go_with_targets_only(tmp_path: Path) -> None:
    with Store(tmp_path / "s") as store:
        ingest_records(store, docs(12), OPTIONS, progress=False)
    result = CliRunner().invoke(app, ["anomalies", "--store", str(tmp_path / "s"),
                                      "--workers", "2"])
    assert result.exit_code == 2 and "--targets" in result.output


@pytest.mark.slow
@pytest.mark.ray
def test_a_driver_killed_mid_ingest_reencodes_only_what_was_not_committed(tmp_path: Path
                                                                          ) -> None:
    pytest.importorskip("ray")
    total = 4000
    child = subprocess.Popen([sys.executable, str(CRASH_CHILD), str(tmp_path), str(total)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acked: set[str] = set()
    assert child.stdout is not None
    read = ""
    for line in child.stdout:  # kill once a few batches are committed: mid-ingest
        read += line
        if line.startswith("ACK"):
            acked.update(line.split()[1:])
        if len(acked) >= 200:
            break
    lines = killed_output(child, read)
    acked.update(i for kind, *ids in lines if kind == "ACK" for i in ids)
    assert all(kind != "REPORT" for kind, *_ in lines), \
        "the ingest finished before the kill; give it more records"
    with Store(tmp_path) as store:
        committed = store.collection("docs").count()
        assert not set(acked) - {item.id for item in store.collection("docs").get(sorted(acked))}
    assert len(acked) <= committed < total

    again = subprocess.run([sys.executable, str(CRASH_CHILD), str(tmp_path), str(total)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    written, unchanged = map(int, again.stdout.splitlines()[-1].split()[1:])
    assert (written, unchanged) == (total - committed, committed)  # nothing encoded twice
    with Store(tmp_path) as store:
        assert store.collection("docs").count() == total
