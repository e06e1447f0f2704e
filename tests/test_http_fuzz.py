"""Schemathesis over the app's own OpenAPI: every operation gets bounded, seeded examples (valid
and invalid) in-process through the ASGI app, and every answer must be documented, conform to its
response schema and content type, and never be a 5xx.

Each operation runs against its own copy of one store directory holding two small collections
made with the deterministic fake encoder, so what one operation writes or drops never changes
what another one sees, and a run is the same on every machine.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from kinsight.api.http import Settings, create_app
from kinsight.engine import Item, Store, load_encoder

from .conftest import SPEC

SEED = 15  # any fixed number: every generated case follows from it, so CI runs are repeatable
MAX_EXAMPLES = 20  # generated cases per operation, on top of the examples in the schema

# The schema is the same for every app; this one only serves its OpenAPI document.
_OPENAPI = create_app(Settings(encoder=SPEC, api_key=None)).openapi()
_CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    # Examples from the schema, then generated cases; the coverage and stateful phases would
    # multiply the cases past what a default test run can afford.
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    # Schemathesis gives up on a request after 10 s; an isolation-forest anomaly run (200 trees
    # refit per fold) took 5 s here alone and passed 10 s on a loaded machine.
    "request-timeout": 120,
    "checks": {"enabled": False,
               "not_a_server_error": {"enabled": True},
               "status_code_conformance": {"enabled": True},
               "content_type_conformance": {"enabled": True},
               "response_schema_conformance": {"enabled": True},
               "response_headers_conformance": {"enabled": True}},
})
schema = schemathesis.openapi.from_dict(_OPENAPI, config=_CONFIG)

# Items of both collections: four labelled sections of five items and four unlabelled ones
# (enough for the probes, the label checks and the anomaly percentiles), one long enough to be
# chunked, and a list field. Texts are drawn from each section's words with a fixed seed.
_WORDS = {"python": "pandas csv list dict script interpreter",
          "rust": "ownership borrow serde cargo crate compiler",
          "go": "goroutine channel http server module binary",
          "sound": "audio mixer player volume speaker record"}


def _items() -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    items = [{"id": f"{section}-{i}", "fields": {
        "text": " ".join(rng.choice(words.split(), 5)), "title": f"{section} note {i}",
        "section": section, "year": 2018 + i, "tags": [section, "even" if i % 2 else "odd"]}}
        for section, words in _WORDS.items() for i in range(5)]
    items += [{"id": f"misc-{i}", "fields": {"text": f"unsorted note {i}", "title": f"misc {i}",
                                             "section": None, "year": None, "tags": []}}
              for i in range(4)]
    items[-1]["fields"]["text"] = " ".join(rng.choice(" ".join(_WORDS.values()).split(), 300))
    return items


# Generated strings alone would almost never name a collection, item, space or field that exists,
# and the requests would all stop at a 404 before reaching the engine. So for these keys of the
# path and of the body, values that exist are drawn as well as the generated one. RUN_ID stands
# for the run made in the fixture, whose id is only known once it has run (path values are drawn
# percent-encoded, so it is URL-safe).
RUN_ID = "the-cluster-run"
_KNOWN_PATH_VALUES: dict[str, list[Any]] = {
    "name": ["docs", "notes"],
    "item_id": ["python-0", "misc-3"],
    "run_id": [RUN_ID],
    "table": ["assignments", "map"],
}
_KNOWN_BODY_VALUES: dict[str, list[Any]] = {
    "space": ["text", "title"],
    "a": ["text"],
    "b": ["title"],
    "id": ["python-0"],
    "ids": [["python-0", "go-1"]],
    "positive": [["python-0"], [{"id": "rust-1", "weight": 2.0}, "rust-2"]],
    "negative": [["go-2"]],
    "user": ["u1"],
    "item": ["python-1"],
    "label_field": ["section"],
    "name_field": ["title"],
    "reference_collection": ["notes"],
    "fields": [["section", "year"]],
    "text_fields": [["text"]],
    "filter": [{"field": "section", "op": "in", "value": ["python", "rust"]},
               {"not": {"field": "year", "op": "lt", "value": 2020}}],
}


def _some_known(values: Any, known: dict[str, list[Any]]) -> st.SearchStrategy[Any]:
    """``values`` (a dict of parameters or a body) with each key of ``known`` either kept or
    replaced by one of its known values; anything but a non-empty dict is kept as it is."""
    if not isinstance(values, dict) or not values:
        return st.just(values)
    return st.fixed_dictionaries({
        key: st.sampled_from([*known[key], value]).map(copy.deepcopy) if key in known
        else st.just(value)
        for key, value in values.items()})


@schema.hook
def flatmap_path_parameters(context: schemathesis.HookContext,
                            path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    return _some_known(path_parameters, _KNOWN_PATH_VALUES)


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    return _some_known(body, _KNOWN_BODY_VALUES)


@dataclass(frozen=True)
class Template:
    path: Path
    run_id: str


@dataclass(frozen=True)
class Served:
    app: FastAPI
    run_id: str


@pytest.fixture(scope="module", autouse=True)
def _faiss_on_one_thread() -> Iterator[None]:
    # On collections this small FAISS's OpenMP threads only wait for each other: on a busy
    # two-core machine one k-means fit took 0.1 s with two threads and 2 ms with one.
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """A closed store directory (so its index files exist) with ``docs``, whose items have
    vectors in two spaces, text and title, interactions of user u1 and a cluster run, and
    ``notes``, the same items posted through the API into space text (the long one chunked)."""
    path = tmp_path_factory.mktemp("fuzz") / "store"
    encoder = load_encoder(SPEC)
    items = _items()
    with Store(path) as store:
        # Written by the engine: an upsert over HTTP names one space and replaces whole items,
        # so a second one into space title would drop the items' text vectors.
        docs = store.create_collection("docs")
        vectors = {}
        for space in ("text", "title"):
            docs.ensure_space(space, encoder.info, source_fields=[space])
            vectors[space] = encoder.encode([item["fields"][space] for item in items])
        docs.upsert(Item(id=item["id"], fields=item["fields"],
                         vectors={space: v[i] for space, v in vectors.items()})
                    for i, item in enumerate(items))
        with TestClient(create_app(Settings(encoder=SPEC, api_key=None), store=store)) as client:
            def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
                response = client.post(url, json=body)
                assert response.status_code == 200, response.text
                result: dict[str, Any] = response.json()
                return result

            post("/collections/notes/items", {"items": items})
            post("/collections/docs/interactions", {"interactions": [
                {"user": "u1", "item": "python-0", "kind": "like"},
                {"user": "u1", "item": "go-3"}]})
            run_id = post("/collections/docs/cluster", {"k": 3})["run_id"]
    return Template(path, run_id)


@pytest.fixture
def served(template: Template, tmp_path: Path) -> Iterator[Served]:
    copy = tmp_path / "store"
    shutil.copytree(template.path, copy)
    with Store(copy) as store:
        # Not warmed: the lifespan, which warms the spaces, does not run here (/ready is 200).
        settings = Settings(encoder=SPEC, api_key=None, warm_up=False)
        yield Served(create_app(settings, store=store), template.run_id)


# One store per operation, shared by its examples: that is what the function-scoped fixture is
# for, so Hypothesis's check against sharing one is off.
_bounded = settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.filter_too_much])

def _call_and_validate(case: schemathesis.Case, served: Served) -> None:
    """Send the case to the app in-process and run the checks of _CONFIG on the answer."""
    if (case.path_parameters or {}).get("run_id") == RUN_ID:
        case.path_parameters["run_id"] = served.run_id
    case.call_and_validate(app=served.app)


@schema.parametrize()
@_bounded
def test_every_operation_answers_as_documented(case: schemathesis.Case, served: Served) -> None:
    _call_and_validate(case, served)
