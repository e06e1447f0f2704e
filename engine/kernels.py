"""Exact numeric kernels shared by the operations: row normalisation, top-k and leave-one-out k-NN
(the classifier head and its cross-validation are in ``heads``). FAISS does the searching
(``faiss.knn``) and keeps the top k of a base read in blocks (``faiss.ResultHeap``); this module
fixes one contract around it, so no operation handles raw FAISS distances. It imports nothing of
the engine but its vocabulary (errors, spaces), so every floor above storage may use it.

Array contracts (FAISS's, with scores turned "higher is better"):

- vectors are ``(n, d)`` float32 rows (other dtypes and layouts are converted);
- a search returns ``(scores, ids)``, both of shape ``(nq, k)``, best first: ``scores`` float32,
  the inner product for ``ip`` (``cosine`` and ``dot`` are the same: cosine on unit rows) or minus
  the squared distance for ``l2``; ``ids`` int64 rows of the base matrix (or the ids given with a
  block), ``-1`` with score ``-inf`` where fewer than ``k`` results exist (``k`` larger than ``n``).
- ties are ordered as FAISS's heaps order them.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

import faiss
import numpy as np

from .errors import InvalidInputError
from .spaces import VectorSpace

__all__ = ["knn", "knn_blocks", "knn_excluding", "leave_one_out", "normalise_for", "search_threads",
           "unit_rows"]

_METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "cosine": faiss.METRIC_INNER_PRODUCT,
            "dot": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
# A handful of queries runs on the calling thread alone. FAISS splits a search over queries, so
# one query on two OpenMP threads leaves one idle at a spinning barrier: 27-37 ms instead of
# 5-6 ms for one query over 33k vectors on a loaded 2-core machine.
SERIAL_BELOW = 8


def search_threads(nq: int) -> None:
    """Set FAISS's OpenMP threads for a search of ``nq`` queries: one below ``SERIAL_BELOW``, all
    otherwise. ``omp_set_num_threads`` is per calling thread, so concurrent searches (HTTP
    workers) each choose for themselves."""
    threads = _all_threads()  # read before this thread ever lowers its own count
    faiss.omp_set_num_threads(1 if nq < SERIAL_BELOW else threads)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows (the last axis) scaled to length one (zero rows stay zero), float32: cosines become dot
    products. A single vector ``(d,)`` is one row."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)


def normalise_for(space: VectorSpace, vectors: np.ndarray) -> np.ndarray:
    """Unit-length rows in a cosine space (as stored), unchanged otherwise."""
    return unit_rows(vectors) if space.metric == "cosine" else vectors


def knn(queries: np.ndarray, base: np.ndarray, k: int, metric: str = "ip"
        ) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(scores, ids)`` ``(nq, k)`` of the ``k`` nearest rows of ``base`` ``(n, d)`` to each
    of ``queries`` ``(nq, d)``; ids are rows of ``base``."""
    code = _metric(metric)
    queries, base = _rows(queries), _rows(base)
    if len(base) == 0:
        return _empty(len(queries), k)
    search_threads(len(queries))
    distances, ids = faiss.knn(queries, base, k, metric=code)
    return _scores(distances, ids, code), ids


def knn_blocks(queries: np.ndarray, blocks: Iterable[tuple[np.ndarray, np.ndarray]], k: int,
               metric: str = "ip") -> tuple[np.ndarray, np.ndarray]:
    """Like ``knn`` over a base given as blocks of ``(ids (m,), vectors (m, d))``, a block at a time
    so the base never has to fit in memory (FAISS contrib's ``knn_ground_truth``); ids are the
    blocks' own. Blocks may be of any size, empty ones included.

    Each block is scored by one matrix product and merged into a ``faiss.ResultHeap``. Not
    ``faiss.knn`` per block: below ``nq * d = 128,000`` (faiss 1.15's BLAS threshold, ~330 queries
    at 384-d) it streams the whole block once per query, 3-6x slower than one product for 20-300
    queries over 33k vectors on this machine."""
    code = _metric(metric)
    queries = _rows(queries)
    inner_product = code == faiss.METRIC_INNER_PRODUCT
    search_threads(len(queries))  # the heap's OpenMP loops
    heap = faiss.ResultHeap(len(queries), k, keep_max=inner_product)
    every_query = np.arange(len(queries), dtype=np.int64)
    query_norms = None if inner_product else np.sum(queries**2, axis=1)[:, None]
    for ids, vectors in blocks:
        if len(ids) == 0:
            continue
        vectors = _rows(vectors)
        values = queries @ vectors.T
        if query_norms is not None:  # squared distances, expanded as FAISS's BLAS path does
            values = np.sum(vectors**2, axis=1)[None, :] - 2 * values + query_norms
        heap.add_result_subset(every_query, values, np.asarray(ids, dtype=np.int64))
    heap.finalize()
    return _scores(heap.D, heap.I, code), heap.I


def knn_excluding(queries: np.ndarray, base: np.ndarray, k: int, exclude: np.ndarray,
                  metric: str = "ip") -> tuple[np.ndarray, np.ndarray]:
    """Like ``knn``, with base row ``exclude[i]`` never among query ``i``'s results: one search for
    ``k + 1``, then that row dropped by its index. An exact copy of the excluded row may rank before
    it, or push it out of the ``k + 1``; then the last result is dropped instead, so every query
    keeps ``k`` (the ``-1`` padding included when the base has no ``k`` other rows)."""
    exclude = np.asarray(exclude, dtype=np.int64)
    if exclude.shape != (len(queries),):
        raise InvalidInputError(f"exclude must give one base row per query ({len(queries)}), "
                                f"got shape {exclude.shape}")
    scores, ids = knn(queries, base, k + 1, metric)
    keep = ids != exclude[:, None]
    keep[keep.all(axis=1), k] = False
    return scores[keep].reshape(len(ids), k), ids[keep].reshape(len(ids), k)


def leave_one_out(vectors: np.ndarray, k: int, metric: str = "ip") -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` ``(n, k)`` of each row's ``k`` nearest other rows of ``vectors`` ``(n, d)``
    (itself left out by index, however many exact copies it has)."""
    return knn_excluding(vectors, vectors, k, np.arange(len(vectors)), metric)


@cache
def _all_threads() -> int:
    """FAISS's threads before ``search_threads`` first lowered them (read once, on first use)."""
    return int(faiss.omp_get_max_threads())


def _metric(metric: str) -> int:
    if metric not in _METRICS:
        raise InvalidInputError(f"unknown metric {metric!r}; use one of {', '.join(_METRICS)}")
    return _METRICS[metric]


def _rows(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _scores(distances: np.ndarray, ids: np.ndarray, code: int) -> np.ndarray:
    """FAISS's raw values as higher-is-better scores, ``-inf`` where there is no result."""
    scores = distances if code == faiss.METRIC_INNER_PRODUCT else -distances
    return np.where(ids < 0, -np.inf, scores).astype(np.float32)


def _empty(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)
