from __future__ import annotations

import pytest

from kinsight.engine import InvalidInputError, choose_index


def test_small_collections_are_searched_exactly():
    spec = choose_index(33_000, 384)
    assert spec.factory == "Flat" and spec.is_exact


def test_large_collections_get_an_inverted_file():
    spec = choose_index(2_000_000, 384)
    assert spec.factory.startswith("IVF") and spec.factory.endswith(",Flat")
    assert 16 <= spec.nlist <= 2_000_000 // 39
    assert 0 < spec.nprobe <= spec.nlist


def test_higher_recall_target_probes_more_lists():
    low = choose_index(1_000_000, 384, recall_target=0.9)
    high = choose_index(1_000_000, 384, recall_target=0.99)
    assert high.nprobe > low.nprobe


def test_recall_target_one_forces_exact():
    assert choose_index(5_000_000, 384, recall_target=1.0).is_exact


def test_short_memory_compresses_with_pq():
    spec = choose_index(1_000_000, 384, memory_budget=100_000_000)
    assert ",PQ" in spec.factory
    m = int(spec.factory.rsplit("PQ", 1)[1])
    assert 384 % m == 0


def test_gpu_flag_follows_availability():
    assert choose_index(1000, 8, gpu_available=True).gpu
    assert not choose_index(1000, 8).gpu


@pytest.mark.parametrize("kwargs", [{"n": -1, "dim": 8}, {"n": 1, "dim": 0},
                                    {"n": 1, "dim": 8, "recall_target": 1.5}])
def test_bad_arguments(kwargs):
    with pytest.raises(InvalidInputError):
        choose_index(**kwargs)
