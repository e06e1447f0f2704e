"""``tune``: the adapter's gradient, learning words the documents never use, the seeded split,
and tuned search read back from a reopened store."""

from __future__ import annotations

import numpy as np
import pytest

from kinsight.engine import InvalidInputError, NotFoundError, Store
from kinsight.engine.evaluation import Query
from kinsight.engine.tuning import infonce_loss
from kinsight.indexers import IngestOptions, ingest_records
from kinsight.indexers.records import Record

TOPICS, VARIANTS = 20, 5
# Small steps would need hundreds of epochs on 60 training queries; these learn in a few.
FAST = {"learning_rate": 0.05, "batch_size": 16, "max_epochs": 40, "weight_decay": 0.0}


def synonym_records() -> list[Record]:
    """Documents say ``docword{t}``; the queries below say ``askword{t}``, a word no document has,
    with the variant word that all topics share: untuned, each query ties with 20 documents."""
    return [Record(id=f"t{t}v{v}", fields={"text": f"docword{t} variant{v}"}, source="test",
                   line=t * VARIANTS + v + 1) for t in range(TOPICS) for v in range(VARIANTS)]


def synonym_judgments() -> tuple[list[Query], dict[str, dict[str, int]]]:
    queries = [Query(f"q{t}-{v}", f"askword{t} variant{v}")
               for t in range(TOPICS) for v in range(VARIANTS)]
    return queries, {f"q{t}-{v}": {f"t{t}v{v}": 1} for t in range(TOPICS) for v in range(VARIANTS)}


def synonym_store(path):
    """A store at ``path`` whose collection ``docs`` holds the synonym records."""
    with Store(path) as store:
        ingest_records(store, synonym_records(), IngestOptions(
            collection="docs", encoder="fake:dim=128", language="en"), progress=False)
    return path


@pytest.fixture
def synonyms(tmp_path):
    return synonym_store(tmp_path / "store")


def test_infonce_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(4, 6))
    candidates = rng.normal(size=(7, 6))
    candidates /= np.linalg.norm(candidates, axis=1, keepdims=True)
    targets = rng.random((4, 7)) * (rng.random((4, 7)) < 0.4) + np.eye(4, 7)
    targets /= targets.sum(axis=1, keepdims=True)
    matrix = np.eye(6) + 0.1 * rng.normal(size=(6, 6))
    _, gradient = infonce_loss(queries, matrix, candidates, targets, 5.0)
    numeric = np.zeros_like(matrix)
    for i in range(6):
        for j in range(6):
            step = np.zeros_like(matrix)
            step[i, j] = 1e-6
            numeric[i, j] = (infonce_loss(queries, matrix + step, candidates, targets, 5.0)[0]
                             - infonce_loss(queries, matrix - step, candidates, targets, 5.0)[0]
                             ) / 2e-6
    np.testing.assert_allclose(gradient, numeric, rtol=1e-4, atol=1e-7)


def test_tune_learns_the_queries_words_and_reports_on_held_out_queries(synonyms):
    queries, qrels = synonym_judgments()
    with Store(synonyms) as store:
        report = store.collection("docs").tune(queries, qrels, **FAST)
    assert report.queries == {"train": 68, "validation": 12, "held_out": 20, "skipped": 0}
    held = report.held_out
    assert held["dense"]["queries"] == 20
    assert held["dense"]["ndcg@10"] < 0.5  # a tie among the 20 documents of its variant word
    assert held["dense, tuned"]["ndcg@10"] > held["dense"]["ndcg@10"] + 0.3
    assert held["tuned"]["ndcg@10"] > held["default"]["ndcg@10"] + 0.3
    assert report.adapter and 0 < report.best_epoch <= report.stopped_epoch
    assert report.curve[report.best_epoch].validation_ndcg == max(
        e.validation_ndcg for e in report.curve)

    with Store(synonyms, read_only=True) as store:  # saved with the space
        docs = store.collection("docs")
        hits = [docs.search(f"askword{t} variant{v}", tuned=True, k=1)[0].id
                for t in range(TOPICS) for v in range(VARIANTS)]
        untuned = [docs.search(f"askword{t} variant{v}", k=1)[0].id
                   for t in range(TOPICS) for v in range(VARIANTS)]
        stored = docs.tunings.read("text")
    expected = [f"t{t}v{v}" for t in range(TOPICS) for v in range(VARIANTS)]
    assert np.mean([h == e for h, e in zip(hits, expected, strict=True)]) > 0.8
    assert np.mean([h == e for h, e in zip(untuned, expected, strict=True)]) < 0.3
    assert stored is not None and stored.adapter is not None and stored.adapter.shape == (128, 128)
    assert stored.report["held_out"]["tuned"]["ndcg@10"] == held["tuned"]["ndcg@10"]


def test_the_split_is_seeded_and_the_fusion_only_tune_has_no_adapter(synonyms):
    queries, qrels = synonym_judgments()
    with Store(synonyms) as store:
        docs = store.collection("docs")
        first = docs.tune(queries, qrels, adapter="none", seed=3)
        again = docs.tune(list(reversed(queries)), qrels, adapter="none", seed=3)
        other = docs.tune(queries, qrels, adapter="none", seed=4)
        assert not first.adapter and docs.tunings.read("text").adapter is None
    assert first.held_out == again.held_out  # the same queries, whatever their order
    assert first.fusion == again.fusion
    assert first.held_out != other.held_out
    assert first.held_out["dense, tuned"] == first.held_out["dense"]


def test_tuned_search_of_an_untuned_space_says_how_to_tune(synonyms):
    with Store(synonyms, read_only=True) as store, \
            pytest.raises(NotFoundError, match="has not been tuned; run `kinsight tune"):
        store.collection("docs").search("askword1", tuned=True)


def test_too_few_judged_queries_are_refused_with_the_counts(synonyms):
    queries, qrels = synonym_judgments()
    qrels = {**qrels, "q0-0": {"not-an-item": 1}}
    with Store(synonyms) as store, \
            pytest.raises(InvalidInputError, match=r"9 judged queries .* at least 5 in each"):
        store.collection("docs").tune(queries[:10], qrels)
