"""The k-NN head: a label by a similarity-weighted vote of the nearest labelled items.

``KnnHead.fit`` keeps the labelled vectors (unit rows, float32) and their labels; an input's
probability of a class is its share of the vote of its ``k`` nearest labelled vectors (exact
FAISS inner-product search, ``kernels.knn``), each neighbour weighing ``exp(cosine / 0.07)``:
the weighted k-NN classifier of Wu et al. (2018, "Unsupervised feature learning via
non-parametric instance discrimination"), also DINO's, where the nearest count most.

``k=None`` chooses ``k`` from ``K_GRID`` by leave-one-out accuracy on the training items (at most
``INNER_SAMPLE`` of them vote, against all the others): an inner cross-validation that costs
one search, so the outer estimate stays honest.

Saved, the head is its vectors and labels (``to_arrays``): it keeps predicting as trained
whatever later happens to the collection's items (deleted, relabelled, re-encoded), so no change
of the collection can break it; like every head it is refused for a space of another encoder
(``saved_heads``). Retrain it to take in new labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .heads import inner_sample
from .kernels import knn, knn_excluding, unit_rows

__all__ = ["K_GRID", "TEMPERATURE", "KnnHead", "choose_neighbours", "vote"]

# 50 was the best fixed k on the development split of Debian sections (100 no better, 0.608 vs
# 0.610): the grid goes one step beyond it.
K_GRID = (1, 3, 5, 10, 20, 50, 100)
TEMPERATURE = 0.07


class KnnHead:
    """Similarity-weighted k-NN vote over the labelled vectors; ``classes_``: the sorted labels,
    ``k_``: the neighbours that vote (chosen by leave-one-out when ``k`` is None)."""

    kind = "knn"
    lexical = False  # the vectors alone: it reads pictures as well as texts

    def __init__(self, k: int | None = None) -> None:
        self.k = k

    def fit(self, vectors: np.ndarray, y: np.ndarray, texts: Sequence[str] | None = None
            ) -> KnnHead:
        """``texts`` are not read (the signature is every head's)."""
        self.classes_, self._codes = np.unique(np.asarray(y, dtype=str), return_inverse=True)
        self._vectors = unit_rows(vectors)
        self.k_ = min(self.k or choose_neighbours(self._vectors, self._codes), len(y))
        return self

    def predict_proba(self, vectors: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """``(n, len(classes_))`` shares of the weighted vote, rows summing to 1."""
        scores, rows = knn(unit_rows(vectors), self._vectors, self.k_)
        return vote(scores, self._codes[rows], len(self.classes_))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"vectors": self._vectors, "codes": self._codes.astype(np.int32),
                "classes": np.asarray(self.classes_, dtype=str), "k": np.asarray(self.k_)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> KnnHead:
        head = cls(int(arrays["k"]))
        head.classes_ = np.asarray(arrays["classes"], dtype=object)
        head._vectors, head._codes, head.k_ = arrays["vectors"], arrays["codes"], int(arrays["k"])
        return head


def vote(scores: np.ndarray, codes: np.ndarray, classes: int) -> np.ndarray:
    """Each row's weighted vote: ``scores`` ``(n, k)`` cosines of its neighbours (best first,
    ``-inf`` where there is none), ``codes`` ``(n, k)`` their class numbers; returns ``(n,
    classes)`` shares summing to 1."""
    # Shift by each row's best score before exp: the same shares, no overflow.
    weights = np.exp((scores - scores[:, :1]) / TEMPERATURE)
    proba = np.zeros((len(scores), classes))
    np.add.at(proba, (np.repeat(np.arange(len(scores)), scores.shape[1]), codes.ravel()),
              weights.ravel())
    return proba / proba.sum(axis=1, keepdims=True)


def choose_neighbours(vectors: np.ndarray, codes: np.ndarray, *, seed: int = 0) -> int:
    """The ``k`` of ``K_GRID`` (those below the number of items) whose vote gets most of these
    items right, each voted on by the others (leave-one-out; the smaller ``k`` on a tie)."""
    grid = [k for k in K_GRID if k < len(codes)] or [1]
    voters = inner_sample(len(codes), seed)
    scores, rows = knn_excluding(vectors[voters], vectors, grid[-1], voters)
    classes = int(codes.max()) + 1
    accuracy = [np.mean(vote(scores[:, :k], codes[rows[:, :k]], classes).argmax(axis=1)
                        == codes[voters]) for k in grid]
    return grid[int(np.argmax(accuracy))]
