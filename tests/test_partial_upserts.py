"""An upsert that encodes some of a collection's spaces leaves the item's vectors in the others
alone while the fields they were made from are unchanged, and removes them (with a warning) where
those fields changed: no vector is silently dropped, and none is kept that no longer matches."""

from __future__ import annotations

import logging

import pytest

from kinsight.engine import Store
from kinsight.indexers.ingest import IngestOptions, SpaceSource, ingest_records
from kinsight.indexers.records import Record

SPEC = "fake:dim=16"
BOTH = IngestOptions(collection="docs", spaces=(SpaceSource("body", SPEC, ("text",)),
                                                SpaceSource("title", SPEC, ("title",))))
BODY_ONLY = IngestOptions(collection="docs", spaces=(SpaceSource("body", SPEC, ("text",)),))


def _records(texts: dict[str, str], titles: dict[str, str]) -> list[Record]:
    return [Record(id=i, fields={"text": texts[i], "title": titles[i]}, source="test", line=n)
            for n, i in enumerate(texts, 1)]


@pytest.fixture()
def store():
    texts = {f"d{i}": f"the body of document {i}" for i in range(3)}
    titles = {f"d{i}": f"title number {i}" for i in range(3)}
    with Store(":memory:") as store:
        ingest_records(store, _records(texts, titles), BOTH, progress=False)
        store.texts, store.titles = texts, titles  # type: ignore[attr-defined]
        yield store


def _title_hits(store: Store, text: str) -> list[str]:
    return [hit.id for hit in store.collection("docs").search(text, space="title", mode="dense",
                                                              k=5)]


def test_a_body_only_ingest_keeps_the_title_vectors(store: Store) -> None:
    before = _title_hits(store, "title number 1")
    texts = {i: t + ", revised" for i, t in store.texts.items()}
    report = ingest_records(store, _records(texts, store.titles), BODY_ONLY, progress=False)
    assert report.written == 3
    docs = store.collection("docs")
    assert (docs.count_vectors("body"), docs.count_vectors("title")) == (3, 3)
    assert _title_hits(store, "title number 1") == before
    assert docs.get(["d1"])[0].fields["text"].endswith(", revised")


def test_a_changed_title_drops_only_its_stale_vector(store: Store,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    titles = {**store.titles, "d1": "a different title"}
    texts = {i: t + ", revised" for i, t in store.texts.items()}
    with caplog.at_level(logging.WARNING):
        ingest_records(store, _records(texts, titles), BODY_ONLY, progress=False)
    docs = store.collection("docs")
    assert (docs.count_vectors("body"), docs.count_vectors("title")) == (3, 2)
    assert sorted(_title_hits(store, "title number 0")) == ["d0", "d2"]
    assert "space 'title'" in caplog.text and "1 replaced item(s)" in caplog.text
    # Encoding the title space again brings it back.
    ingest_records(store, _records(texts, titles), BOTH, progress=False)
    assert docs.count_vectors("title") == 3
    assert _title_hits(store, "a different title")[0] == "d1"


def test_an_ingest_of_every_space_still_replaces_every_vector(store: Store) -> None:
    texts = {"d0": store.texts["d0"]}
    ingest_records(store, _records(texts, {"d0": ""}), BOTH, progress=False)
    docs = store.collection("docs")  # d0 has no title now: no title vector either
    assert (docs.count_vectors("body"), docs.count_vectors("title")) == (3, 2)
