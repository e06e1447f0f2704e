"""Anomaly detectors on vectors, with scikit-learn's contract and calibrated thresholds.

Every detector is fitted on reference vectors (what "normal" looks like) and follows the outlier
detectors of scikit-learn: ``fit(X)`` returns self, ``score_samples(X)`` is higher for more normal
items, ``decision_function(X)`` is the score minus the threshold (negative: anomaly) and
``predict(X)`` is ``+1`` (normal) or ``-1`` (anomaly). Four methods:

- ``knn`` (default): mean (or k-th) similarity to the k nearest reference vectors, by FAISS exact
  search. Simple, and in published comparisons on embeddings as good as anything fancier.
- ``lof``: scikit-learn's local outlier factor (``novelty=True``): density relative to neighbours.
- ``iforest``: scikit-learn's isolation forest.
- ``mahalanobis``: distance to the reference mean under a shrunk (Ledoit-Wolf) covariance, in a
  PCA projection (embedding dimensions outnumber what a covariance can be estimated from).

Calibration. Raw scores mean nothing across methods or runs (a cosine, a tree depth, a squared
distance), so each detector also scores every reference item *out of sample* (leave-one-out for the
neighbour methods, k-fold cross-fitting for the others: a reference item never scores against
itself) and keeps those scores. A target's ``percentile`` is the share of reference items that
look more normal than it, and the threshold is the ``threshold_percentile``-th percentile: at 95, a
fresh item drawn like the reference is flagged 5% of the time, whatever the method.

Saving. ``save`` writes the reference vectors, their out-of-sample scores and the parameters to one
``.npz`` (arrays) with a JSON header; ``load`` refits the final model from them. Refitting is cheap
and deterministic (seeded), gives identical scores, and avoids pickle/joblib files, which execute
code when loaded and break across scikit-learn versions.

Two more read the items' texts beside their vectors (``text_detectors``): ``lexical`` (how rare
a text's words are in the reference) and ``combined`` (k-NN and lexical, calibrated together,
with one lexical view more for each other free-text field it is given: ``fields=``), the
default of text spaces; ``auto`` picks it there and ``knn`` elsewhere (``resolve_method``).
"""

from __future__ import annotations

import inspect
import json
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import numpy as np

from .errors import InvalidInputError
from .kernels import knn, leave_one_out

__all__ = [
    "METHODS",
    "MIN_REFERENCE",
    "TEXT_METHODS",
    "AnomalyMethod",
    "Detector",
    "IsolationForestDetector",
    "ItemTexts",
    "KNNDetector",
    "LOFDetector",
    "MahalanobisDetector",
    "detector_parameters",
    "load_detector_arrays",
    "make_detector",
    "resolve_method",
]

AnomalyMethod = Literal["auto", "knn", "lof", "iforest", "mahalanobis", "lexical", "combined"]
TEXT_METHODS: tuple[str, ...] = ("lexical", "combined")  # they read the items' texts too
METHODS: tuple[str, ...] = tuple(m for m in get_args(AnomalyMethod)  # on vectors alone
                                 if m not in ("auto", *TEXT_METHODS))

MIN_REFERENCE = 20  # below this, a 95th percentile of the reference is not a number to trust
FORMAT_VERSION = 3  # 2: text detectors' term counts beside the arrays; 3: those of other fields
READABLE_FORMATS = (2, 3)  # a format-2 file is a detector fitted without other fields
CROSS_FIT_FOLDS = 5  # folds of the out-of-sample reference scores of iforest and mahalanobis


@dataclass(frozen=True)
class ItemTexts:
    """What the text detectors read beside the vectors, one value per vector in each: the
    ``source`` texts (what the vectors were encoded from) and other free-text ``fields`` by
    name (a title beside a description), which ``combined`` weighs as views of their own."""

    source: Sequence[str]
    fields: Mapping[str, Sequence[str]]


class Detector:
    """Shared by every method: reference index, out-of-sample calibration, thresholds, saving.

    ``metric`` is how vectors compare for neighbours: ``ip`` (inner product: cosine on unit
    vectors) or ``l2`` (similarity is minus the squared distance). Fitted attributes:
    ``reference_`` (n, d) float32, ``reference_scores_`` (n,) out-of-sample scores,
    ``threshold_`` (raw score at the threshold percentile).
    """

    method: ClassVar[str]
    needs_texts: ClassVar[bool] = False  # the text detectors' fit and score take texts=
    reads_fields: ClassVar[bool] = False  # ... and fields= (other free-text fields) too
    threshold_percentile: float
    metric: str

    def fit(self, X: np.ndarray, y: Any = None, *, texts: Sequence[str] | None = None,
            fields: Mapping[str, Sequence[str]] | None = None) -> Detector:
        X = _as_matrix(X)
        if len(X) < MIN_REFERENCE:
            raise InvalidInputError(
                f"the reference has {len(X)} items; at least {MIN_REFERENCE} are needed to "
                "calibrate percentiles; widen the reference filter")
        if not 0 < self.threshold_percentile < 100:
            raise InvalidInputError(
                f"threshold_percentile must be between 0 and 100, got {self.threshold_percentile}")
        if self.metric not in ("ip", "l2"):
            raise InvalidInputError(f"metric must be 'ip' or 'l2', got {self.metric!r}")
        self._restore(X, self._held_out_scores(X, _checked_texts(texts, fields, len(X))))
        return self

    def __init__(self, *, threshold_percentile: float = 95.0, metric: str = "ip") -> None:
        self.threshold_percentile = threshold_percentile
        self.metric = metric

    @classmethod
    def parameter_names(cls) -> list[str]:
        """The constructor's arguments, sorted (scikit-learn's ``_get_param_names``)."""
        return sorted(n for n in inspect.signature(cls.__init__).parameters if n != "self")

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments by name, as scikit-learn's ``get_params`` gives them.
        Written here rather than inherited from ``sklearn.base.BaseEstimator``: importing
        scikit-learn costs ~3 s, and every command that imports the engine would pay it."""
        return {name: getattr(self, name) for name in self.parameter_names()}

    def score_samples(self, X: np.ndarray, *, texts: Sequence[str] | None = None,
                      fields: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
        """Raw normality ``(n,)`` float64: higher is more normal; the scale depends on the method.
        ``texts``: the items' source texts, one per row (read by the text detectors only);
        ``fields``: other free-text fields by name, one value per row each (``combined``)."""
        X = self._check_fitted(X)
        return self._score(X, _checked_texts(texts, fields, len(X)))

    def decision_function(self, X: np.ndarray, *, texts: Sequence[str] | None = None,
                          fields: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
        """``score_samples(X) - threshold_``: negative for anomalies."""
        return self.score_samples(X, texts=texts, fields=fields) - self.threshold_

    def predict(self, X: np.ndarray, *, texts: Sequence[str] | None = None,
                fields: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
        """``+1`` for normal items, ``-1`` for anomalies (as scikit-learn's detectors)."""
        return np.where(self.decision_function(X, texts=texts, fields=fields) < 0, -1, 1)

    def text_fields(self) -> tuple[str, ...]:
        """The other free-text fields the detector was fitted with (``fields=``), by name."""
        return ()

    def reference_terms(self) -> Any:
        """The reference's term counts (``text_detectors.ReferenceTerms``) of a text detector,
        which name the words that make an item odd; None for the vector methods."""
        return None

    def percentiles(self, scores: np.ndarray) -> np.ndarray:
        """Anomaly percentile of raw scores: the share (0-100) of reference items, scored out of
        sample, that are more normal. Comparable across methods and runs."""
        more_normal = len(self._sorted_reference) - np.searchsorted(
            self._sorted_reference, np.asarray(scores, dtype=np.float64), side="right")
        return 100.0 * more_normal / len(self._sorted_reference)

    def nearest_reference(self, X: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(similarities, rows)`` of shape ``(len(X), n)``: the nearest reference vectors, best
        first; rows index ``reference_``, ``-1`` where the reference has fewer than ``n``."""
        X = self._check_fitted(X)
        return knn(X, self.reference_, min(n, len(self.reference_)), self.metric)

    # -- saving ------------------------------------------------------------------------------
    def save(self, path: str | Path, header: dict[str, Any] | None = None) -> Path:
        """Write the fitted detector (and a JSON-ready ``header`` the caller adds) to ``path``."""
        self._check_fitted(None)
        meta = {"format": FORMAT_VERSION, "method": self.method, "params": self.get_params(),
                **(header or {})}
        target = Path(path)
        with open(target, "wb") as handle:  # np.savez would append .npz to a name without it
            arrays: dict[str, Any] = {"reference": self.reference_,
                                      "reference_scores": self.reference_scores_,
                                      "header": np.array(json.dumps(meta)), **self._arrays()}
            np.savez_compressed(handle, **arrays)
        return target

    # -- what each method provides -----------------------------------------------------------
    @abstractmethod
    def _fit_model(self, X: np.ndarray) -> None:
        """Fit the method's model on reference vectors."""

    @abstractmethod
    def _score(self, X: np.ndarray, texts: ItemTexts | None = None) -> np.ndarray:
        """Raw normality of already checked vectors (and their texts, for text detectors)."""

    def _arrays(self) -> dict[str, np.ndarray]:
        """What a saved detector needs besides its reference vectors and scores."""
        return {}

    def _load_arrays(self, saved: Any, reference: np.ndarray) -> None:
        """Read back what ``_arrays`` saved (before ``_restore``)."""

    def _held_out_scores(self, X: np.ndarray, texts: ItemTexts | None) -> np.ndarray:
        """Out-of-sample score of each reference vector: k-fold cross-fitting (a model that never
        saw an item scores it). Neighbour methods override this with leave-one-out."""
        from sklearn.model_selection import KFold

        scores = np.empty(len(X), dtype=np.float64)
        for train, held in KFold(CROSS_FIT_FOLDS, shuffle=True, random_state=0).split(X):
            part = type(self)(**self.get_params())  # unfitted, same parameters
            part._fit_model(X[train])
            scores[held] = part._score(X[held])
        return scores

    # -- internals ---------------------------------------------------------------------------
    def _restore(self, reference: np.ndarray, reference_scores: np.ndarray) -> None:
        self.reference_ = reference
        self.reference_scores_ = np.asarray(reference_scores, dtype=np.float64)
        self._sorted_reference = np.sort(self.reference_scores_)
        # The lowest reference score that more than threshold_percentile% of the reference
        # exceeds: then ``score < threshold_`` exactly when ``percentile > threshold_percentile``.
        n = len(self._sorted_reference)
        self.threshold_ = float(self._sorted_reference[
            n - int(np.floor(self.threshold_percentile * n / 100)) - 1])
        self._fit_model(reference)

    def _check_fitted(self, X: np.ndarray | None) -> np.ndarray:
        if not hasattr(self, "reference_"):
            raise InvalidInputError(f"this {type(self).__name__} is not fitted; call fit(X) first")
        if X is None:
            return self.reference_
        X = _as_matrix(X)
        if X.shape[1] != self.reference_.shape[1]:
            raise InvalidInputError(f"vectors have {X.shape[1]} dimensions; the detector was "
                                    f"fitted on {self.reference_.shape[1]}")
        return X


class KNNDetector(Detector):
    """Similarity to the ``n_neighbors`` nearest reference vectors: their ``mean`` (steadier) or
    the ``kth`` alone (the classic k-NN distance score)."""

    method = "knn"

    def __init__(self, n_neighbors: int = 10, aggregate: Literal["mean", "kth"] = "mean", *,
                 threshold_percentile: float = 95.0, metric: str = "ip") -> None:
        self.n_neighbors = n_neighbors
        self.aggregate = aggregate
        self.threshold_percentile = threshold_percentile
        self.metric = metric

    def _fit_model(self, X: np.ndarray) -> None:
        if self.aggregate not in ("mean", "kth"):
            raise InvalidInputError(f"aggregate must be 'mean' or 'kth', got {self.aggregate!r}")
        _check_neighbours(self.n_neighbors, len(X))

    def _score(self, X: np.ndarray, texts: ItemTexts | None = None) -> np.ndarray:
        similarities, _ = knn(X, self.reference_, self.n_neighbors, self.metric)
        return self._aggregate(similarities)

    def _held_out_scores(self, X: np.ndarray, texts: ItemTexts | None) -> np.ndarray:
        _check_neighbours(self.n_neighbors, len(X) - 1)
        similarities, _ = leave_one_out(X, self.n_neighbors, self.metric)
        return self._aggregate(similarities)

    def _aggregate(self, similarities: np.ndarray) -> np.ndarray:
        if self.aggregate == "kth":
            return similarities[:, -1].astype(np.float64)
        return similarities.mean(axis=1, dtype=np.float64)


class LOFDetector(Detector):
    """Local outlier factor (scikit-learn, ``novelty=True``); the score is minus the LOF."""

    method = "lof"

    def __init__(self, n_neighbors: int = 20, *, threshold_percentile: float = 95.0,
                 metric: str = "ip") -> None:
        self.n_neighbors = n_neighbors
        self.threshold_percentile = threshold_percentile
        self.metric = metric

    def _fit_model(self, X: np.ndarray) -> None:
        from sklearn.neighbors import LocalOutlierFactor

        _check_neighbours(self.n_neighbors, len(X) - 1)
        # On unit vectors Euclidean order is cosine order, so one metric serves both.
        self._model = LocalOutlierFactor(n_neighbors=self.n_neighbors, novelty=True,
                                         algorithm="brute").fit(X)

    def _score(self, X: np.ndarray, texts: ItemTexts | None = None) -> np.ndarray:
        return np.asarray(self._model.score_samples(X), dtype=np.float64)

    def _held_out_scores(self, X: np.ndarray, texts: ItemTexts | None) -> np.ndarray:
        # LOF of the training items is computed from their neighbours without themselves.
        self._fit_model(X)
        return np.asarray(self._model.negative_outlier_factor_, dtype=np.float64)


class IsolationForestDetector(Detector):
    """scikit-learn's isolation forest, seeded so that a saved detector refits identically."""

    method = "iforest"

    def __init__(self, n_estimators: int = 200, seed: int = 0, *,
                 threshold_percentile: float = 95.0, metric: str = "ip") -> None:
        self.n_estimators = n_estimators
        self.seed = seed
        self.threshold_percentile = threshold_percentile
        self.metric = metric

    def _fit_model(self, X: np.ndarray) -> None:
        from sklearn.ensemble import IsolationForest

        self._model = IsolationForest(n_estimators=self.n_estimators,
                                      random_state=self.seed).fit(X)

    def _score(self, X: np.ndarray, texts: ItemTexts | None = None) -> np.ndarray:
        return np.asarray(self._model.score_samples(X), dtype=np.float64)


class MahalanobisDetector(Detector):
    """Minus the squared Mahalanobis distance to the reference mean, in the reference's first
    ``n_components`` principal components, under a Ledoit-Wolf shrunk covariance."""

    method = "mahalanobis"

    def __init__(self, n_components: int = 50, *, threshold_percentile: float = 95.0,
                 metric: str = "ip") -> None:
        self.n_components = n_components
        self.threshold_percentile = threshold_percentile
        self.metric = metric

    def _fit_model(self, X: np.ndarray) -> None:
        from sklearn.covariance import LedoitWolf
        from sklearn.decomposition import PCA

        components = min(self.n_components, X.shape[1], len(X) - 1)
        # Eigen-decomposition of the d x d covariance: exact, deterministic, and much faster
        # than an SVD of the n x d data when n >> d, as for embeddings.
        self._pca = PCA(n_components=components, svd_solver="covariance_eigh").fit(X)
        self._covariance = LedoitWolf().fit(self._pca.transform(X))

    def _score(self, X: np.ndarray, texts: ItemTexts | None = None) -> np.ndarray:
        return -np.asarray(self._covariance.mahalanobis(self._pca.transform(X)), dtype=np.float64)


# Every method's, set by the caller rather than the user; the rest are the method's own.
_SHARED = ("threshold_percentile", "metric", "language")


def _detectors() -> dict[str, type[Detector]]:
    from .text_detectors import CombinedDetector, LexicalDetector  # they build on this module

    return {cls.method: cls for cls in (KNNDetector, LOFDetector, IsolationForestDetector,
                                        MahalanobisDetector, LexicalDetector, CombinedDetector)}


def resolve_method(method: str, has_texts: bool) -> str:
    """The method ``auto`` stands for: ``combined`` where the items have source texts (a text
    space), ``knn`` elsewhere; any other method as given."""
    if method == "auto":
        return "combined" if has_texts else "knn"
    return method


def detector_parameters(method: str) -> tuple[str, ...]:
    """The parameters of a method's own (``n_neighbors`` for knn and lof...), by name; ``auto``
    takes those its two choices share."""
    if method == "auto":
        return tuple(sorted(set(detector_parameters("knn"))
                            & set(detector_parameters("combined"))))
    return tuple(p for p in _detectors()[method].parameter_names() if p not in _SHARED)


def make_detector(method: str, *, threshold_percentile: float = 95.0, metric: str = "ip",
                  language: str | None = None, **params: Any) -> Detector:
    """A detector by method name, with its own parameters (``n_neighbors``, ``n_components``...);
    ``language`` is the texts' (text detectors only)."""
    detectors = _detectors()
    if method not in detectors:
        raise InvalidInputError(f"unknown anomaly method {method!r}; use one of "
                                f"{', '.join(detectors)}")
    if detectors[method].needs_texts:
        params["language"] = language
    try:
        return detectors[method](threshold_percentile=threshold_percentile, metric=metric,
                                 **params)
    except TypeError as e:
        raise InvalidInputError(f"method {method!r} does not take these parameters: {e}") from e


def load_detector_arrays(path: str | Path) -> tuple[Detector, dict[str, Any]]:
    """A detector saved with ``Detector.save``, refitted from its arrays, and the file's header."""
    try:
        with np.load(Path(path), allow_pickle=False) as saved:
            meta = json.loads(str(saved["header"]))
            reference = saved["reference"].astype(np.float32)
            reference_scores = saved["reference_scores"]
            detector = make_detector(meta["method"], **meta["params"])
            detector._load_arrays(saved, reference)
    except (OSError, ValueError, KeyError) as e:
        raise InvalidInputError(f"{path} is not a saved kinsight detector ({e}); save one with "
                                "--save-detector or ReferenceModel.save") from e
    if meta.get("format") not in READABLE_FORMATS:
        raise InvalidInputError(f"{path} was saved in detector format {meta.get('format')}; "
                                f"this version reads formats {READABLE_FORMATS}: fit it again")
    detector._restore(reference, reference_scores)
    return detector, meta


def _checked_texts(texts: Sequence[str] | None, fields: Mapping[str, Sequence[str]] | None,
                   n: int) -> ItemTexts | None:
    if texts is None:
        if fields:
            raise InvalidInputError("fields= come beside the source texts: pass texts=... too")
        return None
    if len(texts) != n:
        raise InvalidInputError(f"{len(texts)} texts for {n} vectors; give one text per vector")
    for name, values in (fields or {}).items():
        if len(values) != n:
            raise InvalidInputError(f"field {name!r} has {len(values)} values for {n} vectors; "
                                    "give one value per vector (an empty string where none)")
    return ItemTexts(texts, dict(fields or {}))


def _as_matrix(X: Any) -> np.ndarray:
    matrix = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise InvalidInputError(f"expected a 2-D array of vectors (n, dim), got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise InvalidInputError("vectors contain NaN or infinite values")
    return matrix


def _check_neighbours(n_neighbors: int, available: int) -> None:
    if not 1 <= n_neighbors <= available:
        raise InvalidInputError(f"n_neighbors={n_neighbors} needs at least that many reference "
                                f"items besides each one; there are {available}: lower it")
