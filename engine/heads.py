"""The classifier head that probes and label checks train on frozen vectors, and how it is judged.

A head is scikit-learn's logistic regression on one of two feature sets:

- ``vectors``: the item vectors, standardised (any space: text, images);
- ``vectors+words``: the unit item vectors beside TF-IDF weights (scikit-learn's
  ``TfidfVectorizer``, sublinear tf, terms in at least two items) of the text the vectors were
  encoded from, and the probe's (``ProbeHead(characters=True)``, the default) beside TF-IDF of
  that text's character 3- to 5-grams within words too (``analyzer="char_wb"``). Every block has
  unit rows, so none drowns the others. The words carry what a small frozen encoder blurs
  (package names, jargon): on Debian sections the probe's 5-fold accuracy goes from ~0.70 to
  ~0.76 (benchmarks/probe.py); the character n-grams catch the pieces of names and jargon the
  words split differently (``libfoo-perl``, ``gtk3``): on the development split 0.681 against
  0.667 with words alone (C=30; 0.673 against 0.667 at C=10).

Beside the source text, a probe reads one more TF-IDF word block per free-text field of the items
(``fields``: a field's value per item, e.g. Debian's one-line ``title``; ``lexical.
free_text_fields`` says which), unit rows like the others: a field's words weigh apart from the
long text's, where one joined text would drown them. A head fitted without fields reads none.

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

__all__ = ["INNER_FOLDS", "INNER_SAMPLE", "FieldTexts", "HeadFeatures", "ProbeHead",
           "choose_regularization", "cross_validated_probe", "inner_sample",
           "regularization_grid", "source_texts", "take", "take_fields"]

# The values of free-text fields: field name -> one text per item, in the items' order.
FieldTexts = Mapping[str, Sequence[str]]

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
# The probe's character n-grams: within word boundaries (char_wb pads each word with spaces),
# 3 to 5 long, as in scikit-learn's text classification examples.
_CHARACTERS: dict[str, Any] = {"analyzer": "char_wb", "ngram_range": (3, 5)}


class HeadFeatures:
    """The features every trained head reads: the standardised vectors, or (``texts`` given to
    ``fit``) the vectors beside TF-IDF of those texts (see the module docstring). Beside the
    words, the vectors are unit rows, or with ``standardised`` standardised and divided by the
    square root of their dimension (rows of about unit length, as the words' are): the ridge
    head's choice, on the development split of Debian (R² of log(n_words) 0.873 against 0.787
    with unit rows, benchmarks/heads.py). Kept as arrays (``to_arrays``/``from_arrays``) like the
    heads that use it."""

    def __init__(self, standardised: bool = False, characters: bool = False) -> None:
        self.standardised = standardised
        self.characters = characters

    def fit(self, vectors: np.ndarray, texts: Sequence[str] | None = None,
            fields: FieldTexts | None = None) -> HeadFeatures:
        """Fit on ``vectors`` ``(n, d)``, with ``texts`` (n) their source texts; ``fields``, read
        only beside ``texts``: a word block per field whose values have a word in two items."""
        from sklearn.preprocessing import StandardScaler

        self._scaler: Any = None
        self._words: Any = None
        self._chars: Any = None
        self._fields: dict[str, Any] = {}
        if texts is None or self.standardised:
            self._scaler = StandardScaler().fit(vectors)
        if texts is not None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            # min_df=2 needs a word in two items; a tiny training part may have none such.
            min_df = 2 if len(texts) > 50 else 1
            self._words = TfidfVectorizer(sublinear_tf=True, min_df=min_df).fit(texts)
            if self.characters:
                self._chars = TfidfVectorizer(sublinear_tf=True, min_df=min_df,
                                              **_CHARACTERS).fit(texts)
            for name, values in (fields or {}).items():
                try:
                    self._fields[name] = TfidfVectorizer(sublinear_tf=True,
                                                         min_df=min_df).fit(values)
                except ValueError:  # no word in two items (a field empty here): no block
                    continue
        return self

    @property
    def text_fields(self) -> list[str]:
        """The fields with a word block of their own, in the order of their blocks."""
        return list(self._fields)

    @property
    def lexical(self) -> bool:
        """Whether the features read the texts beside the vectors."""
        return self._words is not None

    def transform(self, vectors: np.ndarray, texts: Sequence[str] | None = None,
                  fields: FieldTexts | None = None) -> Any:
        """``(n, features)``: dense for vectors alone, a sparse CSR matrix with the words; a
        field missing from ``fields`` has an empty block (no words)."""
        if self._words is None:
            return self._scaler.transform(vectors)
        if texts is None:
            raise InvalidInputError("this head was trained on vectors and words; give the texts too")
        from scipy import sparse

        block = (unit_rows(vectors) if self._scaler is None else
                 self._scaler.transform(vectors) / np.sqrt(vectors.shape[1]))
        blocks = [sparse.csr_matrix(block), self._words.transform(texts)]
        if self._chars is not None:
            blocks.append(self._chars.transform(texts))
        for name, words in self._fields.items():
            values = (fields or {}).get(name)
            blocks.append(sparse.csr_matrix((len(vectors), len(words.idf_))) if values is None
                          else words.transform(values))
        return sparse.hstack(blocks).tocsr()

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        if self._scaler is not None:
            arrays.update(mean=self._scaler.mean_, scale=self._scaler.scale_)
        if self._words is not None:
            arrays.update(terms=np.asarray(self._words.get_feature_names_out(), dtype=str),
                          idf=self._words.idf_)
        if self._chars is not None:
            arrays.update(char_terms=np.asarray(self._chars.get_feature_names_out(), dtype=str),
                          char_idf=self._chars.idf_)
        if self._fields:
            arrays["field_names"] = np.asarray(list(self._fields), dtype=str)
        for i, words in enumerate(self._fields.values()):
            arrays[f"field_terms_{i}"] = np.asarray(words.get_feature_names_out(), dtype=str)
            arrays[f"field_idf_{i}"] = words.idf_
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> HeadFeatures:
        # Heads saved before the character block have no char_terms: words alone, as trained.
        features = cls(standardised="mean" in arrays and "terms" in arrays,
                       characters="char_terms" in arrays)
        # Heads saved before the field blocks have no field_names: no fields, as trained.
        features._scaler = features._words = features._chars = None
        features._fields = {}
        if "terms" in arrays:
            features._words = _vectorizer(arrays["terms"], arrays["idf"])
        if "char_terms" in arrays:
            features._chars = _vectorizer(arrays["char_terms"], arrays["char_idf"], **_CHARACTERS)
        for i, name in enumerate(arrays.get("field_names", ())):
            features._fields[str(name)] = _vectorizer(arrays[f"field_terms_{i}"],
                                                      arrays[f"field_idf_{i}"])
        if "mean" in arrays:
            from sklearn.preprocessing import StandardScaler

            features._scaler = StandardScaler()
            features._scaler.mean_, features._scaler.scale_ = arrays["mean"], arrays["scale"]
        return features


def _vectorizer(terms: np.ndarray, idf: np.ndarray, **settings: Any) -> Any:
    """A fitted ``TfidfVectorizer`` of the saved vocabulary ``terms`` and their ``idf``."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, vocabulary={
        str(term): i for i, term in enumerate(terms)}, **settings)
    vectorizer.idf_ = idf
    return vectorizer


class ProbeHead:
    """Logistic regression on ``HeadFeatures``: beside TF-IDF of the texts when ``texts`` are
    given to ``fit`` (then ``predict_proba`` needs them too), their words and, with
    ``characters``, their character n-grams. ``classes_``: the sorted labels seen."""

    kind = "logistic"

    def __init__(self, regularization: float = 1.0, characters: bool = True) -> None:
        self.regularization = regularization
        self.characters = characters

    def fit(self, vectors: np.ndarray, y: np.ndarray, texts: Sequence[str] | None = None,
            fields: FieldTexts | None = None) -> ProbeHead:
        from sklearn.linear_model import LogisticRegression

        self._features = HeadFeatures(characters=self.characters).fit(vectors, texts, fields)
        self._model = LogisticRegression(C=self.regularization, max_iter=MAX_ITER, tol=TOL)
        self._model.fit(self._features.transform(vectors, texts, fields), y)
        self.classes_ = self._model.classes_
        return self

    @property
    def lexical(self) -> bool:
        """Whether the head reads the texts beside the vectors."""
        return self._features.lexical

    @property
    def text_fields(self) -> list[str]:
        """The free-text fields the head reads words of, beside the source text."""
        return self._features.text_fields

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted head as named arrays (numbers and strings, no objects)."""
        return {"coef": self._model.coef_, "intercept": self._model.intercept_,
                "classes": np.asarray(self.classes_, dtype=str),
                "regularization": np.asarray(self.regularization), **self._features.to_arrays()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ProbeHead:
        """The head ``to_arrays`` gave, predicting as it did."""
        from sklearn.linear_model import LogisticRegression

        head = cls(float(arrays["regularization"]), characters="char_terms" in arrays)
        head._model = LogisticRegression(C=head.regularization, max_iter=MAX_ITER, tol=TOL)
        head._model.coef_, head._model.intercept_ = arrays["coef"], arrays["intercept"]
        head._model.classes_ = head.classes_ = np.asarray(arrays["classes"], dtype=object)
        head._features = HeadFeatures.from_arrays(arrays)
        return head

    def predict_proba(self, vectors: np.ndarray, texts: Sequence[str] | None = None,
                      fields: FieldTexts | None = None) -> np.ndarray:
        """``(n, len(classes_))`` probabilities."""
        return np.asarray(self._model.predict_proba(
            self._features.transform(vectors, texts, fields)))


def regularization_grid(lexical: bool) -> tuple[float, ...]:
    """The values of ``C`` the inner cross-validation chooses from."""
    return _GRIDS[lexical]


def cross_validated_probe(vectors: np.ndarray, y: np.ndarray, texts: Sequence[str] | None = None,
                          *, folds: int = 5, seed: int = 0, regularization: float | None = 1.0,
                          groups: np.ndarray | None = None, characters: bool = True,
                          fields: FieldTexts | None = None
                          ) -> tuple[np.ndarray, list[float], list[float]]:
    """Out-of-fold probabilities of a ``ProbeHead`` on ``vectors`` ``(n, d)`` (and ``texts``) with
    labels ``y`` ``(n,)``: ``(probabilities (n, classes) float64, accuracy of each fold, C of each
    fold)``, columns the sorted classes of ``y``. Each row is predicted by the head fitted on the
    other folds of a shuffled stratified ``folds``-fold split (seeded; ``folds.group_folds``: the
    items of one of ``groups`` ``(n,)`` in one fold); a class missing from a fold's training part
    gets 0 there. ``regularization=None``: each fold's ``C`` is chosen by
    ``choose_regularization`` on that fold's training part. ``characters`` and ``fields`` (the
    free-text fields' values, ``(n,)`` each): as ``ProbeHead``'s."""
    classes = np.unique(y)
    out_of_fold = np.zeros((len(y), len(classes)))
    fold_accuracies, chosen = [], []
    for fit_rows, held in group_folds(y, groups, folds, seed):
        fit_texts, fit_fields = take(texts, fit_rows), take_fields(fields, fit_rows)
        c = regularization if regularization is not None else choose_regularization(
            vectors[fit_rows], y[fit_rows], fit_texts, seed=seed,
            groups=None if groups is None else groups[fit_rows], characters=characters,
            fields=fit_fields)
        head = ProbeHead(c, characters).fit(vectors[fit_rows], y[fit_rows], fit_texts, fit_fields)
        proba = head.predict_proba(vectors[held], take(texts, held), take_fields(fields, held))
        # A fold may miss a rare class: place each column by the head's own classes.
        out_of_fold[np.ix_(held, np.searchsorted(classes, head.classes_))] = proba
        fold_accuracies.append(float(np.mean(head.classes_[proba.argmax(axis=1)] == y[held])))
        chosen.append(float(c))
    return out_of_fold, fold_accuracies, chosen


def choose_regularization(vectors: np.ndarray, y: np.ndarray, texts: Sequence[str] | None = None,
                          *, seed: int = 0, groups: np.ndarray | None = None,
                          characters: bool = True, fields: FieldTexts | None = None) -> float:
    """The ``C`` of ``regularization_grid`` with the best ``INNER_FOLDS``-fold log-loss on these
    items (at most ``INNER_SAMPLE`` of them; log-loss, not accuracy: the probabilities are what
    label checks rank by); ``groups`` as in ``cross_validated_probe``."""
    from sklearn.metrics import log_loss

    rows = inner_sample(len(y), seed)
    vectors, y, texts, fields = vectors[rows], y[rows], take(texts, rows), take_fields(fields, rows)
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
                                                regularization=c, groups=groups,
                                                characters=characters, fields=fields)
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


def inner_sample(n: int, seed: int = 0) -> np.ndarray:
    """Sorted rows of the (at most ``INNER_SAMPLE``) items an inner search runs on: all ``n``
    when there are that few, a seeded sample otherwise."""
    if n <= INNER_SAMPLE:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, INNER_SAMPLE, replace=False))


def take(texts: Sequence[str] | None, rows: np.ndarray) -> list[str] | None:
    """The texts of ``rows`` (None stays None: a head on vectors alone)."""
    return None if texts is None else [texts[i] for i in rows]


def take_fields(fields: FieldTexts | None, rows: np.ndarray) -> dict[str, list[str]] | None:
    """The values of ``rows`` of each field (None stays None: no field blocks)."""
    return None if fields is None else {name: [values[i] for i in rows]
                                        for name, values in fields.items()}
