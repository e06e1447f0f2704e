"""The query path's in-memory copy of the items: same fields as DuckDB, never a stale one."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kinsight.engine import EncoderInfo, Item, Store
from kinsight.engine.storage.item_cache import READS_BEFORE_COPY

INFO = EncoderInfo(spec="test:dim=4", modality="text", dim=4, fingerprint="t4")


@pytest.fixture
def coll():
    store = Store(":memory:")
    coll = store.create_collection("docs")
    coll.ensure_space("text", INFO, source_fields=["text"])
    rng = np.random.default_rng(0)
    coll.upsert([Item(id=f"d{i}", fields={"text": f"doc {i}", "n": i, "tags": ["a", str(i)],
                                          "score": i / 2, "ok": i % 2 == 0, "raw": b"\x00\x01"},
                      vectors={"text": rng.standard_normal(4).astype(np.float32)})
                 for i in range(50)])
    yield coll
    store.close()


def _warm(coll) -> None:
    """Read fields until the copy of this generation exists."""
    generation = coll.generation()
    deadline = time.monotonic() + 10
    while coll.tables._item_cache.copied_generation != generation:
        assert time.monotonic() < deadline, "the copy was never made"
        coll.fields_of(["d1", "d2"])
        time.sleep(0.01)


def test_fields_from_the_copy_equal_those_from_duckdb(coll):
    ids = ["d7", "d3", "missing", "d7", "d42"]
    from_duckdb = coll.fields_of(ids)
    assert coll.tables._item_cache.copied_generation is None
    _warm(coll)
    from_copy = coll.fields_of(ids)
    assert from_copy == from_duckdb and list(from_copy) == list(from_duckdb)
    assert {type(v) for v in from_copy["d7"].values()} == {str, int, list, float, bool, bytes}
    assert coll.fields_of(["missing"]) == {} == coll.fields_of([])  # none found: no take([])


def test_a_write_makes_the_copy_stale_at_once(coll):
    _warm(coll)
    coll.delete(["d3"])
    coll.upsert([Item(id="d4", fields={"text": "changed", "n": -4},
                      vectors={"text": np.ones(4, np.float32)})])
    found = coll.fields_of(["d3", "d4"])
    assert "d3" not in found and found["d4"]["text"] == "changed" and found["d4"]["n"] == -4
    hits = coll.search(np.ones(4, np.float32), k=50, mode="dense")
    assert "d3" not in {h.id for h in hits}


def test_existing_ids_from_the_copy_need_no_query_and_see_deletes(coll, monkeypatch):
    ids = ["d7", "missing", "d3", "d7"]
    from_duckdb = coll.existing_ids(ids)
    _warm(coll)

    def no_query(_ids):
        raise AssertionError("read from DuckDB while a current copy exists")

    with monkeypatch.context() as patch:
        patch.setattr(coll.tables, "content_hashes", no_query)
        assert sorted(coll.existing_ids(ids)) == sorted(from_duckdb) == ["d3", "d7"]
        assert coll.existing_ids([]) == []
    coll.delete(["d3"])
    assert coll.existing_ids(ids) == ["d7"]  # the write made the copy stale: DuckDB answers
    hits = coll.search(np.ones(4, np.float32), k=50, mode="dense", return_fields=())
    assert len(hits) == 49 and "d3" not in {h.id for h in hits}


def test_no_copy_before_a_burst_of_reads(coll):
    for _ in range(READS_BEFORE_COPY - 1):
        coll.fields_of(["d1"])
    time.sleep(0.2)
    assert coll.tables._item_cache.copied_generation is None
