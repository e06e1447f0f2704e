from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from kinsight.engine import (
    AlreadyExistsError,
    DimensionMismatchError,
    EncoderInfo,
    EncoderMismatchError,
    InvalidInputError,
    Item,
    NotFoundError,
    ReadOnlyStoreError,
    Store,
    StoreLockedError,
)

from .conftest import VECTOR_ENCODER


def test_collections_create_list_drop(store):
    store.create_collection("b")
    store.create_collection("a")
    assert store.list_collections() == ["a", "b"]
    with pytest.raises(AlreadyExistsError):
        store.create_collection("a")
    assert store.create_collection("a", exist_ok=True).name == "a"
    store.drop_collection("a")
    assert store.list_collections() == ["b"]
    with pytest.raises(NotFoundError, match="collections: b"):
        store.collection("a")


@pytest.mark.parametrize("name", ["main", "kinsight", "", "x" * 64])  # more in test_drop.py
def test_bad_collection_names_are_refused(store, name):
    with pytest.raises(InvalidInputError):
        store.create_collection(name)


def test_upsert_replaces_by_id_and_fields_are_columns(filled):
    assert filled.count() == 300
    assert filled.fields() == {"text": "VARCHAR", "n": "BIGINT", "group": "VARCHAR"}
    filled.upsert([Item(id="d1", fields={"text": "new", "n": 1000, "extra": 2.5},
                        vectors={"text": np.ones(16, np.float32)})])
    assert filled.count() == 300
    assert filled.count_vectors("text") == 300
    (item,) = filled.get(["d1"])
    assert item.fields["n"] == 1000 and item.fields["extra"] == 2.5
    assert filled.fields()["extra"] == "DOUBLE"
    rows = filled.store.cursor().execute("SELECT count(*) FROM docs.items WHERE n > 250").fetchone()
    assert rows[0] == 50  # 251..299 and the replaced d1


def test_get_keeps_order_and_skips_missing(filled):
    assert [i.id for i in filled.get(["d5", "missing", "d2"])] == ["d5", "d2"]


def test_delete_by_ids_and_by_filter(filled):
    assert filled.delete(["d0", "d1", "nope"]) == 2
    # d0 and d1, deleted above, were in groups a and b: all 100 of group c remain.
    assert filled.delete(where={"field": "group", "op": "eq", "value": "c"}) == 100
    assert filled.count() == 300 - 2 - 100
    assert filled.count_vectors("text") == filled.count()
    with pytest.raises(InvalidInputError):
        filled.delete()


def test_type_conflict_names_item_and_field(filled):
    with pytest.raises(InvalidInputError, match=r"item 'x'.*field 'n'"):
        filled.upsert([Item(id="x", fields={"n": "not a number"})])
    assert filled.count() == 300  # the failed transaction left nothing behind


def test_wrong_dimension_and_bad_ids_are_refused(filled):
    with pytest.raises(DimensionMismatchError, match="'bad'"):
        filled.upsert([Item(id="bad", vectors={"text": np.ones(3, np.float32)})])
    with pytest.raises(InvalidInputError):
        filled.upsert([Item(id="  ", fields={})])
    with pytest.raises(NotFoundError, match="no vector space 'image'"):
        filled.upsert([Item(id="x", vectors={"image": np.ones(16, np.float32)})])


def test_space_refuses_another_encoder(filled):
    other = EncoderInfo(spec="other:model", modality="text", dim=16, fingerprint="different")
    with pytest.raises(EncoderMismatchError, match=r"vectors:synthetic.*other:model"):
        filled.ensure_space("text", other)


def test_reopen_persists_and_catches_up_stale_index(tmp_path, vectors):
    with Store(tmp_path) as s:
        docs = s.create_collection("docs")
        docs.ensure_space("text", VECTOR_ENCODER)
        docs.upsert(Item(id=f"d{i}", vectors={"text": vectors[i]}) for i in range(100))
        docs.refresh()  # index file saved at this generation
        index_file = docs.index_folder / "text.faiss"
        saved = index_file.read_bytes()
        docs.delete(["d0", "d1"])
        docs.upsert(Item(id=f"d{i}", vectors={"text": vectors[i]}) for i in range(100, 150))
    index_file.write_bytes(saved)  # as if the process died before saving the newer index
    with Store(tmp_path) as s:
        docs = s.collection("docs")
        assert docs.count() == 148
        with docs.index("text").searching() as index:
            assert index.ntotal == 148
        hits = docs.search(vectors[120], k=1)
        assert hits[0].id == "d120"
        assert "d0" not in {h.id for h in docs.search(vectors[0], k=10)}


def test_corrupt_index_file_is_rebuilt(tmp_path, vectors):
    with Store(tmp_path) as s:
        docs = s.create_collection("docs")
        docs.ensure_space("text", VECTOR_ENCODER)
        docs.upsert(Item(id=f"d{i}", vectors={"text": vectors[i]}) for i in range(50))
        docs.refresh()
        index_file = docs.index_folder / "text.faiss"
    index_file.write_bytes(b"garbage")
    with Store(tmp_path) as s:
        assert s.collection("docs").search(vectors[7], k=1)[0].id == "d7"


def test_read_only_store_refuses_writes(tmp_path):
    with Store(tmp_path) as s:
        s.create_collection("docs")
    with Store(tmp_path, read_only=True) as s:
        assert s.list_collections() == ["docs"]
        with pytest.raises(ReadOnlyStoreError):
            s.create_collection("more")


def test_second_writer_process_gets_a_clear_error(tmp_path):
    with Store(tmp_path) as s:
        s.create_collection("docs")
        code = ("from kinsight.engine import Store, StoreLockedError\n"
                f"try:\n    Store({str(tmp_path)!r})\n"
                "except StoreLockedError as e:\n    print('LOCKED', e)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60)
        assert "LOCKED" in out.stdout, out.stderr
        assert "one writer at a time" in out.stdout
    # Released on close: a new writer gets in.
    with Store(tmp_path) as s:
        assert s.list_collections() == ["docs"]


def test_locked_error_type_is_exported():
    assert issubclass(StoreLockedError, Exception)


def test_field_names_differing_only_in_case_are_refused(filled):
    with pytest.raises(InvalidInputError, match=r"'Text'.*'text'"):
        filled.upsert([Item(id="x", fields={"Text": "shouting"})])


def test_concurrent_first_use_of_a_space_creates_it_once(store):
    import threading

    docs = store.create_collection("docs")
    errors = []

    def create() -> None:
        try:
            docs.ensure_space("text", VECTOR_ENCODER)
        except Exception as e:  # collected and asserted on below
            errors.append(e)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert list(docs.spaces()) == ["text"]


@pytest.mark.parametrize("fields", [{"big": 2**70}, {"n": 1e300}, {"n": float("inf")}])
def test_numbers_a_bigint_field_cannot_hold_are_refused_naming_the_item(filled, fields):
    with pytest.raises(InvalidInputError, match=r"item 'new'.*(64-bit|infinity)"):
        filled.upsert([Item(id="new", fields={"text": "x", **fields})])
    assert filled.count() == 300
