"""Shared fixtures: in-memory stores per test, synthetic vectors, the fake encoder."""

from __future__ import annotations

import numpy as np
import pytest

from kinsight.engine import EncoderInfo, Item, Store

from .browser import browser  # noqa: F401  (a fixture for the browser tests)

VECTOR_ENCODER = EncoderInfo(spec="vectors:synthetic", modality="text", dim=16,
                             fingerprint="synthetic-16")


@pytest.fixture
def store():
    with Store(":memory:") as s:
        yield s


@pytest.fixture
def vectors() -> np.ndarray:
    return np.random.default_rng(42).normal(size=(300, 16)).astype(np.float32)


@pytest.fixture
def filled(store, vectors):
    """A collection of 300 items with synthetic vectors and a few typed fields."""
    docs = store.create_collection("docs")
    docs.ensure_space("text", VECTOR_ENCODER, source_fields=["text"])
    docs.upsert(
        Item(id=f"d{i}", fields={"text": f"document {i} about {'cats' if i % 2 else 'dogs'}",
                                 "n": i, "group": ["a", "b", "c"][i % 3]},
             vectors={"text": vectors[i]})
        for i in range(len(vectors))
    )
    return docs


def normalized(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)
