"""Anomaly detectors and the collection-level ``anomalies`` run, on synthetic vectors with known
structure: a tight reference cloud, fresh items drawn like it, and far outliers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kinsight.engine import (
    EncoderInfo,
    EncoderMismatchError,
    InvalidInputError,
    Item,
    read_run_table,
)
from kinsight.engine.anomalies import AnomalyOptions, NewVectors, ReferenceModel, fit_reference
from kinsight.engine.detectors import (
    METHODS,
    TEXT_METHODS,
    KNNDetector,
    load_detector_arrays,
    make_detector,
)

from .conftest import VECTOR_ENCODER, normalized

DIM = 16


def cloud(n: int, seed: int, spread: float = 0.05) -> np.ndarray:
    """Unit vectors scattered around one direction: the 'normal' items."""
    rng = np.random.default_rng(seed)
    centre = np.zeros(DIM, dtype=np.float32)
    centre[0] = 1.0
    return normalized(centre + spread * rng.normal(size=(n, DIM))).astype(np.float32)


def outliers(n: int, seed: int) -> np.ndarray:
    """Unit vectors pointing away from the cloud."""
    rng = np.random.default_rng(seed)
    far = rng.normal(size=(n, DIM))
    far[:, 0] = -np.abs(far[:, 0])
    return normalized(far).astype(np.float32)


@pytest.mark.parametrize("method", METHODS)
def test_outliers_rank_first_and_are_flagged(method):
    detector = make_detector(method).fit(cloud(500, seed=1))
    targets = np.concatenate([cloud(200, seed=2), outliers(10, seed=3)])
    scores = detector.score_samples(targets)
    assert set(np.argsort(scores)[:10]) == set(range(200, 210))
    assert np.all(detector.predict(targets[200:]) == -1)
    assert np.all(detector.decision_function(targets[200:]) < 0)
    assert np.all(detector.percentiles(scores[200:]) == 100.0)


@pytest.mark.parametrize("method", METHODS)
def test_calibrated_threshold_flags_five_percent_of_fresh_normal_items(method):
    rng = np.random.default_rng(7)
    reference = rng.normal(size=(1000, DIM)).astype(np.float32)
    fresh = rng.normal(size=(4000, DIM)).astype(np.float32)
    detector = make_detector(method, metric="l2", threshold_percentile=95).fit(reference)
    flagged = float(np.mean(detector.predict(fresh) == -1))
    assert 0.035 <= flagged <= 0.065, (method, flagged)
    # Flagged exactly when the percentile is past the threshold percentile.
    percentiles = detector.percentiles(detector.score_samples(fresh))
    np.testing.assert_array_equal(percentiles > 95, detector.predict(fresh) == -1)


def test_reference_items_never_score_against_themselves():
    reference = cloud(200, seed=4)
    detector = KNNDetector(n_neighbors=1).fit(reference)
    similarities = reference @ reference.T
    np.fill_diagonal(similarities, -np.inf)
    np.testing.assert_allclose(detector.reference_scores_, similarities.max(axis=1), rtol=1e-5)
    assert detector.reference_scores_.max() < 0.9999  # never the item's own similarity of 1
    # An exact duplicate in the reference is a neighbour like any other.
    doubled = KNNDetector(n_neighbors=1).fit(np.concatenate([reference, reference[:1]]))
    assert doubled.reference_scores_[0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_reference_scores_are_out_of_sample(method):
    """The calibration scores of the reference look like scores of fresh items, not better."""
    detector = make_detector(method).fit(cloud(400, seed=5))
    fresh = detector.score_samples(cloud(400, seed=6))
    assert abs(np.median(detector.reference_scores_) - np.median(fresh)) < 0.1 * np.std(fresh)


@pytest.mark.parametrize("method", METHODS)
def test_saved_detector_scores_identically(method, tmp_path, store):
    docs = _collection(store)
    model = fit_reference(docs, AnomalyOptions(method=method),
                          reference={"field": "kind", "op": "eq", "value": "normal"})
    path = model.save(tmp_path / "detector.npz")
    loaded = ReferenceModel.load(path, docs.space("text"))
    batch = np.concatenate([cloud(20, seed=8), outliers(3, seed=9)])
    np.testing.assert_array_equal(loaded.detector.score_samples(batch),
                                  model.detector.score_samples(batch))
    assert loaded.detector.threshold_ == model.detector.threshold_
    assert loaded.reference_ids == model.reference_ids


def test_loading_into_another_space_is_refused(tmp_path, store):
    model = fit_reference(_collection(store))
    path = model.save(tmp_path / "detector.npz")
    other = store.create_collection("other")
    other.ensure_space("text", EncoderInfo(spec="vectors:other", modality="text", dim=DIM,
                                           fingerprint="other-16"))
    with pytest.raises(EncoderMismatchError, match="other-16"):
        ReferenceModel.load(path, other.space("text"))


def test_not_a_detector_file_is_refused(tmp_path, store):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not numpy")
    with pytest.raises(InvalidInputError, match="not a saved kinsight detector"):
        ReferenceModel.load(path, _collection(store).space("text"))


# -- the collection-level run --------------------------------------------------------------------
def _collection(store, normal: int = 120, odd: int = 6):
    docs = store.create_collection("docs")
    docs.ensure_space("text", VECTOR_ENCODER, source_fields=["text"])
    vectors = np.concatenate([cloud(normal, seed=10), outliers(odd, seed=11)])
    docs.upsert(Item(id=f"{'n' if i < normal else 'odd'}{i}",
                     fields={"text": f"item {i}", "kind": "normal" if i < normal else "odd",
                             "split": "reference" if i < normal * 2 // 3 else "new"},
                     vectors={"text": v}) for i, v in enumerate(vectors))
    return docs


def test_anomalies_run_flags_outliers_and_explains_them(store):
    docs = _collection(store)
    result = docs.anomalies(reference={"field": "split", "op": "eq", "value": "reference"},
                            targets={"field": "split", "op": "eq", "value": "new"}, neighbours=3)
    assert {s.id for s in result.scores[:6]} == {f"odd{i}" for i in range(120, 126)}
    assert all(s.is_anomaly and s.percentile == 100.0 for s in result.scores[:6])
    assert [s.score for s in result.scores] == sorted(s.score for s in result.scores)
    assert result.n_reference == 80 and len(result.scores) == 46
    assert all(len(s.neighbours) == 3 and s.neighbours[0].id.startswith("n")
               for s in result.scores)
    table = read_run_table(docs, result.run_id, "scores")
    assert table.column("id").to_pylist() == [s.id for s in result.scores]
    assert table.column("neighbour_ids").to_pylist()[0] == [n.id for n in result.scores[0].neighbours]
    assert read_run_table(docs, result.run_id, "reference").num_rows == 80


def test_reference_targets_get_their_out_of_sample_score(store):
    docs = _collection(store)
    normal = {"field": "kind", "op": "eq", "value": "normal"}
    result = docs.anomalies(reference=normal, targets=normal, neighbours=2)
    model = fit_reference(docs, reference=normal)
    by_id = {s.id: s for s in result.scores}
    for row, item_id in enumerate(model.reference_ids):
        assert by_id[item_id].in_reference
        assert by_id[item_id].score == pytest.approx(model.detector.reference_scores_[row])
        assert item_id not in {n.id for n in by_id[item_id].neighbours}
    flagged = len(result.anomalies) / len(result.scores)
    assert flagged <= 0.1  # about 5%: reference items are exchangeable with fresh ones


def test_new_vectors_and_a_reference_collection(store):
    docs = _collection(store)
    reference = store.create_collection("reference")
    reference.ensure_space("text", VECTOR_ENCODER)
    reference.upsert(Item(id=f"r{i}", vectors={"text": v}) for i, v in enumerate(cloud(60, 12)))
    new = NewVectors(np.concatenate([cloud(5, seed=13), outliers(2, seed=14)]),
                     ids=[f"batch-{i}" for i in range(7)])
    result = docs.anomalies(reference=reference, targets=new, method="lof", n_neighbors=10)
    assert {s.id for s in result.scores[:2]} == {"batch-5", "batch-6"}
    assert all(n.id.startswith("r") for s in result.scores for n in s.neighbours)
    assert not any(s.in_reference for s in result.scores)


def test_errors_name_the_problem(store):
    docs = _collection(store)
    with pytest.raises(InvalidInputError, match="matches no item"):
        docs.anomalies(reference={"field": "kind", "op": "eq", "value": "missing"})
    with pytest.raises(InvalidInputError, match="at least 20"):
        docs.anomalies(reference={"field": "kind", "op": "eq", "value": "odd"})
    with pytest.raises(InvalidInputError, match="unknown anomaly method"):
        docs.anomalies(method="svm")
    with pytest.raises(InvalidInputError, match="does not take"):
        docs.anomalies(n_components=3)
    with pytest.raises(InvalidInputError, match="dimensions"):
        docs.anomalies(targets=NewVectors(np.ones((2, 3))))
    other = store.create_collection("other")
    other.ensure_space("text", EncoderInfo(spec="vectors:other", modality="text", dim=DIM,
                                           fingerprint="other-16"))
    with pytest.raises(EncoderMismatchError):
        docs.anomalies(reference=other)


# -- detectors that read the texts ---------------------------------------------------------------
COMMON = [f"common{chr(97 + i)}{chr(97 + j)}" for i in range(12) for j in range(12)]


def texts(n: int, seed: int, vocabulary: list[str] = COMMON) -> list[str]:
    """Sentences of eight words drawn from ``vocabulary``: the reference's way of writing."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(vocabulary, 8)) for _ in range(n)]


def odd_texts(n: int, seed: int) -> list[str]:
    """Sentences mostly in words the reference never uses, each with its own rare word."""
    return [f"{t} zebra{chr(97 + i)} xylophone" for i, t in enumerate(texts(n, seed)[:n])]


@pytest.mark.parametrize("method", TEXT_METHODS)
def test_text_detectors_flag_unseen_words_and_calibrate(method):
    detector = make_detector(method, language="en").fit(cloud(600, seed=1), texts=texts(600, 1))
    fresh, odd = texts(2000, seed=2), odd_texts(10, seed=3)
    vectors = cloud(2010, seed=4)  # the same cloud: only the words tell the odd ones apart
    scores = detector.score_samples(vectors, texts=fresh + odd)
    if method == "lexical":
        assert set(np.argsort(scores)[:10]) == set(range(2000, 2010))
    else:  # two thirds of its evidence (the vectors) say nothing here; the words still count
        assert np.mean(scores[2000:]) < np.quantile(scores[:2000], 0.4)
    flagged = float(np.mean(detector.predict(vectors[:2000], texts=fresh) == -1))
    assert 0.02 <= flagged <= 0.08, flagged
    words = detector.reference_terms().unusual_words(odd[0], 2)
    assert set(words) == {"zebraa", "xylophon"} or set(words) == {"zebraa", "xylophone"}


def test_combined_detector_sees_vectors_too():
    """Outlying vectors with the reference's words are still found: the k-NN part sees them."""
    detector = make_detector("combined", language="en").fit(cloud(600, 1), texts=texts(600, 1))
    vectors = np.concatenate([cloud(300, seed=2), outliers(5, seed=3)])
    scores = detector.score_samples(vectors, texts=texts(305, seed=4))
    assert np.mean(scores[300:]) < np.quantile(scores[:300], 0.3)


def test_combined_detector_weighs_the_vectors_against_the_words(tmp_path):
    """``vector_weight`` sets how much each view counts: an item odd only in its words, or only
    in its vector, moves with it; the weights are saved and read back with the detector."""
    reference, reference_texts = cloud(600, 1), texts(600, 1)
    vectors = np.concatenate([cloud(300, seed=2), outliers(5, seed=3), cloud(5, seed=5)])
    batch = texts(305, seed=4) + odd_texts(5, seed=6)  # 5 odd vectors, then 5 odd texts
    percentile = {}
    for weight in (0.5, 2.0, 8.0):
        detector = make_detector("combined", language="en", vector_weight=weight)
        detector.fit(reference, texts=reference_texts)
        anomaly = detector.percentiles(detector.score_samples(vectors, texts=batch))
        percentile[weight] = (anomaly[300:305].mean(), anomaly[305:].mean())
    odd_vectors, odd_words = zip(*(percentile[w] for w in (0.5, 2.0, 8.0)), strict=True)
    assert odd_vectors[0] < odd_vectors[1] < odd_vectors[2]
    assert odd_words[0] > odd_words[1] > odd_words[2]
    loaded, _ = load_detector_arrays(detector.save(tmp_path / "combined.npz"))
    assert loaded.get_params()["vector_weight"] == 8.0
    np.testing.assert_array_equal(loaded.score_samples(vectors, texts=batch),
                                  detector.score_samples(vectors, texts=batch))
    for weight in (0.0, -1.0, float("nan")):
        with pytest.raises(InvalidInputError, match="vector_weight must be a positive number"):
            make_detector("combined", vector_weight=weight).fit(reference, texts=reference_texts)
    with pytest.raises(InvalidInputError, match="vector_weight"):
        AnomalyOptions(method="knn", vector_weight=2.0)


def test_combined_detector_reads_other_fields_as_views_of_their_own(tmp_path):
    """Items odd only in another free-text field (a title) move up by that field's view; fresh
    normal items are still flagged ~5% of the time; a field the scored items lack is left out of
    their mean; the fields are saved and read back with the detector."""
    detector = make_detector("combined", language="en").fit(
        cloud(600, 1), texts=texts(600, 1), fields={"title": texts(600, 11)})
    assert detector.text_fields() == ("title",)
    vectors, batch = cloud(310, seed=2), texts(310, seed=4)
    titles = {"title": texts(300, seed=12) + odd_texts(10, seed=13)}  # 10 odd titles last
    with_titles = detector.percentiles(detector.score_samples(vectors, texts=batch, fields=titles))
    without = detector.percentiles(detector.score_samples(vectors, texts=batch))
    assert with_titles[300:].mean() > without[300:].mean() + 10  # the title view saw them
    assert abs(with_titles[:300].mean() - without[:300].mean()) < 5  # the others: no change
    fresh = {"texts": texts(2000, seed=6), "fields": {"title": texts(2000, seed=7)}}
    flagged = float(np.mean(detector.predict(cloud(2000, seed=5), **fresh) == -1))
    assert 0.02 <= flagged <= 0.08, flagged
    loaded, _ = load_detector_arrays(detector.save(tmp_path / "fields.npz"))
    assert loaded.text_fields() == ("title",)
    np.testing.assert_array_equal(loaded.score_samples(vectors, texts=batch, fields=titles),
                                  detector.score_samples(vectors, texts=batch, fields=titles))
    with pytest.raises(InvalidInputError, match="'summary' was not among the fields"):
        detector.score_samples(vectors, texts=batch, fields={"summary": batch})
    with pytest.raises(InvalidInputError, match="field 'title' has 2 values for 310 vectors"):
        detector.score_samples(vectors, texts=batch, fields={"title": ["a", "b"]})
    with pytest.raises(InvalidInputError, match=r"pass texts=\.\.\. too"):
        detector.score_samples(vectors, fields=titles)


def test_a_detector_saved_before_fields_still_loads(tmp_path):
    """A format-2 file (a combined detector without other fields) loads and scores as saved."""
    detector = make_detector("combined", language="en").fit(cloud(100, 1), texts=texts(100, 1))
    path = detector.save(tmp_path / "new.npz")
    with np.load(path) as saved:
        arrays = {k: saved[k] for k in saved.files if k != "field_names"}
    header = json.loads(str(arrays["header"]))
    arrays["header"] = np.array(json.dumps({**header, "format": 2}))
    with open(tmp_path / "old.npz", "wb") as handle:
        np.savez_compressed(handle, **arrays)
    loaded, meta = load_detector_arrays(tmp_path / "old.npz")
    assert meta["format"] == 2 and loaded.text_fields() == ()
    batch = texts(20, seed=5)
    np.testing.assert_array_equal(loaded.score_samples(cloud(20, 7), texts=batch),
                                  detector.score_samples(cloud(20, 7), texts=batch))


def test_text_detectors_need_one_text_per_vector(tmp_path):
    detector = make_detector("lexical").fit(cloud(50, 1), texts=texts(50, 1))
    with pytest.raises(InvalidInputError, match="reads the items' texts"):
        detector.score_samples(cloud(3, 2))
    with pytest.raises(InvalidInputError, match="2 texts for 3 vectors"):
        detector.score_samples(cloud(3, 2), texts=["a", "b"])
    path = detector.save(tmp_path / "lexical.npz")
    loaded, _ = load_detector_arrays(path)
    batch = texts(20, seed=5) + odd_texts(2, seed=6)
    np.testing.assert_array_equal(loaded.score_samples(cloud(22, 7), texts=batch),
                                  detector.score_samples(cloud(22, 7), texts=batch))


def _text_collection(store):
    docs = store.create_collection("docs")
    docs.ensure_space("text", VECTOR_ENCODER, source_fields=["title", "text"])
    words = texts(120, seed=20) + odd_texts(4, seed=21)
    docs.upsert(Item(id=f"{'n' if i < 120 else 'odd'}{i}",
                     fields={"title": "", "text": t, "kind": "normal" if i < 120 else "odd"},
                     vectors={"text": v})
                for i, (t, v) in enumerate(zip(words, np.concatenate(
                    [cloud(120, seed=22), outliers(4, seed=23)]), strict=True)))
    return docs


def test_default_run_on_a_text_space_reads_the_words(store):
    docs = _text_collection(store)
    result = docs.anomalies(reference={"field": "kind", "op": "eq", "value": "normal"})
    assert result.method == "combined"
    assert {s.id for s in result.scores[:4]} == {f"odd{i}" for i in range(120, 124)}
    assert all(s.is_anomaly and "xylophone" in s.unusual_words for s in result.scores[:4])
    assert all(not s.unusual_words for s in result.scores if not s.is_anomaly)
    assert read_run_table(docs, result.run_id, "scores").column("unusual_words").to_pylist()[0]
    # The batch holds 4 odd items of 124 (3%, 5% expected): no evidence of drift either way.
    assert result.drift.flagged == len(result.anomalies) and result.drift.p_value > 0.01
    # New items sent as vectors alone are scored on the vectors.
    new = docs.anomalies(targets=NewVectors(cloud(3, seed=23)))
    assert new.method == "knn"
    with pytest.raises(InvalidInputError, match="send their texts"):
        docs.anomalies(method="lexical", targets=NewVectors(cloud(3, seed=23)))
    lexical = docs.anomalies(method="lexical", targets=NewVectors(
        cloud(2, seed=24), texts=["zebra xylophone", texts(1, 25)[0]]))
    assert lexical.scores[0].id == "new-0" and lexical.scores[0].is_anomaly


def test_default_run_reads_the_other_free_text_fields(store):
    """A field of free text besides the space's source (here ``summary``) is a view of the
    default detector: items odd only there rank above the normal ones; ``kind`` (one word) is
    not free text and is not read."""
    docs = store.create_collection("summaries")
    docs.ensure_space("text", VECTOR_ENCODER, source_fields=["text"])
    summaries = texts(120, seed=30) + odd_texts(6, seed=31)
    docs.upsert(Item(id=f"item{i}", fields={"text": t, "summary": summary,
                                            "kind": "normal" if i < 120 else "odd"},
                     vectors={"text": v})
                for i, (t, summary, v) in enumerate(zip(texts(126, seed=32), summaries,
                                                       cloud(126, seed=33), strict=True)))
    normal = {"field": "kind", "op": "eq", "value": "normal"}
    assert fit_reference(docs, reference=normal).detector.text_fields() == ("summary",)
    result = docs.anomalies(reference=normal, targets={"field": "kind", "op": "eq", "value": "odd"})
    reference = read_run_table(docs, result.run_id, "reference").column("score").to_numpy()
    assert np.mean([s.score for s in result.scores]) < np.quantile(reference, 0.3)


def test_drift_tests_the_share_flagged():
    from kinsight.engine import drift, drift_by

    assert drift("b", 1000, 50, 0.05).p_value > 0.5
    assert drift("b", 1000, 120, 0.05).p_value < 1e-6
    assert drift("b", 1000, 5, 0.05).p_value < 1e-6  # too few flagged is news too
    rows = drift_by(["a"] * 100 + ["b"] * 100, [True] * 40 + [False] * 60 + [False] * 100, 0.05)
    assert [(r.group, r.items, r.flagged) for r in rows] == [("a", 100, 40), ("b", 100, 0)]
    assert rows[0].p_value < 1e-6 and rows[0].share == 0.4
