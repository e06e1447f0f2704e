"""The exact kernels against numpy brute force on random data: inner product and L2, blocks of
uneven size, ``k`` larger than the data, leave-one-out with exact duplicates, the probe."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kinsight.engine import InvalidInputError
from kinsight.engine.kernels import (
    knn,
    knn_blocks,
    knn_excluding,
    leave_one_out,
    unit_rows,
)

METRICS = ("ip", "l2")


def brute_scores(queries: np.ndarray, base: np.ndarray, metric: str) -> np.ndarray:
    """``(nq, n)`` higher-is-better scores in float64."""
    q, b = queries.astype(np.float64), base.astype(np.float64)
    if metric == "l2":
        return -((q[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    return q @ b.T


def check_against(scores: np.ndarray, ids: np.ndarray, brute: np.ndarray, k: int) -> None:
    """``(scores, ids)`` are the top ``k`` of ``brute`` (``-inf`` marks left-out pairs): best
    first, each id's score its brute-force score, the same scores as a full sort (so ties may
    come in any order), ``-1``/``-inf`` padding where fewer than ``k`` exist."""
    nq = len(brute)
    assert scores.shape == ids.shape == (nq, k)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    expected = -np.sort(-brute, axis=1)[:, :k]
    available = np.isfinite(brute).sum(axis=1)
    for row in range(nq):
        found = min(k, int(available[row]))
        assert np.all(ids[row, found:] == -1) and np.all(scores[row, found:] == -np.inf)
        valid = ids[row, :found]
        assert len(set(valid.tolist())) == found and np.all(valid >= 0)
        np.testing.assert_allclose(scores[row, :found], brute[row, valid], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(scores[row, :found], expected[row, :found], rtol=1e-5, atol=1e-4)
    assert np.all(np.diff(np.where(np.isfinite(scores), scores, -1e30), axis=1) <= 1e-5)  # best first


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return (rng.normal(size=(30, 12)).astype(np.float32),
            rng.normal(size=(157, 12)).astype(np.float32))


def test_unit_rows_scales_rows_and_single_vectors():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    unit = unit_rows(x)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(unit_rows(np.array([0.0, 2.0])), [0.0, 1.0])
    rows = unit_rows(np.random.default_rng(0).normal(size=(50, 9)))
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [1, 10, 157, 200])
def test_knn_matches_brute_force(data, metric, k):
    queries, base = data
    scores, ids = knn(queries, base, k, metric)
    check_against(scores, ids, brute_scores(queries, base, metric), k)


def test_knn_on_an_empty_base_finds_nothing(data):
    scores, ids = knn(data[0], data[1][:0], 3)
    assert ids.shape == (30, 3) and np.all(ids == -1) and np.all(scores == -np.inf)


@pytest.mark.parametrize("metric", [*METRICS, "cosine", "dot"])
@pytest.mark.parametrize("k", [1, 7, 150, 400])
def test_knn_blocks_of_uneven_size_match_brute_force(data, metric, k):
    queries, base = data
    block_ids = np.arange(len(base)) * 5 + 3  # ids are the blocks' own, not row numbers
    cuts = [0, 1, 1, 40, 41, 120, 157]  # sizes 1, 0, 39, 1, 79, 37
    blocks = [(block_ids[a:b], base[a:b]) for a, b in itertools.pairwise(cuts)]
    scores, ids = knn_blocks(queries, iter(blocks), k, metric)
    rows = np.where(ids >= 0, (ids - 3) // 5, -1)
    assert np.all(ids[ids >= 0] % 5 == 3)
    brute = brute_scores(queries, base, "l2" if metric == "l2" else "ip")
    check_against(scores, rows, brute, k)


def test_knn_blocks_with_no_blocks_finds_nothing(data):
    scores, ids = knn_blocks(data[0], [], 4)
    assert ids.shape == (30, 4) and np.all(ids == -1) and np.all(scores == -np.inf)


def with_copies() -> np.ndarray:
    """Random rows, some copied exactly (one of them three times), so several rows tie."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    x[10] = x[3]
    x[11] = x[3]
    x[40:50] = x[20:30]
    x[59] = 0.0  # a zero row: every inner product with it ties at 0
    x[58] = 0.0
    return x


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [1, 2, 5, 59, 80])
def test_leave_one_out_drops_the_row_itself_never_its_copies(metric, k):
    x = with_copies()
    scores, ids = leave_one_out(x, k, metric)
    assert not np.any(ids == np.arange(len(x))[:, None])
    brute = brute_scores(x, x, metric)
    np.fill_diagonal(brute, -np.inf)
    check_against(scores, ids, brute, k)
    if metric == "l2" and k >= 2:  # a row's exact copies, at distance 0, come first
        for row, copies in [(3, {10, 11}), (10, {3, 11}), (11, {3, 10}), (20, {40}), (45, {25}),
                            (58, {59})]:
            assert set(ids[row, :len(copies)].tolist()) == copies


@pytest.mark.parametrize("k", [3, 9])
def test_leave_one_out_with_more_copies_than_k_keeps_k_others(k):
    # Ten copies of each row tie with the row itself: with k=3 the row is often not among the 4
    # found, and the last of them is dropped instead.
    x = np.repeat(unit_rows(np.random.default_rng(5).normal(size=(4, 6))), 10, axis=0)
    for metric in METRICS:
        _, ids = leave_one_out(x, k, metric)
        assert not np.any(ids == np.arange(len(x))[:, None])
        for row in range(len(x)):
            group = set(range(row // 10 * 10, row // 10 * 10 + 10)) - {row}
            assert len(set(ids[row].tolist())) == k and set(ids[row].tolist()) <= group


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [1, 6, 200])
def test_knn_excluding_leaves_out_the_given_base_row(data, metric, k):
    queries, base = data
    base = np.concatenate([base, queries[:5]])  # some queries have an exact copy in the base
    exclude = np.random.default_rng(1).integers(0, len(base), len(queries))
    exclude[:5] = len(base) - 5 + np.arange(5)  # ... and it is the row to leave out
    scores, ids = knn_excluding(queries, base, k, exclude, metric)
    assert not np.any(ids == exclude[:, None])
    brute = brute_scores(queries, base, metric)
    brute[np.arange(len(queries)), exclude] = -np.inf
    check_against(scores, ids, brute, k)


def test_knn_excluding_needs_one_row_per_query(data):
    with pytest.raises(InvalidInputError, match="one base row per query"):
        knn_excluding(data[0], data[1], 3, np.arange(4))


def test_unknown_metric_is_refused(data):
    with pytest.raises(InvalidInputError, match="unknown metric"):
        knn(data[0], data[1], 3, "hamming")


def test_search_threads_runs_few_queries_on_one_thread():
    import faiss

    from kinsight.engine.kernels import SERIAL_BELOW, search_threads

    search_threads(SERIAL_BELOW)
    every = faiss.omp_get_max_threads()
    search_threads(1)
    assert faiss.omp_get_max_threads() == 1
    search_threads(SERIAL_BELOW)
    assert faiss.omp_get_max_threads() == every
