"""The per-item chunk cap, end to end: a 2 MB text is encoded as its first chunks only, reported
with what was kept, kept whole in its fields (BM25 finds its end), and the cap reaches the
pipeline from Python, the command line and the HTTP service."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.api.http import Settings, create_app
from kinsight.engine import EncoderInfo, Store, load_encoder
from kinsight.engine.encoders import Role
from kinsight.indexers.chunking import DEFAULT_MAX_CHUNKS, count_chunks, words_per_chunk
from kinsight.indexers.ingest import IngestOptions, SpaceSource, ingest_records
from kinsight.indexers.records import Record

__all__: list[str] = []

SPEC = "fake:dim=32"
LAST_WORD = "quetzalcoatl"  # in the big text only, a few words before its end


class CountingEncoder:
    """The fake encoder, remembering how many texts each call encoded."""

    def __init__(self) -> None:
        self.inner = load_encoder(SPEC)
        self.calls: list[int] = []

    @property
    def info(self) -> EncoderInfo:
        return self.inner.info

    def encode(self, inputs: Sequence[Any], *, role: Role = "document") -> np.ndarray:
        self.calls.append(len(inputs))
        return self.inner.encode(inputs, role=role)


def big_text(chars: int = 2_000_000) -> str:
    words: list[str] = []
    size = 0
    while size < chars - 100:
        words.append(f"w{len(words) % 1000}")
        size += len(words[-1]) + 1
    return " ".join([*words, LAST_WORD, "the", "end"])


def records(*texts: tuple[str, str]) -> list[Record]:
    return [Record(id=i, fields={"text": t}, source="test", line=n + 1)
            for n, (i, t) in enumerate(texts)]


def fake_chunks(text: str) -> int:
    """How many chunks the fake encoder's space makes of ``text`` without a cap."""
    max_words = words_per_chunk(load_encoder(SPEC).info.max_tokens)
    assert max_words is not None
    return count_chunks(text, max_words, min(32, max_words // 4))


@pytest.fixture(scope="module")
def text() -> str:
    return big_text()


def test_a_2mb_text_is_encoded_as_its_first_chunks_and_kept_whole(text: str) -> None:
    encoder = CountingEncoder()
    docs = records(("big-doc", text), ("small", "a short note about birds"))
    with Store(":memory:") as store:
        report = ingest_records(store, docs, IngestOptions(collection="docs"), encoder=encoder,
                                progress=False)
        coll = store.collection("docs")
        assert sum(encoder.calls) == DEFAULT_MAX_CHUNKS + 1 == report.chunks
        assert coll.count_vectors("text") == DEFAULT_MAX_CHUNKS + 1
        assert report.written == 2
        [cut] = report.cut
        assert (cut.id, cut.space, cut.kept) == ("big-doc", "text", DEFAULT_MAX_CHUNKS)
        assert cut.total == fake_chunks(text) > 10_000
        assert cut.start == 0 and cut.length == len(text) and 0 < cut.end < len(text) // 100
        assert str(cut).startswith(f"item 'big-doc': {cut.total:,} chunks, kept the first 64 "
                                   f"(characters 0-{cut.end:,} of {len(text):,})")
        assert "1 cut to their first chunks" in report.summary()
        assert coll.get(["big-doc"])[0].fields["text"] == text
        hits = coll.search(LAST_WORD, mode="bm25", k=2)
        assert [h.id for h in hits] == ["big-doc"]


def test_the_cap_is_in_the_hash_of_the_items_it_cuts_only() -> None:
    long_text = " ".join(f"w{i}" for i in range(2_000))  # 69 chunks of the fake encoder's 38 words
    docs = records(("long", long_text), ("short", "a short note"))
    with Store(":memory:") as store:
        first = ingest_records(store, docs, IngestOptions(collection="docs", max_chunks=5),
                               encoder=CountingEncoder(), progress=False)
        assert [(c.id, c.kept, c.total) for c in first.cut] == [("long", 5, 69)]
        again = ingest_records(store, docs, IngestOptions(collection="docs", max_chunks=5),
                               encoder=CountingEncoder(), progress=False)
        assert (again.written, again.unchanged, again.cut) == (0, 2, [])
        # Raising the cap re-encodes the item it cut, and nothing else.
        raised = ingest_records(store, docs, IngestOptions(collection="docs", max_chunks=None),
                                encoder=CountingEncoder(), progress=False)
        assert (raised.written, raised.unchanged, raised.chunks, raised.cut) == (1, 1, 69, [])
        assert store.collection("docs").count_vectors("text") == 70


def test_the_hash_of_an_item_the_cap_does_not_reach_is_as_before() -> None:
    from kinsight.indexers.ingest import content_hash

    fields = {"text": "a short note"}
    before = content_hash(["text", ["text"], "fp", "a short note", 32], fields)
    assert content_hash(["text", ["text"], "fp", "a short note", 32], fields, cut_by=None) == before
    capped = content_hash(["text", ["text"], "fp", "a short note", 32], fields, cut_by=5)
    assert capped != before
    assert capped.split(".")[1] == before.split(".")[1]  # the cap is part of what is encoded


def test_a_text_only_multi_space_ingest_caps_each_space(text: str) -> None:
    options = IngestOptions(collection="docs", max_chunks=3, spaces=(
        SpaceSource("body", SPEC, ("text",)), SpaceSource("title", SPEC, ("title",))))
    docs = [Record(id="big-doc", fields={"text": text, "title": "a big document"}, source="test",
                   line=1)]
    with Store(":memory:") as store:
        report = ingest_records(store, docs, options, progress=False)
        coll = store.collection("docs")
        assert (coll.count_vectors("body"), coll.count_vectors("title")) == (3, 1)
        assert [(c.id, c.space, c.kept) for c in report.cut] == [("big-doc", "body", 3)]
        assert coll.get(["big-doc"])[0].fields["text"] == text


def test_cli_max_chunks_reaches_the_cap(tmp_path: Path) -> None:
    long_text = " ".join(f"w{i}" for i in range(2_000))
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"id": "long", "text": long_text}) + "\n"
                    + json.dumps({"id": "short", "text": "a short note"}) + "\n")
    runner = CliRunner()
    common = ["ingest", str(path), "--encoder", SPEC, "--store", str(tmp_path / "store")]
    result = runner.invoke(app, [*common, "--max-chunks", "4", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["chunks"] == 5
    assert report["cut"] == [{"id": "long", "space": "text", "kept": 4, "total": 69, "start": 0,
                              "end": len(" ".join(f"w{i}" for i in range(38 + 3 * 29))),
                              "length": len(long_text)}]
    result = runner.invoke(app, [*common, "--max-chunks", "2"])
    assert result.exit_code == 0, result.output
    assert "item 'long': 69 chunks, kept the first 2" in result.output
    assert "raise --max-chunks to index more" in result.output
    assert "--max-chunks" in runner.invoke(app, ["ingest", "--help"]).output


def test_http_setting_reaches_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINSIGHT_MAX_CHUNKS_PER_ITEM", "3")
    settings = Settings(encoder=SPEC, api_key=None)
    assert settings.max_chunks_per_item == 3
    assert Settings.model_fields["max_chunks_per_item"].default == DEFAULT_MAX_CHUNKS
    long_text = " ".join(f"w{i}" for i in range(2_000))
    items = [{"id": "long", "fields": {"text": long_text}},
             {"id": "short", "fields": {"text": "a short note"}}]
    with Store(":memory:") as store, TestClient(create_app(settings, store=store)) as client:
        response = client.post("/collections/docs/items", json={"items": items})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["written"] == 2 and body["problems"] == []
        [warning] = body["warnings"]
        assert warning.startswith("item 'long': 69 chunks, kept the first 3 (characters 0-")
        assert "KINSIGHT_MAX_CHUNKS_PER_ITEM" in warning
        assert store.collection("docs").count_vectors("text") == 4
        fields = client.get("/collections/docs/items/long").json()["fields"]
        assert fields["text"] == long_text
