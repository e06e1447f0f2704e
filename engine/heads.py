"""The classifier head that probes and label checks train on frozen vectors, and how it is judged.

A head is scikit-learn's logistic regression on one of two feature sets:

- ``vectors``: the item vectors, standardised (any space: text, images);
- ``vectors+words``: the unit item vectors beside TF-IDF weights (scikit-learn's
  ``TfidfVectorizer``, sublinear tf, terms in at least two items) of the text the vectors were
  encoded from. Both blocks have unit rows, so neither drowns the other. The words carry what a
  small frozen encoder blurs (package names, jargon): on Debian sections the probe's 5-fold
  accuracy goes from ~0.70 to ~0.76 (benchmarks/probe.py).

``cross_validated_probe`` gives out-of-fold probabilities (each item predicted by the head of the
fold that did not see it). ``regularization=None`` chooses scikit-learn's ``C`` from a small grid by
an inner cross-validation on each training part only, so the outer estimate stays honest.

A fitted head is kept as plain arrays (``to_arrays``/``from_arrays``: the coefficients, the
scaler's statistics or the TF-IDF vocabulary and idf), never a pickle, so a saved head loads
without running code from the store and across scikit-learn versions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InvalidInputError
from .folds import group_folds
from .indexed_collection import IndexedCollection
from .kernels import unit_rows
from .spaces import VectorSpace

__all__ = ["INNER_FOLDS", "INNER_SAMPLE", "ProbeHead", "choose_regularization", "cross_validated_probe",
           "regularization_grid", "source_texts"]

INNER_FOLDS = 3
# The inner search runs on at most this many items of a training part (a seeded sample), so
# choosing C costs the same on any data set: 9 fits of ~1,300 items per outer fold.
INNER_SAMPLE = 2000
MAX_ITER = 1000
# scikit-learn's default tol (1e-4) takes ~1.5x the iterations for no accuracy on these features.
TOL = 1e-3
# Grids of C around the best values on the development split of Debian sections (the features
# of the two kinds scale differently: standardised vectors want a stronger penalty).
_GRIDS = {False: (0.1, 0.3, 1.0), True: (3.0, 10.0, 30.0)}


class ProbeHead:
    """Logistic regression on vectors, beside TF-IDF of their texts when ``texts`` are given to
    ``fit`` (then ``predict_proba`` needs them too). ``classes_``: the sorted labels seen."""

    def __init__(self, regularization: float = 1.0) -> None:
        self.regularization = regularization

    def fit(self, vectors: np.ndarray, y: np.ndarray, texts: Sequence[str] | None = None
            ) -> ProbeHead:
        from sklearn.linear_model import LogisticRegression

        if texts is None:
            from sklearn.preprocessing import StandardScaler

            self._scaler: Any = StandardScaler().fit(vectors)
            self._words: Any = None
        else:
            from sklearn.feature_extraction.text import TfidfVectorizer

            self._scaler = None
            # min_df=2 needs a word in two items; a tiny training part may have none such.
            self._words = TfidfVectorizer(sublinear_tf=True, min_df=2 if len(texts) > 50 else 1)
            self._words.fit(texts)
        self._model = LogisticRegression(C=self.regularization, max_iter=MAX_ITER, tol=TOL)
        self._model.fit(self._features(vectors, texts), y)
        self.classes_ = self._model.classes_
        return self

    @property
    def lexical(self) -> bool:
        """Whether the head reads the texts beside the vectors."""
        return self._words is not None

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted head as named arrays (numbers and strings, no objects)."""
        arrays = {"coef": self._model.coef_, "intercept": self._model.intercept_,
                  "classes": np.asarray(self.classes_, dtype=str),
                  "regularization": np.asarray(self.regularization)}
        if self._words is None:
            return {**arrays, "mean": self._scaler.mean_, "scale": self._scaler.scale_}
        return {**arrays, "terms": np.asarray(self._words.get_feature_names_out(), dtype=str),
                "idf": self._words.idf_}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ProbeHead:
        """The head ``to_arrays`` gave, predicting as it did."""
        from sklearn.linear_model import LogisticRegression

        head = cls(float(arrays["regularization"]))
        head._model = LogisticRegression(C=head.regularization, max_iter=MAX_ITER, tol=TOL)
        head._model.coef_, head._model.intercept_ = arrays["coef"], arrays["intercept"]
        head._model.classes_ = head.classes_ = np.asarray(arrays["classes"], dtype=object)
        head._scaler = head._words = None
        if "terms" in arrays:
            from sklearn.feature_extraction.text import TfidfVectorizer

            head._words = TfidfVectorizer(sublinear_tf=True, vocabulary={
                str(term): i for i, term in enumerate(arrays["terms"])})
            head._words.idf_ = arrays["idf"]
        else:
            from sklearn.preprocessing import StandardScaler

            head._scaler = StandardScaler()
            head._scaler.mean_, head._scaler.scale_ = arrays["mean"], arrays["scale"]
        return head

    def predict_proba(self, vectors: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """``(n, len(classes_))`` probabilities."""
        return np.asarray(self._model.predict_proba(self._features(vectors, texts)))

    def _features(self, vectors: np.ndarray, texts: Sequence[str] | None) -> Any:
        if self._words is None:
            return self._scaler.transform(vectors)
        if texts is None:
            raise InvalidInputError("this head was trained on vectors and words; give the texts too")
        from scipy import sparse

        return sparse.hstack([sparse.csr_matrix(unit_rows(vectors)),
                              self._words.transform(texts)]).tocsr()


def regularization_grid(lexical: bool) -> tuple[float, ...]:
    """The values of ``C`` the inner cross-validation chooses from."""
    return _GRIDS[lexical]


def cross_validated_probe(vectors: np.ndarray, y: np.ndarray, texts: Sequence[str] | None = None,
                          *, folds: int = 5, seed: int = 0, regularization: float | None = 1.0,
                          groups: np.ndarray | None = None
                          ) -> tuple[np.ndarray, list[float], list[float]]:
    """Out-of-fold probabilities of a ``ProbeHead`` on ``vectors`` ``(n, d)`` (and ``texts``) with
    labels ``y`` ``(n,)``: ``(probabilities (n, classes) float64, accuracy of each fold, C of each
    fold)``, columns the sorted classes of ``y``. Each row is predicted by the head fitted on the
    other folds of a shuffled stratified ``folds``-fold split (seeded; ``folds.group_folds``: the
    items of one of ``groups`` ``(n,)`` in one fold); a class missing from a fold's training part
    gets 0 there. ``regularization=None``: each fold's ``C`` is chosen by
    ``choose_regularization`` on that fold's training part."""
    classes = np.unique(y)
    out_of_fold = np.zeros((len(y), len(classes)))
    fold_accuracies, chosen = [], []
    for fit_rows, held in group_folds(y, groups, folds, seed):
        fit_texts = _take(texts, fit_rows)
        c = regularization if regularization is not None else choose_regularization(
            vectors[fit_rows], y[fit_rows], fit_texts, seed=seed,
            groups=None if groups is None else groups[fit_rows])
        head = ProbeHead(c).fit(vectors[fit_rows], y[fit_rows], fit_texts)
        proba = head.predict_proba(vectors[held], _take(texts, held))
        # A fold may miss a rare class: place each column by the head's own classes.
        out_of_fold[np.ix_(held, np.searchsorted(classes, head.classes_))] = proba
        fold_accuracies.append(float(np.mean(head.classes_[proba.argmax(axis=1)] == y[held])))
        chosen.append(float(c))
    return out_of_fold, fold_accuracies, chosen


def choose_regularization(vectors: np.ndarray, y: np.ndarray, texts: Sequence[str] | None = None,
                          *, seed: int = 0, groups: np.ndarray | None = None) -> float:
    """The ``C`` of ``regularization_grid`` with the best ``INNER_FOLDS``-fold log-loss on these
    items (at most ``INNER_SAMPLE`` of them; log-loss, not accuracy: the probabilities are what
    label checks rank by); ``groups`` as in ``cross_validated_probe``."""
    from sklearn.metrics import log_loss

    if len(y) > INNER_SAMPLE:
        rows = np.sort(np.random.default_rng(seed).choice(len(y), INNER_SAMPLE, replace=False))
        vectors, y, texts = vectors[rows], y[rows], _take(texts, rows)
        groups = None if groups is None else groups[rows]
    classes = np.unique(y)
    folds = min(INNER_FOLDS, int(np.bincount(np.searchsorted(classes, y)).min()))
    grid = regularization_grid(texts is not None)
    if folds < 2:
        return grid[len(grid) // 2]
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a class with fewer items than folds
        for c in grid:
            proba, _, _ = cross_validated_probe(vectors, y, texts, folds=folds, seed=seed,
                                                regularization=c, groups=groups)
            losses.append(log_loss(y, np.clip(proba, 1e-12, 1), labels=classes))
    return grid[int(np.argmin(losses))]


def source_texts(collection: IndexedCollection, space: VectorSpace, ids: Sequence[str]
                 ) -> list[str] | None:
    """The text each item's vectors in ``space`` were encoded from (its source fields joined by
    spaces, in the order of ``ids``), or None when the space holds no text (pictures) or its
    source fields are gone, or no item has any text."""
    fields = [f for f in space.source_fields if f in collection.fields()]
    if space.encoder.modality != "text" or not fields:
        return None
    columns = [collection.field_values(f, ids) for f in fields]
    texts = [" ".join(str(v) for v in values if v is not None) for values in zip(*columns, strict=True)]
    return texts if any(t.strip() for t in texts) else None


def _take(texts: Sequence[str] | None, rows: np.ndarray) -> list[str] | None:
    return None if texts is None else [texts[i] for i in rows]
