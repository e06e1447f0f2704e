"""The one ingest pipeline: stages that overlap with bounded memory, errors that reach the caller,
field changes written in place without encoding, ``update_fields`` and ``ingest --fields-only``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.engine import EncoderInfo, FieldUpdate, Store, load_encoder
from kinsight.engine.encoders import Role
from kinsight.engine.errors import InvalidInputError, NotFoundError
from kinsight.indexers.executors import EncodeJob, LocalExecutor
from kinsight.indexers.ingest import IngestOptions, SpaceSource, ingest_records, open_ingest
from kinsight.indexers.records import Problem, Record
from kinsight.indexers.stages import pipelined

SPEC = "fake:dim=32"
OPTIONS = IngestOptions(collection="docs", encoder=SPEC, batch_size=4)


class CountingEncoder:
    """The fake encoder, counting the texts it encodes; ``on_call`` runs before each call."""

    def __init__(self, on_call: Any = None) -> None:
        self.inner = load_encoder(SPEC)
        self.texts = 0
        self.calls = 0
        self.on_call = on_call

    @property
    def info(self) -> EncoderInfo:
        return self.inner.info

    def encode(self, inputs: Sequence[Any], *, role: Role = "document") -> np.ndarray:
        self.calls += 1
        if self.on_call is not None:
            self.on_call(self.calls)
        self.texts += len(inputs)
        return self.inner.encode(inputs, role=role)


def docs(n: int, **extra: Any) -> list[Record]:
    return [Record(id=f"d{i}", fields={"text": f"note {i} about birds and trees", "n": i,
                                       **extra}, source="test", line=i + 1) for i in range(n)]


# -- metadata changes -------------------------------------------------------------------------
def test_a_changed_field_is_updated_in_place_without_encoding() -> None:
    encoder = CountingEncoder()
    with Store(":memory:") as store:
        ingest_records(store, docs(10, tag="old", note="x"), OPTIONS, encoder=encoder,
                       progress=False)
        coll = store.collection("docs")
        assert encoder.texts == 10
        seqs = coll.vector_seqs("text", [f"d{i}" for i in range(10)]).tolist()
        for _ in range(12):  # enough reads at one generation for the in-memory item copy
            coll.fields_of(["d1", "d2"])
        coll.tables.join_background()
        changed = docs(10, tag="old", note="x")
        changed[3] = Record("d3", {"text": changed[3].fields["text"], "n": 3, "tag": "new"},
                            "test", 4)
        report = ingest_records(store, changed, OPTIONS, encoder=encoder, progress=False)
        assert encoder.texts == 10, "a change of metadata alone ran the encoder"
        assert (report.written, report.updated, report.unchanged) == (0, 1, 9)
        fields = coll.get(["d3"])[0].fields
        assert fields["tag"] == "new" and fields["note"] is None  # as the record has them now
        assert coll.ids_matching("tag = 'new'") == ["d3"]
        hits = coll.search("note 3 about birds", k=3, mode="dense")
        assert {h.id: h.fields["tag"] for h in hits}["d3"] == "new"
        assert coll.vector_seqs("text", [f"d{i}" for i in range(10)]).tolist() == seqs
        again = ingest_records(store, changed, OPTIONS, encoder=encoder, progress=False)
        assert (again.written, again.updated, again.unchanged) == (0, 0, 10)


def test_a_changed_text_is_encoded_again_and_only_it() -> None:
    encoder = CountingEncoder()
    with Store(":memory:") as store:
        ingest_records(store, docs(6), OPTIONS, encoder=encoder, progress=False)
        changed = docs(6)
        changed[2] = Record("d2", {"text": "an entirely new text", "n": 2}, "test", 3)
        report = ingest_records(store, changed, OPTIONS, encoder=encoder, progress=False)
        assert (report.written, report.updated, report.unchanged, encoder.texts) == (1, 0, 5, 7)
        hit = store.collection("docs").search("entirely new", k=1, mode="dense")[0]
        assert hit.id == "d2"


def test_the_writer_diffs_again_what_a_write_changed_since_the_diff() -> None:
    """The two halves run apart, as a server runs them: batches encoded (d0 planned unchanged,
    d1 a fields-only update, d2 encoded), then another write gives d0 and d1 new texts, then the
    batches are written. Each item must end as the records written last say, hash included."""
    encoder = CountingEncoder()
    with Store(":memory:") as store:
        ingest_records(store, docs(3), OPTIONS, encoder=encoder, progress=False)
        latest = docs(3)
        latest[1] = Record("d1", {**latest[1].fields, "tag": "new"}, "test", 2)
        latest[2] = Record("d2", {"text": "a text of its own", "n": 2}, "test", 3)
        pipeline = open_ingest(store, OPTIONS, encoder=encoder)
        batches = list(pipeline.encoded(latest))
        assert encoder.texts == 3 + 1
        others = [Record(i, {"text": f"another text for {i}", "n": 0}, "test", 1)
                  for i in ("d0", "d1")]
        ingest_records(store, others, OPTIONS, encoder=encoder, progress=False)
        report = pipeline.write(batches, progress=False)
        pipeline.close()
        assert (report.written, report.updated, report.unchanged) == (3, 0, 0)
        assert encoder.texts == 3 + 1 + 2 + 2  # the two moved records, encoded by the writer
        coll = store.collection("docs")
        for record in latest:
            assert coll.get([record.id])[0].fields == {"tag": None, **record.fields}
            np.testing.assert_allclose(coll.item_vectors("text", record.id),
                                       encoder.inner.encode([record.fields["text"]]), atol=1e-6)
        again = ingest_records(store, latest, OPTIONS, encoder=encoder, progress=False)
        assert (again.written, again.updated, again.unchanged) == (0, 0, 3)


def test_a_picture_item_keeps_its_thumbnail_when_its_fields_change(tmp_path: Path) -> None:
    from PIL import Image

    for n, colour in enumerate(["red", "green"]):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"{n}.png")
    options = IngestOptions(collection="pics", spaces=(
        SpaceSource("image", "open_clip:kinsight-tiny@random:image", ("image",), "image"),))
    with Store(tmp_path / "store") as store:
        first = [Record(str(n), {"image": f"{n}.png", "label": "a"}, "list", n) for n in range(2)]
        ingest_records(store, first, options, progress=False, image_root=tmp_path)
        second = [Record(str(n), {"image": f"{n}.png", "label": "b"}, "list", n) for n in range(2)]
        report = ingest_records(store, second, options, progress=False, image_root=tmp_path)
        assert (report.written, report.updated) == (0, 2)
        fields = store.collection("pics").get(["0"])[0].fields
        assert fields["label"] == "b" and fields["thumbnail"]


# -- update_fields ----------------------------------------------------------------------------
def test_update_fields_sets_and_removes_fields_by_id() -> None:
    with Store(":memory:") as store:
        ingest_records(store, docs(5, tag="t"), OPTIONS, progress=False)
        coll = store.collection("docs")
        before = coll.generation()
        count = coll.update_fields([FieldUpdate("d1", {"tag": "hot", "price": 2.5}),
                                    FieldUpdate("d2", remove=["tag"])])
        assert count == 2 and coll.generation() > before
        found = coll.fields_of(["d1", "d2", "d3"])
        assert (found["d1"]["tag"], found["d1"]["price"]) == ("hot", 2.5)
        assert found["d2"]["tag"] is None and found["d3"]["price"] is None
        assert coll.ids_matching("price > 1") == ["d1"]
        assert coll.count_vectors("text") == 5


def test_update_fields_refuses_unknown_ids_and_encoded_fields() -> None:
    with Store(":memory:") as store:
        ingest_records(store, docs(3), OPTIONS, progress=False)
        coll = store.collection("docs")
        with pytest.raises(NotFoundError, match="'ghost'"):
            coll.update_fields([FieldUpdate("d1", {"n": 9}), FieldUpdate("ghost", {"n": 1})])
        with pytest.raises(InvalidInputError, match="field 'text' is what vector space 'text'"):
            coll.update_fields([FieldUpdate("d1", {"text": "changed"})])
        assert coll.fields_of(["d1"])["d1"]["n"] == 1  # nothing of a refused batch was written


def test_cli_fields_only_updates_stored_items_and_adds_none(tmp_path: Path) -> None:
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"id": f"d{i}", "text": f"note {i}"}) + "\n"
                            for i in range(3)))
    prices = tmp_path / "prices.jsonl"
    prices.write_text(json.dumps({"id": "d1", "price": 3, "text": "not re-encoded"}) + "\n"
                      + json.dumps({"id": "new", "price": 1}) + "\n")
    base = ["--store", str(tmp_path / "s"), "--encoder", SPEC]
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(data), *base]).exit_code == 0
    result = runner.invoke(app, ["ingest", str(prices), "--fields-only", "--json", *base])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert (payload["updated"], payload["written"], payload["not_found"]) == (1, 0, ["new"])
    with Store(tmp_path / "s") as store:
        coll = store.collection("docs")
        assert coll.count() == 3 and coll.fields_of(["d1"])["d1"]["price"] == 3
        assert coll.fields_of(["d1"])["d1"]["text"] == "note 1"


# -- the stages -------------------------------------------------------------------------------
def test_the_writer_commits_a_batch_while_the_next_one_encodes() -> None:
    committed = threading.Event()

    def wait_for_first_commit(call: int) -> None:
        if call == 2:  # a sequential loop would write batch 1 only after this returns
            assert committed.wait(timeout=30), "batch 1 was not written while batch 2 encoded"

    encoder = CountingEncoder(wait_for_first_commit)
    with Store(":memory:") as store:
        report = ingest_records(store, docs(12), OPTIONS, encoder=encoder, progress=False,
                                on_commit=lambda ids: committed.set())
    assert report.written == 12 and set(report.seconds) >= {"read", "diff", "encode", "write"}


def test_memory_stays_bounded_whatever_the_input_size() -> None:
    pulled = 0
    acknowledged = 0
    ahead: list[int] = []

    def stream() -> Iterator[Record]:
        nonlocal pulled
        for record in docs(400):
            pulled += 1
            ahead.append(pulled - acknowledged)
            yield record

    def ack(ids: list[str]) -> None:
        nonlocal acknowledged
        acknowledged += len(ids)

    with Store(":memory:") as store:
        ingest_records(store, stream(), OPTIONS, progress=False, on_commit=ack)
    assert acknowledged == 400
    assert max(ahead) <= 12 * OPTIONS.batch_size  # queues of 2 between 3 stages, not 400


def test_an_error_in_the_encode_stage_reaches_the_caller_and_stops_the_run() -> None:
    def fail_on_third(call: int) -> None:
        if call == 3:
            raise InvalidInputError("the encoder refused batch 3")

    written: list[str] = []
    with Store(":memory:") as store:
        with pytest.raises(InvalidInputError, match="refused batch 3"):
            ingest_records(store, docs(40), OPTIONS, encoder=CountingEncoder(fail_on_third),
                           progress=False, on_commit=written.extend)
        assert len(written) == 8 and store.collection("docs").count() == 8
    assert not [t for t in threading.enumerate() if t.name.startswith("kinsight-ingest")]


def test_an_error_while_reading_reaches_the_caller() -> None:
    def broken() -> Iterator[Record | Problem]:
        yield from docs(5)
        raise NotFoundError("the file vanished")

    with Store(":memory:") as store, pytest.raises(NotFoundError, match="vanished"):
        ingest_records(store, broken(), OPTIONS, progress=False)


def test_pipelined_keeps_order_and_stops_its_threads_when_the_caller_leaves() -> None:
    out = list(pipelined(range(50), [lambda x: x * 2, lambda x: x + 1]))
    assert out == [x * 2 + 1 for x in range(50)]
    for value in pipelined(iter(range(10**9)), [lambda x: x], name="kinsight-early"):
        if value == 5:
            break
    assert not [t for t in threading.enumerate() if t.name.startswith("kinsight-early")]


def test_a_given_executor_does_the_encoding_with_the_same_results() -> None:
    class Recording(LocalExecutor):
        jobs = 0

        def encode(self, job: EncodeJob) -> dict[str, np.ndarray]:
            Recording.jobs += 1
            return super().encode(job)

    executor = Recording({"text": load_encoder(SPEC)})
    with Store(":memory:") as ours, Store(":memory:") as plain:
        ingest_records(ours, docs(10), OPTIONS, executor=executor, progress=False)
        ingest_records(plain, docs(10), OPTIONS, progress=False)
        assert Recording.jobs == 3  # batches of 4
        for item in ("d0", "d9"):
            np.testing.assert_array_equal(ours.collection("docs").item_vectors("text", item),
                                          plain.collection("docs").item_vectors("text", item))
