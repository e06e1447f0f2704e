from __future__ import annotations

import numpy as np
import pytest

from kinsight.engine import FUSIONS, ById, Fusion, IndexSpec, InvalidInputError, Item, SearchOptions
from kinsight.engine.kernels import knn_blocks
from kinsight.engine.search import _fuse
from kinsight.engine.vector_index import VectorIndex

from .conftest import VECTOR_ENCODER, normalized


def brute_force(vectors, query, k, mask=None):
    scores = normalized(vectors) @ normalized(query)
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    return [f"d{i}" for i in np.argsort(-scores)[:k]]


def test_dense_search_matches_exact_numpy(filled, vectors):
    for q in range(0, 300, 37):
        query = vectors[q] + 0.3
        hits = filled.search(query, k=10)
        assert [h.id for h in hits] == brute_force(vectors, query, 10)
        assert hits[0].score >= hits[-1].score
        assert hits[0].fields["n"] == int(hits[0].id[1:])


def test_structured_and_raw_filters_match_exact_numpy(filled, vectors):
    n = np.arange(300)
    query = vectors[10]
    hits = filled.search(query, k=5, where={"field": "n", "op": "ge", "value": 200})
    assert [h.id for h in hits] == brute_force(vectors, query, 5, n >= 200)
    hits = filled.search(query, k=5, where="\"group\" = 'b' AND n < 100")
    assert [h.id for h in hits] == brute_force(vectors, query, 5, (n % 3 == 1) & (n < 100))
    assert filled.search(query, where={"field": "n", "op": "gt", "value": 10_000}) == []


def test_filter_through_faiss_selector_when_many_match(filled, vectors, monkeypatch):
    monkeypatch.setattr("kinsight.engine.search.EXACT_FILTER_LIMIT", 10)
    n = np.arange(300)
    hits = filled.search(vectors[3], k=7, where={"field": "n", "op": "lt", "value": 150})
    assert [h.id for h in hits] == brute_force(vectors, vectors[3], 7, n < 150)


def test_query_by_id_leaves_the_item_out(filled, vectors):
    hits = filled.search(ById("d5"), k=5, mode="dense")
    assert "d5" not in {h.id for h in hits}
    assert [h.id for h in hits] == brute_force(vectors, vectors[5], 6)[1:]


def test_exact_flag_and_return_fields(filled, vectors):
    from kinsight.engine.search import SearchOptions, search

    hits = search(filled, vectors[1], SearchOptions(k=3, exact=True, return_fields=["n"]))
    assert [h.id for h in hits] == brute_force(vectors, vectors[1], 3)
    assert hits[0].fields == {"n": 1}


def test_chunks_aggregate_by_max_or_mean(store):
    docs = store.create_collection("docs")
    docs.ensure_space("text", VECTOR_ENCODER)
    e = np.eye(16, dtype=np.float32)
    # "long" has one chunk exactly on the query and one far from it; "steady" has two close ones.
    docs.upsert([
        Item(id="long", vectors={"text": np.stack([e[0], -e[0]])},
             spans={"text": [(0, 10), (8, 20)]}),
        Item(id="steady", vectors={"text": np.stack([e[0] + e[1], e[0] + e[2]])}),
        Item(id="other", vectors={"text": e[3]}),
    ])
    by_max = docs.search(e[0], k=3)
    assert [h.id for h in by_max][:2] == ["long", "steady"]
    assert by_max[0].chunk.index == 0 and (by_max[0].chunk.start, by_max[0].chunk.end) == (0, 10)
    by_mean = docs.search(e[0], k=3, aggregate="mean")
    assert by_mean[0].id == "steady"
    assert by_mean[0].score == pytest.approx(np.sqrt(0.5), abs=1e-5)
    assert len({h.id for h in by_max}) == 3  # never the same item twice


def test_bm25_ranks_by_words_and_respects_filters(filled):
    hits = filled.search("document 42", k=3, mode="bm25")
    assert hits[0].id == "d42"
    hits = filled.search("cats", k=5, mode="bm25", where={"field": "n", "op": "lt", "value": 10})
    assert {h.id for h in hits} == {"d1", "d3", "d5", "d7", "d9"}
    assert filled.search("the of and", k=5, mode="bm25") == []


def test_bm25_index_follows_writes(filled, vectors):
    assert filled.search("zebra", mode="bm25") == []
    filled.upsert([Item(id="z", fields={"text": "a zebra"}, vectors={"text": vectors[0]})])
    assert [h.id for h in filled.search("zebra", mode="bm25")] == ["z"]


def test_hybrid_needs_text_and_fuses(filled, vectors):
    hits = filled.search(ById("d42"), k=5, mode="hybrid")
    assert "d42" not in {h.id for h in hits} and len(hits) == 5
    with pytest.raises(InvalidInputError, match="text query"):
        filled.search(vectors[0], mode="hybrid")


def test_reciprocal_rank_fusion_arithmetic():
    dense = [("a", 0.9, None), ("b", 0.8, None)]
    bm25 = [("b", 12.0, None), ("c", 3.0, None)]
    fused = _fuse(dense, bm25, Fusion(method="rrf", rrf_k=60))
    assert [i for i, _, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    weighted = _fuse(dense, bm25, Fusion(method="weighted", normalise="minmax", dense_weight=0.9))
    assert weighted[0][0] == "a"


def test_zscore_fusion_counts_standard_deviations_above_each_sides_lowest():
    dense = [("a", 0.9, None), ("b", 0.8, None), ("c", 0.7, None)]
    bm25 = [("c", 30.0, None), ("a", 10.0, None), ("b", 8.0, None)]
    fused = dict((i, s) for i, s, _ in _fuse(dense, bm25, Fusion(dense_weight=0.6)))
    dense_sd, bm25_sd = np.std([0.9, 0.8, 0.7]), np.std([30.0, 10.0, 8.0])
    assert fused["a"] == pytest.approx(0.6 * 0.2 / dense_sd + 0.4 * 2.0 / bm25_sd)
    assert fused["c"] == pytest.approx(0.4 * 22.0 / bm25_sd)
    assert sorted(fused, key=lambda i: -fused[i]) == ["a", "c", "b"]
    minmax = dict((i, s) for i, s, _ in _fuse(dense, bm25, Fusion(normalise="minmax", dense_weight=0.6)))
    assert minmax["a"] == pytest.approx(0.6 * 1.0 + 0.4 * 2.0 / 22.0)
    with pytest.raises(InvalidInputError, match="normalisation"):
        _fuse(dense, bm25, Fusion(normalise="rank"))  # type: ignore[arg-type]


def test_default_fusion_is_the_first_offered():
    assert SearchOptions().fusion == FUSIONS["zscore"] == Fusion()
    assert next(iter(FUSIONS)) == "zscore" and FUSIONS["rrf"].method == "rrf"


@pytest.mark.parametrize("k", [0, 10_001])
def test_k_out_of_range(filled, vectors, k):
    with pytest.raises(InvalidInputError, match="k must be"):
        filled.search(vectors[0], k=k)


def test_vector_of_wrong_dimension(filled):
    with pytest.raises(InvalidInputError, match="16"):
        filled.search(np.ones(5, np.float32))


def test_ivf_index_recall_against_exact():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(50, 32))
    data = (centers[rng.integers(0, 50, 20_000)] + 0.3 * rng.normal(size=(20_000, 32)))
    data = normalized(data.astype(np.float32))
    seqs = np.arange(1, 20_001)
    index = VectorIndex(IndexSpec("IVF128,Flat", nprobe=16), 32, "cosine", "fp")
    index.train(data[:10_000])
    index.add(seqs, data)
    queries = data[:200] + 0.05 * rng.normal(size=(200, 32)).astype(np.float32)
    _, approx = index.search(queries, 10)
    _, exact = knn_blocks(queries, [(seqs, data)], 10, "cosine")
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.9
    assert index.remove(seqs[:100]) == 100 and index.ntotal == 19_900


@pytest.mark.gpu
def test_gpu_index_agrees_with_cpu():
    from kinsight.engine.vector_index import gpu_count

    if gpu_count() == 0:
        pytest.skip("FAISS sees no GPU (install kinsight[gpu] on a CUDA machine)")
    rng = np.random.default_rng(1)
    data = normalized(rng.normal(size=(5000, 64)).astype(np.float32))
    seqs = np.arange(1, 5001)
    cpu = VectorIndex(IndexSpec("Flat"), 64, "cosine", "fp")
    gpu = VectorIndex(IndexSpec("Flat", gpu=True), 64, "cosine", "fp")
    for index in (cpu, gpu):
        index.add(seqs, data)
    _, on_cpu = cpu.search(data[:50], 10)
    _, on_gpu = gpu.search(data[:50], 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(on_cpu, on_gpu, strict=True)])
    assert overlap >= 0.98  # fp16 storage on the GPU may swap near-ties


@pytest.mark.gpu
def test_removing_from_a_gpu_index_goes_through_its_cpu_copy():
    """FAISS GPU indexes cannot remove ids: the GPU copy is a replica, rebuilt after a removal."""
    from kinsight.engine.vector_index import gpu_count

    if gpu_count() == 0:
        pytest.skip("FAISS sees no GPU (install kinsight[gpu] on a CUDA machine)")
    data = normalized(np.random.default_rng(2).normal(size=(1000, 32)).astype(np.float32))
    index = VectorIndex(IndexSpec("Flat", gpu=True), 32, "cosine", "fp")
    index.add(np.arange(1, 1001), data)
    _, before = index.search(data[:5], 1)
    assert before[:, 0].tolist() == [1, 2, 3, 4, 5]
    assert index.remove(np.arange(1, 6)) == 5
    _, after = index.search(data[:5], 1)
    assert not set(after[:, 0].tolist()) & {1, 2, 3, 4, 5}


def test_auto_mode_is_hybrid_for_text_and_dense_for_vectors(filled, vectors):
    from kinsight.engine.search import resolve_mode

    space = filled.space()
    assert resolve_mode("auto", space, ["cats"]) == "hybrid"
    assert resolve_mode("auto", space, [ById("d1")]) == "hybrid"
    assert resolve_mode("auto", space, [vectors[0]]) == "dense"
    assert resolve_mode("bm25", space, [vectors[0]]) == "bm25"
    assert [h.id for h in filled.search(vectors[3], k=3)] == brute_force(vectors, vectors[3], 3)
    fused = filled.search(ById("d42"), k=5)
    assert fused == filled.search(ById("d42"), k=5, mode="hybrid")


def test_exact_search_on_an_ivf_collection_probes_every_list(store, monkeypatch):
    monkeypatch.setattr("kinsight.engine.index_policy.EXACT_SCAN_BUDGET", 1000)
    rng = np.random.default_rng(3)
    data = normalized(rng.normal(size=(4000, 16)).astype(np.float32))
    docs = store.create_collection("big")
    docs.ensure_space("text", VECTOR_ENCODER)
    docs.upsert(Item(id=f"d{i}", vectors={"text": data[i]}) for i in range(len(data)))
    docs.refresh()
    assert docs.space().index_spec.startswith("IVF")
    for q in range(0, 4000, 500):
        query = data[q] + 0.5 * rng.normal(size=16).astype(np.float32)
        hits = docs.search(query, k=10, exact=True)
        assert [h.id for h in hits] == brute_force(data, query, 10)


def test_chunk_map_follows_deletes_and_upserts(filled, vectors):
    filled.delete(["d1"])
    assert "d1" not in {h.id for h in filled.search(vectors[1], k=5)}
    filled.upsert([Item(id="d1", vectors={"text": vectors[1]})])
    assert filled.search(vectors[1], k=1)[0].id == "d1"


def test_unknown_return_fields_are_refused(filled, vectors):
    from kinsight.engine.search import SearchOptions, search

    with pytest.raises(InvalidInputError, match=r"no field 'nope'; fields: group, n, text"):
        search(filled, vectors[0], SearchOptions(return_fields=["n", "nope"]))


def test_large_bm25_index_is_rebuilt_in_the_background(filled, vectors, monkeypatch):
    monkeypatch.setattr("kinsight.engine.lexical.SYNC_REBUILD_LIMIT", 0)
    assert [h.id for h in filled.search("document 42", k=1, mode="bm25")] == ["d42"]
    filled.delete(["d42"])
    filled.upsert([Item(id="z", fields={"text": "a zebra"}, vectors={"text": vectors[0]})])
    # Served from the previous index while it rebuilds: the deleted item never comes back.
    assert "d42" not in {h.id for h in filled.search("document 42", k=5, mode="bm25")}
    filled.lexical().wait()
    assert [h.id for h in filled.search("zebra", mode="bm25")] == ["z"]


def test_a_search_during_a_writers_bm25_catch_up_does_not_wait_for_it(filled, vectors,
                                                                      monkeypatch):
    """A small index is rebuilt on the spot by a search that finds it behind, but one a writer
    is catching up (a server after its commit) is served as it was until the writer's rebuild is
    in: the search neither waits for that rebuild nor starts one of its own."""
    import threading

    from kinsight.engine.lexical import LexicalIndex

    filled.search("document 42", k=1, mode="bm25")  # built
    real, building, release = LexicalIndex.build, threading.Event(), threading.Event()

    def slow_build(*args, **kwargs):
        building.set()
        release.wait(30)
        return real(*args, **kwargs)

    filled.upsert([Item(id="z", fields={"text": "a zebra"}, vectors={"text": vectors[0]})])
    monkeypatch.setattr(LexicalIndex, "build", staticmethod(slow_build))
    writer = threading.Thread(target=filled.catch_up)
    writer.start()
    assert building.wait(30)
    # The previous index answers at once, stale: no zebra yet, and no second build started.
    index, fresh = filled.lexical().current()
    assert not fresh and "z" not in index.ids
    assert [h.id for h in filled.search("document 42", k=1, mode="bm25")] == ["d42"]
    release.set()
    writer.join(30)
    assert [h.id for h in filled.search("zebra", mode="bm25")] == ["z"]
    assert filled.lexical().current()[1]
