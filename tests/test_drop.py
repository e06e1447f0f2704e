"""Dropped data never comes back: a collection dropped and created again under the same name
answers only with its new items, in every mode, in-process and over HTTP, whatever derived index
files an earlier life of the name left behind; and no search returns an item deleted before it
started."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from kinsight.api.http import Settings, create_app
from kinsight.engine import AlreadyExistsError, InvalidInputError, NotFoundError, Store
from kinsight.indexers import IngestOptions, ingest_records
from kinsight.indexers.records import Record

SPEC = "fake:dim=32"
MODES = ("dense", "bm25", "hybrid")
OPTIONS = IngestOptions(collection="notes", encoder=SPEC, batch_size=16)


def records(prefix: str, n: int, words: str) -> list[Record]:
    return [Record(id=f"{prefix}-{i}", fields={"text": f"{words} note number {i} {words}"},
                   source="gen", line=i) for i in range(n)]


def hit_ids(store: Store, query: str, mode: str) -> set[str]:
    return {h.id for h in store.collection("notes").search(query, k=20, mode=mode)}


def test_drop_then_create_again_returns_only_the_new_items(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        ingest_records(store, records("old", 40, "shared words apple"), OPTIONS, progress=False)
        assert len(hit_ids(store, "shared words apple", "bm25")) == 20  # indexes built
        old_handle = store.collection("notes")
        store.drop_collection("notes")
        assert not (tmp_path / "indexes").exists() or not any((tmp_path / "indexes").iterdir())
        ingest_records(store, records("new", 20, "shared words pear"), OPTIONS, progress=False)
        for mode in MODES:
            found = hit_ids(store, "shared words apple", mode)
            assert found and all(i.startswith("new-") for i in found), (mode, sorted(found))
        with pytest.raises(NotFoundError, match="dropped"):
            old_handle.search("shared words", k=5, mode="dense")
    with Store(tmp_path) as store:  # and after a restart, from the saved index files
        for mode in MODES:
            found = hit_ids(store, "shared words apple", mode)
            assert found and all(i.startswith("new-") for i in found), (mode, sorted(found))


def test_index_files_of_an_earlier_life_of_the_name_are_discarded(tmp_path: Path) -> None:
    """However they got there (a crash, an old version, a copy), index files built from another
    collection of the same name are never trusted, even at the same generation."""
    with Store(tmp_path) as store:
        ingest_records(store, records("old", 40, "shared words apple"), OPTIONS, progress=False)
        folder = store.collection("notes").index_folder
        assert folder is not None
        saved = tmp_path / "saved-indexes"
        shutil.copytree(folder, saved)
        store.drop_collection("notes")
        ingest_records(store, records("new", 40, "shared words pear"), OPTIONS, progress=False)
        new_folder = store.collection("notes").index_folder
        assert new_folder is not None
    shutil.rmtree(new_folder)
    shutil.copytree(saved, new_folder)  # the old files, where the new collection looks
    with Store(tmp_path) as store:
        for mode in MODES:
            found = hit_ids(store, "shared words apple", mode)
            assert found and all(i.startswith("new-") for i in found), (mode, sorted(found))


def test_orphaned_index_folders_are_swept_on_open(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        ingest_records(store, records("a", 10, "words"), OPTIONS, progress=False)
        live = store.collection("notes").index_folder
    stray = [tmp_path / "indexes" / "gone.0123456789abcdef", tmp_path / "indexes" / "notes"]
    for folder in stray:
        (folder / "text.bm25").mkdir(parents=True)
        (folder / "text.faiss").write_bytes(b"stale")
    with Store(tmp_path):
        assert all(not folder.exists() for folder in stray)
        assert live is not None and live.exists()


def test_drop_and_create_again_over_http(tmp_path: Path) -> None:
    settings = Settings(encoder=SPEC, api_key=None)
    with Store(tmp_path) as store, TestClient(create_app(settings, store=store)) as client:
        old = [{"id": f"old-{i}", "fields": {"text": f"shared words apple {i}"}} for i in range(40)]
        new = [{"id": f"new-{i}", "fields": {"text": f"shared words pear {i}"}} for i in range(20)]
        assert client.post("/collections/notes/items", json={"items": old}).status_code == 200
        for mode in MODES:  # every index built and cached
            response = client.post("/collections/notes/search",
                                   json={"text": "shared words apple", "k": 20, "mode": mode})
            assert response.status_code == 200, response.text
        assert client.delete("/collections/notes").status_code == 204
        assert client.post("/collections/notes/items", json={"items": new}).status_code == 200
        for mode in MODES:
            response = client.post("/collections/notes/search",
                                   json={"text": "shared words apple", "k": 20, "mode": mode})
            assert response.status_code == 200, response.text
            found = [h["id"] for h in response.json()["hits"]]
            assert found and all(i.startswith("new-") for i in found), (mode, found)


def test_a_search_never_returns_an_item_deleted_before_it_started(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        ingest_records(store, records("n", 300, "race words"), OPTIONS, progress=False)
        notes = store.collection("notes")
        deleted_at: dict[str, float] = {}
        violations: list[tuple[str, str]] = []
        done = threading.Event()

        def searcher(mode: str) -> None:
            while not done.is_set():
                started = time.monotonic()
                for hit in notes.search("race words note", k=50, mode=mode):
                    when = deleted_at.get(hit.id)
                    if when is not None and when < started:
                        violations.append((mode, hit.id))

        threads = [threading.Thread(target=searcher, args=(m,)) for m in MODES]
        for t in threads:
            t.start()
        try:
            for i in range(0, 300, 3):
                doomed = [f"n-{j}" for j in range(i, i + 3)]
                notes.delete(doomed)
                now = time.monotonic()
                deleted_at.update(dict.fromkeys(doomed, now))
        finally:
            done.set()
            for t in threads:
                t.join()
        assert not violations, violations[:5]
        assert notes.count() == 0


@pytest.mark.parametrize("name", ["my-docs", "v1.2", "Docs_2026", "7th-set", "a.b-c_d"])
def test_collection_names_people_write_work_end_to_end(tmp_path: Path, name: str) -> None:
    options = IngestOptions(collection=name, encoder=SPEC, batch_size=16)
    with Store(tmp_path) as store:
        ingest_records(store, records("x", 10, "named words"), options, progress=False)
        for mode in MODES:
            assert store.collection(name).search("named words", k=3, mode=mode)
    with Store(tmp_path) as store:  # index files found again under the odd name
        assert store.list_collections() == [name]
        store.drop_collection(name)
        assert store.list_collections() == []


@pytest.mark.parametrize("name", ["", "-x", ".", "..", "a/b", "a b", "x;drop", "kinsight", "MAIN",
                                  "é", "a" * 64])
def test_other_collection_names_are_refused_saying_what_is_allowed(store: Store, name: str) -> None:
    with pytest.raises(InvalidInputError, match=r"letters, digits, '-', '_' and '\.'"):
        store.create_collection(name)


def test_names_that_differ_only_in_case_are_refused(store: Store) -> None:
    store.create_collection("docs")
    with pytest.raises(AlreadyExistsError, match="only in case"):
        store.create_collection("Docs")


def test_a_store_made_before_uids_gets_them_and_rebuilds_its_indexes(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        ingest_records(store, records("x", 30, "legacy words"), OPTIONS, progress=False)
        folder = store.collection("notes").index_folder
    con = duckdb.connect(str(tmp_path / "store.duckdb"))
    con.execute("ALTER TABLE kinsight.collections DROP COLUMN uid")
    con.close()
    assert folder is not None
    legacy = tmp_path / "indexes" / "notes"
    folder.rename(legacy)  # where indexes lived before uids
    with Store(tmp_path, read_only=True) as store:  # read-only: used as they are
        assert store.collection("notes").index_folder == legacy
        assert {h.id for h in store.collection("notes").search("legacy words", k=5, mode="bm25")}
    with Store(tmp_path) as store:  # writable: a uid is given, the untied files swept
        notes = store.collection("notes")
        assert notes.uid and not legacy.exists()
        for mode in MODES:
            assert len(notes.search("legacy words", k=30, mode=mode)) == 30
