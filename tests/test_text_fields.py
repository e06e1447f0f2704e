"""Free-text fields: which fields a probe reads words of (``lexical.free_text_fields``), and the
probe's TF-IDF block per such field."""

from __future__ import annotations

import numpy as np

from kinsight.engine import Item
from kinsight.engine.lexical import FREE_TEXT_SAMPLE, free_text_fields

from .conftest import VECTOR_ENCODER, normalized


def test_free_text_fields_are_string_fields_of_two_words_or_more_on_average(store):
    docs = store.create_collection("docs")
    docs.ensure_space("text", VECTOR_ENCODER, source_fields=["text"])
    rng = np.random.default_rng(0)
    docs.upsert(Item(id=f"d{i}", fields={
        "text": "a long description of the package",
        "title": "short one line summary" if i % 2 else "x",  # 2.5 words on average
        "section": "utils",  # one word: a label, not free text
        "code": "a b" if i < 3 else "z",  # 1.3 words on average: below the line
        "notes": None,  # never set
        "size": i}, vectors={"text": normalized(rng.normal(size=16))}) for i in range(10))
    assert free_text_fields(docs.tables) == ["text", "title"]
    assert free_text_fields(docs.tables, exclude={"text", "section"}) == ["title"]


def test_free_text_fields_are_measured_on_a_sample_of_a_large_collection(store):
    docs = store.create_collection("big")
    docs.ensure_space("text", VECTOR_ENCODER)
    vector = normalized(np.ones(16))
    # Every item but one has a one-word field; the rule answers alike whatever the sample.
    docs.upsert(Item(id=f"d{i:05d}", fields={"name": "pkg" if i else "many words " * 50},
                     vectors={"text": vector}) for i in range(FREE_TEXT_SAMPLE + 500))
    assert free_text_fields(docs.tables) == []
