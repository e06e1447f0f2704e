"""Linear heads beside the probe's logistic regression, on the same ``HeadFeatures`` (the
standardised vectors, or unit vectors beside TF-IDF of their texts):

- ``RidgeHead``: ridge regression of a number (a rating, a risk score), beside the words on
  standardised vectors (``HeadFeatures(standardised=True)``); its ``alpha`` chosen
  from ``ALPHA_GRID`` by scikit-learn's ``RidgeCV`` (R², ``INNER_FOLDS`` folds) on at most
  ``INNER_SAMPLE`` items of the training part.
- ``MultiLabelHead``: one logistic regression per label (one-vs-rest), each item holding any
  number of labels; it predicts the labels whose probability reaches ``threshold_``, chosen from
  ``THRESHOLD_GRID`` for the best micro-F1 of out-of-fold probabilities (``INNER_FOLDS`` folds on
  at most ``INNER_SAMPLE`` items of the training part). ``C`` is the probe's middle value for
  the features (``regularization_grid``) unless given.

Both are kept as arrays (``to_arrays``/``from_arrays``), as ``ProbeHead`` is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .heads import INNER_FOLDS, MAX_ITER, TOL, HeadFeatures, inner_sample, regularization_grid, take

__all__ = ["ALPHA_GRID", "THRESHOLD_GRID", "MultiLabelHead", "RidgeHead"]

ALPHA_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))


class RidgeHead:
    """Ridge regression on ``HeadFeatures``; ``alpha_``: the penalty used (``alpha``, or chosen
    by inner cross-validation when None)."""

    kind = "regression"
    classes_: tuple[str, ...] = ()  # a number, no classes

    def __init__(self, alpha: float | None = None, *, seed: int = 0) -> None:
        self.alpha, self.seed = alpha, seed

    def fit(self, vectors: np.ndarray, y: np.ndarray, texts: Sequence[str] | None = None
            ) -> RidgeHead:
        from sklearn.linear_model import Ridge, RidgeCV
        from sklearn.model_selection import KFold

        y = np.asarray(y, dtype=np.float64)
        self._features = HeadFeatures(standardised=True).fit(vectors, texts)
        X = self._features.transform(vectors, texts)
        if self.alpha is None:
            rows = inner_sample(len(y), self.seed)
            folds = KFold(min(INNER_FOLDS, len(rows)), shuffle=True, random_state=self.seed)
            self.alpha_ = float(RidgeCV(alphas=ALPHA_GRID, cv=folds).fit(X[rows], y[rows]).alpha_)
        else:
            self.alpha_ = self.alpha
        self._model = Ridge(alpha=self.alpha_).fit(X, y)
        return self

    @property
    def lexical(self) -> bool:
        return self._features.lexical

    def predict(self, vectors: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """``(n,)`` float64 predicted values."""
        return np.asarray(self._model.predict(self._features.transform(vectors, texts)),
                          dtype=np.float64)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self._model.coef_, "intercept": np.asarray(self._model.intercept_),
                "alpha": np.asarray(self.alpha_), **self._features.to_arrays()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> RidgeHead:
        from sklearn.linear_model import Ridge

        head = cls(float(arrays["alpha"]))
        head.alpha_ = float(arrays["alpha"])
        head._model = Ridge(alpha=head.alpha_)
        head._model.coef_, head._model.intercept_ = arrays["coef"], float(arrays["intercept"])
        head._features = HeadFeatures.from_arrays(arrays)
        return head


class MultiLabelHead:
    """One-vs-rest logistic regression on ``HeadFeatures``; ``y`` of ``fit`` is an ``(n,
    labels)`` 0/1 matrix whose columns are ``classes``. ``threshold_``: the probability from
    which a label is predicted."""

    kind = "multilabel"

    def __init__(self, classes: Sequence[str], regularization: float | None = None,
                 threshold: float | None = None, *, seed: int = 0) -> None:
        self.classes_ = np.asarray(classes, dtype=object)
        self.regularization, self.threshold, self.seed = regularization, threshold, seed

    def fit(self, vectors: np.ndarray, y: np.ndarray, texts: Sequence[str] | None = None
            ) -> MultiLabelHead:
        self._features = HeadFeatures().fit(vectors, texts)
        c = self.regularization or regularization_grid(texts is not None)[1]
        self.regularization_ = c
        self.threshold_ = self.threshold if self.threshold is not None else _best_threshold(
            vectors, y, texts, c, self.seed)
        self._coef, self._intercept = _one_vs_rest(self._features.transform(vectors, texts), y, c)
        return self

    @property
    def lexical(self) -> bool:
        return self._features.lexical

    def predict_proba(self, vectors: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """``(n, len(classes_))`` independent probabilities of each label."""
        return _probabilities(self._features.transform(vectors, texts), self._coef, self._intercept)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self._coef, "intercept": self._intercept,
                "classes": np.asarray(self.classes_, dtype=str),
                "regularization": np.asarray(self.regularization_),
                "threshold": np.asarray(self.threshold_), **self._features.to_arrays()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> MultiLabelHead:
        c, threshold = float(arrays["regularization"]), float(arrays["threshold"])
        head = cls([str(label) for label in arrays["classes"]], c, threshold)
        head.regularization_, head.threshold_ = c, threshold
        head._coef, head._intercept = arrays["coef"], arrays["intercept"]
        head._features = HeadFeatures.from_arrays(arrays)
        return head


# A label every training item has (or none has) is not a logistic regression: its probability
# is that constant, as scikit-learn's OneVsRestClassifier does, written here as an intercept so
# the head stays two arrays. ±30 is 1 - 1e-13 after the sigmoid.
_CERTAIN = 30.0


def _one_vs_rest(X: object, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """``(coef (labels, features), intercept (labels,))`` of one logistic regression per column
    of ``y``. Hand-written rather than OneVsRestClassifier: its constant estimators keep no
    coefficients to save as arrays."""
    from sklearn.linear_model import LogisticRegression

    features = X.shape[1]  # type: ignore[attr-defined]
    coef = np.zeros((y.shape[1], features))
    intercept = np.zeros(y.shape[1])
    for j in range(y.shape[1]):
        column = y[:, j]
        if column.min() == column.max():
            intercept[j] = _CERTAIN if column[0] else -_CERTAIN
            continue
        model = LogisticRegression(C=c, max_iter=MAX_ITER, tol=TOL).fit(X, column)
        coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
    return coef, intercept


def _probabilities(X: object, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return np.asarray(expit(X @ coef.T + intercept))  # type: ignore[operator]


def _best_threshold(vectors: np.ndarray, y: np.ndarray, texts: Sequence[str] | None, c: float,
                    seed: int) -> float:
    """The threshold of ``THRESHOLD_GRID`` with the best micro-F1 of out-of-fold probabilities
    (``INNER_FOLDS`` folds over at most ``INNER_SAMPLE`` of these items); 0.5 with too few."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import KFold

    rows = inner_sample(len(y), seed)
    if len(rows) < 2 * INNER_FOLDS:
        return 0.5
    vectors, y, texts = vectors[rows], y[rows], take(texts, rows)
    proba = np.zeros(y.shape)
    for fit, held in KFold(INNER_FOLDS, shuffle=True, random_state=seed).split(vectors):
        features = HeadFeatures().fit(vectors[fit], take(texts, fit))
        coef, intercept = _one_vs_rest(features.transform(vectors[fit], take(texts, fit)), y[fit], c)
        proba[held] = _probabilities(features.transform(vectors[held], take(texts, held)), coef,
                                     intercept)
    scores = [f1_score(y, proba >= t, average="micro", zero_division=0) for t in THRESHOLD_GRID]
    return float(THRESHOLD_GRID[int(np.argmax(scores))])
