"""Anomaly detectors that read the items' source texts too: ``lexical`` and ``combined``.

A vector says what an item is about; the words it came from say how it is written, and words
the reference never uses are evidence of their own (a Rust crate among Perl modules says
"crate" and "cargo"). Two detectors use them, with the contract of ``detectors`` (scikit-learn's,
out-of-sample calibration), taking the texts beside the vectors: ``fit(X, texts=...)``,
``score_samples(X, texts=...)``.

- ``lexical``: the mean surprise of a text's distinct terms under the reference's document
  frequencies, ``-log((df + 0.5) / (n + 0.5))`` (a smoothed unigram model of "which words occur
  in a reference text"): high when many of its words are rare or absent in the reference. A
  reference item is scored with its own words taken out of the counts (leave-one-out), so its
  calibration is as honest as the neighbour methods'. Terms are the space's keyword analyser's
  (the BM25 index's: stemmed, stop words removed, CJK bigrams).
- ``combined`` (the default of text spaces): the k-NN detector on centred vectors (the
  reference mean subtracted, then unit length again: sentence embeddings share one dominant
  direction, which hides the differences between topics), the lexical detector on the source
  texts, and one lexical detector more for each other free-text field it is given
  (``fields=``: a title beside the description the vectors came from), each turned into its
  anomaly percentile against its own out-of-sample reference scores, then averaged with the
  vectors' percentile counted ``vector_weight`` (2) times and each text's once. The
  percentiles put a cosine and a surprise on one scale; the average is then calibrated like any
  score, so the 95th percentile still flags ~5% of fresh normal items. A field the scored items
  do not have (new items sent with their source text alone) is left out of their mean.

  Chosen on the development split of the Debian data (``benchmarks/anomalies.py``; 10 seeded
  draws, references of 6 and of 3 sections). The words add the average precision k-NN lacks
  (items whose topic is near the reference's but whose words are not), but they rank the bulk
  of items worse than the vectors do (AUROC 0.70 alone vs 0.81), so an equal average paid for
  that AP in AUROC (0.801 / 0.367); counting the vectors twice keeps the AP and most of the
  AUROC (0.819 / 0.368; three times: 0.824 / 0.372, within the noise, and a weight further from
  equal would trust the words less on data where they matter more). The one-line ``title`` as
  a view of its own lifts both (0.839 / 0.424; 3 sections 0.837 / 0.406 -> 0.872 / 0.476): a
  short summary uses few words, each telling (AUROC 0.74 alone, above the description's 0.70),
  and merged into the description its words drown (0.822 / 0.363). Counted once like the
  description's words: 0.5 times 0.833 / 0.414, 1.5 0.839 / 0.425, 2 0.836 / 0.424. 20
  neighbours, not the 10 of ``knn``: with centred vectors 20-50 beat 10 (0.814-0.819 vs 0.798
  alone), 30 and 50 by less than the noise, and 20 keeps references of 21 items usable.

  Tried there and not kept: a third view of k-NN over TF-IDF vectors (-0.02 AUROC), PCA
  whitening (-0.08), the k-th similarity instead of the mean, the largest percentile instead of
  the mean, z-scores or tail shares (Fisher's ``-log(1 - p)``: 0.815 / 0.358) instead of
  percentiles; ranks within the scored batch instead of percentiles against the reference
  (0.819 / 0.369, the same, and a batch of one could not be ranked); k-NN on the vectors
  concatenated with 100 LSA (TruncatedSVD) dimensions of TF-IDF, in place of the vectors
  (0.842 / 0.427 with the title, +0.003, within the noise, for a second model to fit and save);
  char 3-5-gram surprise (0.594 alone; with the vectors 0.795 / 0.311, below the words');
  per-cluster normalisation over a k-means of the reference (distance to the nearest centroid
  over that cluster's spread, or the k-NN distance over the cluster's median; k 6, 12, 24:
  0.65-0.72 alone, 0.79-0.80 beside the vectors and words).

Written here, not taken from a library: PyOD and scikit-learn detect on one feature matrix; none
combines a vector space with term statistics, or calibrates leave-one-out on sparse counts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from .analysers import analyser_for
from .detectors import Detector, ItemTexts, KNNDetector
from .errors import InvalidInputError
from .kernels import unit_rows

__all__ = ["CombinedDetector", "LexicalDetector", "ReferenceTerms"]

# The combined detector's views besides the fields', by names no field is given.
_VECTORS, _SOURCE = "(vectors)", "(source texts)"
SMOOTHING = 0.5  # added to every document frequency: an unseen term is rare, not impossible
_WORD = re.compile(r"\w+")


class ReferenceTerms:
    """Document frequencies of the reference texts' terms, and how surprising a text is
    against them (see the module docstring)."""

    def __init__(self, language: str | None, df: dict[str, int], n: int) -> None:
        self.analyser = analyser_for(language)
        self.df = df
        self.n = n

    @classmethod
    def fit(cls, texts: Sequence[str], language: str | None) -> ReferenceTerms:
        terms = analyser_for(language).tokens(list(texts))
        return cls(language, dict(Counter(t for doc in terms for t in set(doc))), len(texts))

    def surprise(self, texts: Sequence[str], *, own: bool = False) -> np.ndarray:
        """Mean surprise ``(n,)`` of each text's distinct terms; ``own``: the texts are the
        reference's, each scored without itself. A text without terms scores 0."""
        drop = 1 if own else 0
        out = np.zeros(len(texts), dtype=np.float64)
        for row, terms in enumerate(self.analyser.tokens(list(texts))):
            distinct = set(terms)
            if distinct:
                counts = np.fromiter((self.df.get(t, 0) for t in distinct), np.float64,
                                     len(distinct)) - drop
                out[row] = float(np.mean(-np.log((counts + SMOOTHING)
                                                 / (self.n - drop + SMOOTHING))))
        return out

    def unusual_words(self, text: str, n: int) -> tuple[str, ...]:
        """The ``n`` words of ``text`` whose terms are rarest in the reference (fewest reference
        texts hold them), lower-cased as written in the text."""
        words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
        seen: dict[str, str] = {}
        for word, terms in zip(words, self.analyser.tokens(words), strict=True):
            for term in terms:
                seen.setdefault(term, word)
        rarest = sorted(seen, key=lambda t: self.df.get(t, 0))  # stable: ties in text order
        return tuple(dict.fromkeys(seen[t] for t in rarest))[:n]

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        terms = sorted(self.df)
        return {f"{prefix}terms": np.array(terms, dtype=str),
                f"{prefix}term_df": np.array([self.df[t] for t in terms], dtype=np.int64),
                f"{prefix}term_n": np.array(self.n, dtype=np.int64)}

    @classmethod
    def from_arrays(cls, saved: Any, language: str | None, prefix: str = "") -> ReferenceTerms:
        return cls(language, dict(zip(saved[f"{prefix}terms"].tolist(),
                                      saved[f"{prefix}term_df"].tolist(), strict=True)),
                   int(saved[f"{prefix}term_n"]))


class _TextDetector(Detector):
    needs_texts: ClassVar[bool] = True
    language: str | None
    terms_: ReferenceTerms

    def reference_terms(self) -> ReferenceTerms | None:
        return self.terms_

    def _fit_model(self, X: np.ndarray) -> None:
        """Nothing: the parts are fitted with the texts (``_held_out_scores``) or loaded."""


class LexicalDetector(_TextDetector):
    """Minus the mean surprise of a text's terms under the reference (see the module
    docstring); the vectors serve only to list the nearest reference items."""

    method = "lexical"

    def __init__(self, *, threshold_percentile: float = 95.0, metric: str = "ip",
                 language: str | None = None) -> None:
        self.threshold_percentile = threshold_percentile
        self.metric = metric
        self.language = language

    def _held_out_scores(self, X: np.ndarray, texts: ItemTexts | None) -> np.ndarray:
        source = _required(texts).source
        self.terms_ = ReferenceTerms.fit(source, self.language)
        return -self.terms_.surprise(source, own=True)

    def _score(self, X: np.ndarray, texts: ItemTexts | None = None) -> np.ndarray:
        return -self.terms_.surprise(_required(texts).source)

    def _arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return self.terms_.arrays(prefix)

    def _load_arrays(self, saved: Any, reference: np.ndarray, prefix: str = "") -> None:
        self.terms_ = ReferenceTerms.from_arrays(saved, self.language, prefix)


class CombinedDetector(_TextDetector):
    """The weighted mean of anomaly percentiles: k-NN (``n_neighbors``, mean similarity) on
    centred vectors, counted ``vector_weight`` times, and the lexical surprise of the source
    texts and of each other field given at fit (``fields=``), counted once each, every one
    against its own out-of-sample reference scores; the score is minus that mean (higher: more
    normal); ``text_fields()`` names the other fields it was fitted with."""

    method = "combined"
    reads_fields = True

    def __init__(self, n_neighbors: int = 20, vector_weight: float = 2.0, *,
                 threshold_percentile: float = 95.0, metric: str = "ip",
                 language: str | None = None) -> None:
        self.n_neighbors = n_neighbors
        self.vector_weight = vector_weight
        self.threshold_percentile = threshold_percentile
        self.metric = metric
        self.language = language

    def text_fields(self) -> tuple[str, ...]:
        return tuple(self._fields)

    def _held_out_scores(self, X: np.ndarray, texts: ItemTexts | None) -> np.ndarray:
        if not 0 < self.vector_weight < np.inf:
            raise InvalidInputError(f"vector_weight must be a positive number (the words count "
                                    f"once), got {self.vector_weight}")
        given = _required(texts)
        self._centre = X.mean(axis=0)
        self._dense = KNNDetector(self.n_neighbors, metric=self.metric).fit(self._centred(X))
        self._lexical = self._fitted_lexical(X, given.source)
        self._fields = {name: self._fitted_lexical(X, values)
                        for name, values in given.fields.items()}
        self.terms_ = self._lexical.terms_
        return self._mean_percentile({name: part.reference_scores_
                                      for name, part in self._parts().items()})

    def _score(self, X: np.ndarray, texts: ItemTexts | None = None) -> np.ndarray:
        given = _required(texts)
        unknown = sorted(set(given.fields) - set(self._fields))
        if unknown:
            raise InvalidInputError(f"field {unknown[0]!r} was not among the fields this detector "
                                    f"was fitted with ({', '.join(self._fields) or 'none'}); "
                                    "leave it out or fit with it")
        return self._mean_percentile({
            _VECTORS: self._dense.score_samples(self._centred(X)),
            _SOURCE: self._lexical.score_samples(X, texts=given.source),
            **{name: self._fields[name].score_samples(X, texts=values)
               for name, values in given.fields.items()}})

    def _parts(self) -> dict[str, Detector]:
        """The views by name: the vectors, the source texts, then the other fields."""
        return {_VECTORS: self._dense, _SOURCE: self._lexical, **self._fields}

    def _mean_percentile(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """Minus the weighted mean of the views' anomaly percentiles, over the views scored."""
        parts = self._parts()
        weights = {name: self.vector_weight if name == _VECTORS else 1.0 for name in scores}
        total = sum(weights[name] * parts[name].percentiles(s) for name, s in scores.items())
        return -np.asarray(total, dtype=np.float64) / sum(weights.values())

    def _centred(self, X: np.ndarray) -> np.ndarray:
        return unit_rows(X - self._centre) if self.metric == "ip" else X - self._centre

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {**self.terms_.arrays(), "dense_scores": self._dense.reference_scores_,
                  "lexical_scores": self._lexical.reference_scores_,
                  "field_names": np.array(self.text_fields(), dtype=str)}
        for i, part in enumerate(self._fields.values()):
            arrays |= {**part._arrays(f"field{i}_"), f"field{i}_scores": part.reference_scores_}
        return arrays

    def _load_arrays(self, saved: Any, reference: np.ndarray) -> None:
        self._centre = reference.mean(axis=0)
        self._dense = KNNDetector(self.n_neighbors, metric=self.metric)
        self._dense._restore(self._centred(reference), saved["dense_scores"])
        self._lexical = self._loaded_lexical(saved, reference, "", "lexical_scores")
        names = saved["field_names"].tolist() if "field_names" in saved.files else []  # format 2
        self._fields = {name: self._loaded_lexical(saved, reference, f"field{i}_",
                                                   f"field{i}_scores")
                        for i, name in enumerate(names)}
        self.terms_ = self._lexical.terms_

    def _fitted_lexical(self, X: np.ndarray, texts: Sequence[str]) -> LexicalDetector:
        part = LexicalDetector(language=self.language)
        part.fit(X, texts=texts)
        return part

    def _loaded_lexical(self, saved: Any, reference: np.ndarray, prefix: str, scores: str
                        ) -> LexicalDetector:
        part = LexicalDetector(language=self.language)
        part._load_arrays(saved, reference, prefix)
        part._restore(reference, saved[scores])
        return part


def _required(texts: ItemTexts | None) -> ItemTexts:
    if texts is None:
        raise InvalidInputError("this detector reads the items' texts as well as their vectors; "
                                "pass texts=..., or use a vector method such as knn")
    return texts
