"""Shared fixtures: in-memory stores per test, synthetic vectors, the fake encoder, and a client
of the HTTP API over an in-memory store (``client``; ``docs`` with ``DOCS`` upserted)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from kinsight.api.http import Settings, create_app
from kinsight.engine import EncoderInfo, Item, Store
from kinsight.indexers import model_cache
from kinsight.indexers.image_variants import IMAGE_VARIANT_ENV
from kinsight.indexers.model_cache import CACHE_ENV, VARIANT_ENV

from .browser import browser  # noqa: F401  (a fixture for the browser tests)

VECTOR_ENCODER = EncoderInfo(spec="vectors:synthetic", modality="text", dim=16,
                             fingerprint="synthetic-16")


@pytest.fixture(scope="session", autouse=True)
def model_cache_dir(tmp_path_factory):
    """Prepared model variants go to a folder of this run, never the user's cache; torch float32
    is pinned so no test depends on (or pays for) a variant choice, except those in
    test_text_variants.py and test_image_variants.py, which unpin it."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("model-cache")
        patch.setenv(CACHE_ENV, str(folder))
        patch.setenv(VARIANT_ENV, "torch-fp32")
        patch.setenv(IMAGE_VARIANT_ENV, "torch-fp32")
        # The served apps encode upserts in their own process: a child process per app would
        # cost seconds each and could not see encoders a test registers in memory.
        # test_process_executor.py tests the child.
        patch.setenv("KINSIGHT_ENCODE_NICENESS", "0")
        yield folder


@pytest.fixture(scope="session")
def minilm_export(model_cache_dir: Path) -> Path:
    """The ONNX export of the bundled MiniLM, made once per run (~10-20 s), in the run's cache."""
    from kinsight.indexers.onnx_export import ensure_onnx_export
    from kinsight.indexers.sentence_encoder import local_folder, weights_fingerprint

    folder = local_folder("")
    assert folder is not None
    fingerprint = weights_fingerprint(folder)
    ensure_onnx_export(folder, fingerprint, model_cache.onnx_dir(fingerprint))
    return model_cache.onnx_dir(fingerprint)


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


# -- the HTTP API ------------------------------------------------------------------------------
SPEC = "fake:dim=32"
DOCS = [
    ("py-csv", "read a csv file with python and pandas", "python", 2021),
    ("py-sort", "sort a python list of dicts by a key", "python", 2019),
    ("rs-csv", "parse csv records in rust with serde", "rust", 2022),
    ("rs-own", "ownership and borrowing in rust explained", "rust", 2020),
    ("go-http", "write an http server in go", "go", 2018),
    ("go-csv", "stream a large csv file in go", "go", 2023),
]


def doc_items(docs: list[tuple[str, str, str, int]] = DOCS) -> list[dict[str, Any]]:
    return [{"id": i, "fields": {"text": t, "section": s, "year": y}} for i, t, s, y in docs]


@contextmanager
def serve(**settings: Any) -> Iterator[TestClient]:
    """A client of an app over a fresh in-memory store; settings given explicitly, so the
    tests never pick up KINSIGHT_* variables of the environment they run in."""
    options: dict[str, Any] = {"encoder": SPEC, "api_key": None, **settings}
    with Store(":memory:") as store, TestClient(create_app(Settings(**options), store=store)) as c:
        yield c


@pytest.fixture
def client() -> Iterator[TestClient]:
    with serve() as c:
        yield c


@pytest.fixture
def docs(client: TestClient) -> TestClient:
    response = client.post("/collections/docs/items", json={"items": doc_items()})
    assert response.status_code == 200, response.text
    return client


def search(client: TestClient, **body: Any) -> httpx.Response:
    return client.post("/collections/docs/search", json=body)
