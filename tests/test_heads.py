"""The classifier head of probes and label checks: out of fold, vectors beside words, C chosen by
inner cross-validation on the training part only."""

from __future__ import annotations

import numpy as np
import pytest

from kinsight.engine import InvalidInputError
from kinsight.engine.heads import (
    ProbeHead,
    choose_regularization,
    cross_validated_probe,
    regularization_grid,
)


@pytest.mark.filterwarnings("ignore:Number of classes in training fold")
def test_cross_validated_probe_is_out_of_fold_and_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from kinsight.engine.heads import MAX_ITER, TOL

    rng = np.random.default_rng(2)
    y = np.array(["a"] * 30 + ["b"] * 25 + ["c"] * 20 + ["rare"])
    centres = {c: rng.normal(size=10) for c in np.unique(y)}
    X = np.stack([centres[c] + rng.normal(size=10) for c in y]).astype(np.float32)
    with pytest.warns(UserWarning):  # "rare" has fewer items than folds
        proba, accuracies, chosen = cross_validated_probe(X, y, folds=5, seed=4,
                                                          regularization=0.5)
        reference = make_pipeline(StandardScaler(),
                                  LogisticRegression(C=0.5, max_iter=MAX_ITER, tol=TOL))
        expected = cross_val_predict(reference, X, y, method="predict_proba",
                                     cv=StratifiedKFold(5, shuffle=True, random_state=4))
    assert proba.shape == (len(y), 4) and proba.dtype == np.float64
    np.testing.assert_allclose(proba, expected, rtol=1e-10, atol=1e-12)
    assert len(accuracies) == 5 and all(0 <= a <= 1 for a in accuracies) and chosen == [0.5] * 5
    assert proba[y == "rare", 3] == 0  # its one item's fold trained without "rare"
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def _words_only_task(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Two classes whose vectors are noise but whose texts name them: only words can tell."""
    rng = np.random.default_rng(seed)
    y = np.array(["net", "sound"] * 40)
    filler = ["tool", "library", "program", "package", "utility", "helper"]
    texts = [f"{'socket tcp' if label == 'net' else 'audio mixer'} {filler[i % 6]} "
             f"{filler[(i * 5) % 6]}" for i, label in enumerate(y)]
    return rng.normal(size=(len(y), 16)).astype(np.float32), y, texts


def test_words_beside_the_vectors_carry_what_the_vectors_miss():
    X, y, texts = _words_only_task()
    with_words, _, _ = cross_validated_probe(X, y, texts, regularization=10.0)
    vectors_only, _, _ = cross_validated_probe(X, y, regularization=1.0)
    classes = np.unique(y)
    assert np.mean(classes[with_words.argmax(axis=1)] == y) == 1.0
    assert np.mean(classes[vectors_only.argmax(axis=1)] == y) < 0.75
    head = ProbeHead(10.0).fit(X, y, texts)
    assert list(head.predict_proba(X[:2], ["tcp socket", "mixer audio"]).argmax(axis=1)) == [0, 1]
    with pytest.raises(InvalidInputError, match="give the texts too"):
        head.predict_proba(X[:2])


def test_character_ngrams_read_the_pieces_of_words_seen_once():
    """Each package name is a word of its own (no word is in two items: min_df drops them all),
    but its ending tells the class: the character n-grams read it, the words cannot."""
    rng = np.random.default_rng(5)
    y = np.array(["perl", "python"] * 40)
    texts = [f"lib{rng.integers(10**6):06d}{'perl' if label == 'perl' else 'pyth'} module"
             for label in y]
    X = rng.normal(size=(len(y), 16)).astype(np.float32)
    classes = np.unique(y)
    chars, _, _ = cross_validated_probe(X, y, texts, regularization=10.0)
    words, _, _ = cross_validated_probe(X, y, texts, regularization=10.0, characters=False)
    assert np.mean(classes[chars.argmax(axis=1)] == y) > 0.95
    assert np.mean(classes[words.argmax(axis=1)] == y) < 0.75
    # Saved as arrays and loaded back, the head predicts as it did; arrays saved before the
    # character block (no char_terms) load as a head of words alone.
    head = ProbeHead(10.0).fit(X, y, texts)
    arrays = head.to_arrays()
    assert {"char_terms", "char_idf"} <= set(arrays)
    np.testing.assert_allclose(ProbeHead.from_arrays(arrays).predict_proba(X, texts),
                               head.predict_proba(X, texts))
    words_head = ProbeHead(10.0, characters=False).fit(X, y, texts)
    legacy = words_head.to_arrays()
    assert "char_terms" not in legacy
    np.testing.assert_allclose(ProbeHead.from_arrays(legacy).predict_proba(X, texts),
                               words_head.predict_proba(X, texts))


def test_regularization_is_chosen_on_the_training_part_from_the_grid(monkeypatch):
    X, y, texts = _words_only_task(1)
    assert choose_regularization(X, y, texts) in regularization_grid(lexical=True)
    assert choose_regularization(X, y) in regularization_grid(lexical=False)
    seen: list[int] = []
    import kinsight.engine.heads as heads

    real = heads.choose_regularization

    def spy(vectors, labels, words=None, *, seed=0, groups=None, characters=True, fields=None):
        seen.append(len(labels))
        return real(vectors, labels, words, seed=seed, groups=groups, characters=characters,
                    fields=fields)

    monkeypatch.setattr(heads, "choose_regularization", spy)
    _, _, chosen = cross_validated_probe(X, y, texts, folds=4, regularization=None)
    assert seen == [60] * 4  # each fold chose on its own 3/4 of the items, never the held-out part
    assert all(c in regularization_grid(lexical=True) for c in chosen)
