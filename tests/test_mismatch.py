"""Mismatch scores on synthetic vectors of known structure: swapped pairs, flipped labels, planted
duplicates; through Python, the CLI and HTTP."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.api.http import Settings, create_app
from kinsight.engine import (
    EncoderInfo,
    EncoderMismatchError,
    InvalidInputError,
    Item,
    NotFoundError,
    Store,
    get_run,
    read_run_table,
)
from kinsight.engine.mismatch import (
    DuplicateOptions,
    label_mismatch,
    near_duplicates,
    pair_mismatch,
    pair_scores,
)

DIM = 32
ENCODER = EncoderInfo(spec="vectors:synthetic", modality="text", dim=DIM, fingerprint="synthetic-32")
OTHER = EncoderInfo(spec="vectors:other", modality="image", dim=DIM, fingerprint="other-32")
SWAPPED = ("hub003", "hub011", "hub017", "hub024")
runner = CliRunner()


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def paired_vectors(seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """60 "hub" items, whose vectors all lean towards one direction (any two of their partners
    have cosine ~0.7, true ones ~0.99), and 60 "spread" items whose true pairs are noisier
    (cosine ~0.5) but unlike anything else. Four hub items get each other's partners: their
    cosine (~0.7) still beats every honest spread pair, so the raw cosine misses them."""
    rng = np.random.default_rng(seed)
    hub = unit(rng.normal(size=DIM))
    latent = unit(rng.normal(size=(120, DIM)))
    a = np.empty((120, DIM))
    b = np.empty((120, DIM))
    a[:60] = unit(1.5 * hub + latent[:60])
    b[:60] = unit(1.5 * hub + latent[:60] + 0.05 * rng.normal(size=(60, DIM)))
    a[60:] = latent[60:]
    b[60:] = unit(latent[60:] + 0.3 * rng.normal(size=(60, DIM)))
    ids = [f"hub{i:03d}" for i in range(60)] + [f"spread{i:03d}" for i in range(60)]
    rows = [ids.index(s) for s in SWAPPED]
    b[rows] = b[rows[1:] + rows[:1]]  # a cycle: each gets the next one's partner
    return ids, a.astype(np.float32), b.astype(np.float32)


@pytest.fixture
def paired(store):
    ids, a, b = paired_vectors()
    coll = store.create_collection("pics")
    coll.ensure_space("caption", ENCODER)
    coll.ensure_space("image", ENCODER)
    coll.upsert(Item(id=i, fields={"kind": i.rstrip("0123456789")}, vectors={"caption": va, "image": vb})
                for i, va, vb in zip(ids, a, b, strict=True))
    return coll


# -- pair mismatch --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["zscore", "rank"])
def test_swapped_pairs_rank_first_where_the_raw_cosine_misses_them(paired, method):
    result = paired.pair_mismatch("caption", "image", method=method)
    assert {p.id for p in result.pairs[:4]} == set(SWAPPED)
    truth = [p.id in SWAPPED for p in result.pairs]
    assert roc_auc_score(truth, [p.score for p in result.pairs]) == 1.0
    # The raw cosine ranks honest spread pairs below the swapped ones.
    raw_auc = roc_auc_score(truth, [-p.cosine for p in result.pairs])
    assert raw_auc < 0.8
    worst_by_cosine = sorted(result.pairs, key=lambda p: p.cosine)[:4]
    assert not set(SWAPPED) & {p.id for p in worst_by_cosine}
    scores = [p.score for p in result.pairs]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    honest = [p for p in result.pairs if p.id not in SWAPPED]
    assert max(p.score for p in honest) < 0.1  # honest pairs beat nearly every impostor
    assert result.k == 100 and result.skipped == 0 and result.warnings == []


def test_nearest_impostors_and_the_saved_run(paired):
    result = paired.pair_mismatch("caption", "image", impostors="nearest", k=10, method="rank")
    assert {p.id for p in result.pairs[:4]} == set(SWAPPED)
    table = read_run_table(paired, result.run_id, "scores")
    assert table.column("id").to_pylist() == [p.id for p in result.pairs]
    assert table.column("score").to_pylist() == pytest.approx([p.score for p in result.pairs])
    raw = paired.store.cursor().execute(
        "SELECT count(*) FROM pics.pair_mismatch_scores WHERE run_id = ?", [result.run_id]).fetchone()
    assert raw == (120,)


def test_random_impostors_are_seeded_and_all_are_used_when_few(paired):
    first = paired.pair_mismatch("caption", "image", k=5, seed=1)
    again = paired.pair_mismatch("caption", "image", k=5, seed=1)
    other = paired.pair_mismatch("caption", "image", k=5, seed=2)
    assert [p.score for p in first.pairs] == [p.score for p in again.pairs]
    assert [p.score for p in first.pairs] != [p.score for p in other.pairs]
    # With k above the number of other items every other item is an impostor, whatever the seed.
    _, a, b = paired_vectors()
    exact = pair_scores(unit(a[:5]), unit(b[:5]), k=50)
    cos = unit(a[:5]) @ unit(b[:5]).T
    expected = np.mean([(np.delete(cos[0], 0) > cos[0, 0]).mean(),
                        (np.delete(cos[:, 0], 0) > cos[0, 0]).mean()])
    assert exact.rank[0] == pytest.approx(expected)
    assert pair_scores(unit(a[:5]), unit(b[:5]), k=50, seed=9).z == pytest.approx(exact.z)
    # Candidate pairs scored against a pool of true ones: a swapped candidate scores worse than
    # its true pair, judged against the same impostors.
    pool_a, pool_b = unit(a[60:]), unit(b[60:])
    candidates = pair_scores(pool_a[[0, 0]], pool_b[[0, 1]], pool_a=pool_a, pool_b=pool_b,
                             owners=np.array([0, 0]), k=20)
    assert candidates.score("zscore")[1] > 0.5 > candidates.score("zscore")[0]
    with pytest.raises(InvalidInputError, match="together"):
        pair_scores(pool_a, pool_b, pool_a=pool_a, pool_b=pool_b)


def test_filters_choose_the_items_and_their_impostors(paired):
    result = paired.pair_mismatch("caption", "image", where={"field": "kind", "op": "eq", "value": "hub"})
    assert len(result.pairs) == 60 and all(p.id.startswith("hub") for p in result.pairs)
    assert {p.id for p in result.pairs[:4]} == set(SWAPPED)
    with pytest.raises(InvalidInputError, match="at least 3 items"):
        paired.pair_mismatch("caption", "image", where="id IN ('hub001', 'hub002')")


def test_multi_chunk_items_are_scored_by_their_mean_vector(store):
    coll = store.create_collection("docs")
    coll.ensure_space("title", ENCODER)
    coll.ensure_space("body", ENCODER)
    rng = np.random.default_rng(3)
    bodies = {f"d{i}": unit(rng.normal(size=(3, DIM))) for i in range(8)}
    coll.upsert(Item(id=i, vectors={"title": unit(chunks.mean(axis=0)), "body": chunks})
                for i, chunks in bodies.items())
    coll.upsert([Item(id="lonely", vectors={"title": unit(rng.normal(size=DIM))})])
    result = pair_mismatch(coll, "title", "body")
    assert result.skipped == 1 and len(result.pairs) == 8
    assert all(p.cosine == pytest.approx(1.0, abs=1e-5) for p in result.pairs)


def test_spaces_of_different_encoders_are_refused_naming_both(store):
    coll = store.create_collection("mixed")
    coll.ensure_space("caption", ENCODER)
    coll.ensure_space("image", OTHER)
    vectors = np.random.default_rng(0).normal(size=(5, DIM)).astype(np.float32)
    coll.upsert(Item(id=str(i), vectors={"caption": v, "image": v}) for i, v in enumerate(vectors))
    with pytest.raises(EncoderMismatchError, match=r"vectors:synthetic.*vectors:other.*adapter"):
        pair_mismatch(coll, "caption", "image")
    with pytest.raises(InvalidInputError, match="two different spaces"):
        pair_mismatch(coll, "caption", "caption")
    with pytest.raises(NotFoundError, match="no vector space 'nope'"):
        pair_mismatch(coll, "caption", "nope")
    with pytest.raises(InvalidInputError, match="unknown impostors"):
        coll.pair_mismatch("caption", "image", impostors="close")


# -- label mismatch -------------------------------------------------------------------------------
FLIPPED = {"x005": "b", "x047": "c", "x090": "d", "x101": "a", "x133": "a"}


@pytest.fixture
def labelled(store):
    """160 items in four tight groups labelled a-d; five carry another group's label."""
    rng = np.random.default_rng(0)
    centres = unit(rng.normal(size=(4, DIM)))
    truth = np.repeat(np.arange(4), 40)
    vectors = centres[truth] + 0.15 * rng.normal(size=(160, DIM))
    coll = store.create_collection("docs")
    coll.ensure_space("text", ENCODER)
    items = []
    for n, (v, g) in enumerate(zip(vectors, truth, strict=True)):
        item_id = f"x{n:03d}"
        label = FLIPPED.get(item_id, "abcd"[g])
        items.append(Item(id=item_id, vectors={"text": v},
                          fields={"category": label, "truth": "abcd"[g], "one": "same", "half": n % 2}))
    coll.upsert(items)
    return coll


# The vote alone asks 10 neighbours here: with 30, x090's reach into another group (0.9 for its
# true label, under that label's threshold of 0.94), so confident learning counts 4 errors, not 5.
@pytest.mark.parametrize(("method", "k"), [("knn", 10), ("probe", 30), ("knn+probe", 30)])
def test_flipped_labels_are_found_with_the_true_label_suggested(labelled, method, k):
    result = labelled.label_mismatch("category", method=method, k=k)
    assert result.method == method and result.budget is None and not result.lexical
    # Confident learning's estimate of the wrong labels: the five, give or take its rounding.
    assert len(FLIPPED) <= result.flagged <= len(FLIPPED) + 1
    assert [i.flagged for i in result.items] == [n < result.flagged for n in range(160)]
    worst = result.items[:len(FLIPPED)]
    assert {i.id for i in worst} == set(FLIPPED) and all(i.flagged for i in worst)
    truth = {i: f["truth"] for i, f in labelled.fields_of(list(FLIPPED)).items()}
    assert {i.id: i.suggested for i in worst} == truth
    assert all(i.confidence > 0.6 and i.support < 0.2 for i in worst)
    assert (worst[0].probe_support is None) == (method == "knn")
    rest = result.items[len(FLIPPED):]
    assert all(i.suggested == i.label for i in rest)
    saved = read_run_table(labelled, result.run_id, "items")
    assert saved.column("id").to_pylist()[:5] == [i.id for i in worst]


def test_the_default_blend_judges_a_set_smaller_than_its_k(store):
    """16 items, fewer than the 30 neighbours the default asks for: every other item votes."""
    rng = np.random.default_rng(7)
    centres = unit(rng.normal(size=(2, DIM)))
    coll = store.create_collection("few")
    coll.ensure_space("text", ENCODER)
    coll.upsert(Item(id=f"f{n:02d}", vectors={"text": unit(centres[n % 2] + 0.1 * rng.normal(size=DIM))},
                     fields={"side": "left" if (n % 2 == 0) != (n == 6) else "right"})
                for n in range(16))
    result = coll.label_mismatch("side", budget=1)
    assert result.method == "knn+probe" and result.k == 15
    assert result.items[0].id == "f06" and result.items[0].suggested == "left"


def test_a_budget_flags_the_most_likely_errors_first(labelled):
    calibrated = labelled.label_mismatch("category")
    for budget in (3, 8):
        result = labelled.label_mismatch("category", budget=budget)
        assert result.budget == budget and result.flagged == budget
        assert [i.id for i in result.items] == [i.id for i in calibrated.items]  # same ranking
        assert all(i.flagged for i in result.items[:budget])
        assert not any(i.flagged for i in result.items[budget:])
    assert {i.id for i in result.items[:8]} >= set(FLIPPED)
    with pytest.raises(InvalidInputError, match="budget must be at least 1"):
        labelled.label_mismatch("category", budget=0)
    with pytest.raises(InvalidInputError, match="unknown label mismatch method 'vote'"):
        labelled.label_mismatch("category", method="vote")


def test_confident_labels_use_per_class_thresholds():
    from kinsight.engine.mismatch.labels import confident_labels

    codes = np.array([0, 0, 0, 1, 1, 1])
    # Class 1's own items give it little weight (threshold 0.3), class 0's much (threshold 0.75):
    # 0.3 is confident for class 1 where 0.7 is not for class 0, so items 1 and 2 get class 1
    # although class 0 weighs more; item 5 is confidently class 0.
    weights = np.array([[0.9, 0.1], [0.7, 0.3], [0.65, 0.35], [0.6, 0.4], [0.6, 0.4],
                        [0.9, 0.1]])
    assert confident_labels(weights, codes).tolist() == [0, 1, 1, 1, 1, 0]
    weights[5] = [0.72, 0.28]  # now under both thresholds (0.75 and 0.36): no confident label
    assert confident_labels(weights, codes).tolist()[5] == -1


def test_estimated_errors_count_the_calibrated_off_diagonal():
    from kinsight.engine.mismatch.labels import estimated_errors

    codes = np.array([0, 0, 0, 0, 1, 1])
    # Label 0: 2 of its 3 confident items confidently are label 1, and its fourth item (no
    # confident label) is spread like them: 4 * 2/3 wrong. Label 1: all right.
    confident = np.array([1, 1, 0, -1, 1, 1])
    assert estimated_errors(confident, codes) == 3  # round(2.67)
    assert estimated_errors(np.array([0, 0, 0, 0, 1, 1]), codes) == 0


def test_the_probe_reads_the_source_text_where_the_vectors_are_noise(store):
    """Two sections told apart only by their words; the vectors are random. With the words the
    probe finds the three flipped labels; without them it cannot."""
    rng = np.random.default_rng(1)
    coll = store.create_collection("packages")
    coll.ensure_space("text", ENCODER, source_fields=["text"])
    flipped = {"p007", "p040", "p073"}
    items = []
    filler = ["tool", "library", "program", "package", "utility", "helper", "daemon"]
    for n in range(120):
        truth = "net" if n % 2 else "sound"
        words = "tcp socket network" if truth == "net" else "audio mixer sound"
        label = ({"net": "sound", "sound": "net"}[truth] if f"p{n:03d}" in flipped else truth)
        items.append(Item(id=f"p{n:03d}", vectors={"text": unit(rng.normal(size=DIM))},
                          fields={"section": label,
                                  "text": f"{words} {filler[n % 7]} {filler[(n * 3) % 7]}"}))
    coll.upsert(items)
    with_words = coll.label_mismatch("section", method="probe", budget=3)
    assert with_words.lexical and {i.id for i in with_words.items[:3]} == flipped
    without = coll.label_mismatch("section", method="probe", budget=3, lexical=False)
    assert not without.lexical and len({i.id for i in without.items[:3]} & flipped) <= 1


def test_label_mismatch_filters_and_errors(labelled):
    half = labelled.label_mismatch("category", where={"field": "half", "op": "eq", "value": 0}, k=5)
    assert len(half.items) == 80 and half.items[0].id == "x090" and half.items[0].suggested == "c"
    assert all(i.id == "x090" for i in half.items if i.flagged)
    with pytest.raises(NotFoundError, match=r"no field 'nope'.*category"):
        label_mismatch(labelled, "nope")
    with pytest.raises(InvalidInputError, match="two different values of 'one'"):
        label_mismatch(labelled, "one")
    # More neighbours than there are other items: every other item votes.
    everyone = labelled.label_mismatch("category", method="knn", k=500)
    shares = Counter(i.label for i in everyone.items)
    assert everyone.k == 159 and all(i.knn_support == pytest.approx((shares[i.label] - 1) / 159)
                                     for i in everyone.items)


# -- near-duplicates ------------------------------------------------------------------------------
@pytest.fixture
def with_copies(store):
    """50 unrelated items plus planted copies: a hash twin (same content, other vector), an
    identical vector, a near copy and a chain of three (neighbours ~0.963 apart, its ends ~0.87)."""
    rng = np.random.default_rng(5)
    base = unit(rng.normal(size=(50, DIM)))
    coll = store.create_collection("docs")
    coll.ensure_space("text", ENCODER)
    items = [Item(id=f"u{i:02d}", vectors={"text": v}, fields={"n": i}) for i, v in enumerate(base)]
    items += [
        Item(id="twin-a", vectors={"text": unit(rng.normal(size=DIM))}, content_hash="h1", fields={"n": 1}),
        Item(id="twin-b", vectors={"text": unit(rng.normal(size=DIM))}, content_hash="h1", fields={"n": 1}),
        Item(id="same", vectors={"text": base[7]}, fields={"n": 100}),
        Item(id="near", vectors={"text": unit(base[9] + 0.05 * rng.normal(size=DIM))}, fields={"n": 100}),
    ]
    step = unit(rng.normal(size=DIM))
    start = unit(rng.normal(size=DIM))
    items += [Item(id=f"chain{j}", vectors={"text": unit(start + 0.28 * j * step)}, fields={"n": 200})
              for j in range(3)]
    coll.upsert(items)
    return coll


def test_duplicate_groups_by_hash_vector_and_similarity(with_copies):
    result = near_duplicates(with_copies, DuplicateOptions(threshold=0.95, linkage="single"))
    groups = {frozenset(g.members): g for g in result.groups}
    assert set(groups) == {frozenset({"twin-a", "twin-b"}), frozenset({"u07", "same"}),
                           frozenset({"u09", "near"}), frozenset({"chain0", "chain1", "chain2"})}
    assert not result.auto_threshold and result.threshold == 0.95 and result.linkage == "single"
    twins = groups[frozenset({"twin-a", "twin-b"})]
    assert twins.exact and twins.mean_similarity < 0.9  # linked by content hash alone
    same = groups[frozenset({"u07", "same"})]
    assert same.exact and same.mean_similarity == pytest.approx(1.0, abs=1e-5)
    assert same.representative == "same"  # ties go to the smallest id
    near = groups[frozenset({"u09", "near"})]
    assert not near.exact and 0.95 <= near.mean_similarity < 1.0
    chain = groups[frozenset({"chain0", "chain1", "chain2"})]
    assert chain.representative == "chain1" and chain.members[0] == "chain1"
    assert chain.min_similarity < chain.similarities[0] == pytest.approx(1.0)
    assert result.duplicates == 5 and [g.group for g in result.groups] == [0, 1, 2, 3]
    means = [g.mean_similarity for g in result.groups if not g.exact or g.mean_similarity > 0.9]
    assert means == sorted(means, reverse=True)
    members = read_run_table(with_copies, result.run_id, "members")
    assert members.num_rows == 9 and sum(members.column("representative").to_pylist()) == 4


@pytest.mark.parametrize("linkage", ["average", "complete"])
def test_a_chain_is_not_one_group(with_copies, linkage):
    """chain0 ~ chain1 ~ chain2 at 0.95, but chain0 and chain2 are ~0.87 apart: single linkage
    makes one group of them, average and complete linkage do not."""
    result = with_copies.near_duplicates(threshold=0.95, linkage=linkage)
    chained = [g for g in result.groups if any(m.startswith("chain") for m in g.members)]
    assert [g.size for g in chained] == [2] and "chain1" in chained[0].members
    assert all(g.min_similarity >= 0.95 for g in result.groups if not g.exact)
    # Exact duplicates are grouped whatever the linkage and threshold: the twins' vectors are
    # unrelated, and the identical vector is kept with its original.
    assert {frozenset({"twin-a", "twin-b"}), frozenset({"u07", "same"})} <= {
        frozenset(g.members) for g in with_copies.near_duplicates(threshold=0.9999,
                                                                  linkage=linkage).groups}


def test_exact_duplicates_join_a_group_whole(store):
    """A hash twin of a near copy follows it into its group, even under complete linkage, where
    the twin's own vector is far from the others."""
    rng = np.random.default_rng(2)
    base = unit(rng.normal(size=(30, DIM)))
    coll = store.create_collection("docs")
    coll.ensure_space("text", ENCODER)
    coll.upsert([Item(id=f"u{i:02d}", vectors={"text": v}) for i, v in enumerate(base)] + [
        Item(id="copy", vectors={"text": unit(base[3] + 0.02 * rng.normal(size=DIM))}, content_hash="h"),
        Item(id="u03-twin", vectors={"text": unit(rng.normal(size=DIM))}, content_hash="h"),
    ])
    result = coll.near_duplicates(threshold=0.95, linkage="complete")
    assert [set(g.members) for g in result.groups] == [{"u03", "copy", "u03-twin"}]


def planted_copies(seed: int, lean: float, noise: float, n: int = 300, copies: int = 20,
                   dim: int = 64) -> tuple[list[str], np.ndarray]:
    """``n`` items leaning ``lean`` towards one direction (0: spread out, nearest neighbours at
    cosine ~0.35; 4: all within ~0.96 of one another) and a copy of each of the first ``copies``,
    moved by ``noise`` (at the given scales, ~0.85 and ~0.9998 from its original)."""
    rng = np.random.default_rng(seed)
    hub = unit(rng.normal(size=dim))
    base = unit(lean * hub + unit(rng.normal(size=(n, dim))))
    copied = unit(base[:copies] + noise * unit(rng.normal(size=(copies, dim))))
    ids = [f"i{j:03d}" for j in range(n)] + [f"i{j:03d}-copy" for j in range(copies)]
    return ids, np.vstack([base, copied]).astype(np.float32)


@pytest.mark.parametrize(("lean", "noise"), [(0.0, 0.6), (4.0, 0.02)])
def test_auto_threshold_finds_copies_at_either_similarity_scale(store, lean, noise):
    ids, vectors = planted_copies(1, lean, noise)
    coll = store.create_collection("docs")
    coll.ensure_space("text", EncoderInfo(spec="vectors:64", modality="text", dim=64,
                                          fingerprint="synthetic-64"))
    coll.upsert(Item(id=i, vectors={"text": v}) for i, v in zip(ids, vectors, strict=True))
    planted = {frozenset({f"i{j:03d}", f"i{j:03d}-copy"}) for j in range(20)}
    result = coll.near_duplicates()
    assert result.auto_threshold and {frozenset(g.members) for g in result.groups} == planted
    cosines = vectors @ vectors.T
    np.fill_diagonal(cosines, -1)
    nearest = cosines.max(axis=1)
    assert nearest[20:300].max() < result.threshold <= nearest[300:].min()
    # One fixed cosine fits only one of the two scales: 0.95 misses the spread-out copies and
    # links half the tight items.
    fixed = {frozenset(g.members) for g in coll.near_duplicates(threshold=0.95).groups}
    assert fixed != planted
    run = get_run(coll, result.run_id)
    assert run.params["threshold"] == "auto" and run.summary["threshold"] == result.threshold


def test_duplicates_options_and_few_items(with_copies, store):
    only_chain = with_copies.near_duplicates(where={"field": "n", "op": "eq", "value": 200},
                                             linkage="single")
    assert only_chain.items == 3 and [g.size for g in only_chain.groups] == [3]
    assert only_chain.threshold == 0.95 and "too few to choose the threshold" in only_chain.warnings[0]
    with pytest.raises(InvalidInputError, match="threshold must be a cosine"):
        with_copies.near_duplicates(threshold=1.5)
    with pytest.raises(InvalidInputError, match="threshold must be a cosine"):
        with_copies.near_duplicates(threshold="high")
    with pytest.raises(InvalidInputError, match="unknown linkage 'ward'"):
        with_copies.near_duplicates(linkage="ward")


# -- CLI and HTTP ---------------------------------------------------------------------------------
@pytest.fixture
def store_dir(tmp_path):
    """A store on disk with the paired, labelled and duplicated collections of the tests above."""
    path = tmp_path / "store"
    ids, a, b = paired_vectors()
    with Store(path) as store:
        coll = store.create_collection("pics")
        coll.ensure_space("caption", ENCODER)
        coll.ensure_space("image", ENCODER)
        labels = ["hub" if i.startswith("hub") else "spread" for i in ids]
        labels[5] = "spread"  # hub005 carries the wrong label
        coll.upsert(Item(id=i, fields={"kind": lab}, vectors={"caption": va, "image": vb},
                         content_hash="dup" if i in ("spread000", "spread001") else None)
                    for i, lab, va, vb in zip(ids, labels, a, b, strict=True))
    return path


def invoke(*args: str, store) -> object:
    return runner.invoke(app, [*args, "--store", str(store), "--collection", "pics"])


def test_cli_mismatch_commands(store_dir, tmp_path):
    result = invoke("mismatch", "pairs", "--a", "caption", "--b", "image", "--json", "--limit", "4",
                    store=store_dir)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {p["id"] for p in data["pairs"]} == set(SWAPPED) and data["items"] == 120
    out = tmp_path / "pairs.parquet"
    result = invoke("mismatch", "pairs", "--a", "caption", "--b", "image", "--where", "kind = 'hub'",
                    "--method", "rank", "--out", str(out), store=store_dir)
    assert result.exit_code == 0, result.output
    assert "hub0" in result.stdout and "worst first" in result.stdout
    assert pq.read_table(out).num_rows == 59  # hub005 is labelled spread

    result = invoke("mismatch", "labels", "--label-field", "kind", "--space", "caption", "--json",
                    "--method", "knn", "--budget", "1", store=store_dir)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["flagged"] == 1
    rows = json.loads(result.stdout)["rows"]
    assert rows[0]["id"] == "hub005" and rows[0]["suggested"] == "hub" and rows[0]["flagged"]

    result = invoke("mismatch", "duplicates", "--space", "image", "--threshold", "0.99",
                    "--out", str(tmp_path / "dups.csv"), store=store_dir)
    assert result.exit_code == 0, result.output
    assert "spread000" in result.stdout and (tmp_path / "dups.csv").read_text().count("\n") == 3
    assert "threshold 0.990, given" in " ".join(result.stdout.split())  # the title may wrap
    result = invoke("mismatch", "duplicates", "--space", "image", store=store_dir)
    assert result.exit_code == 0, result.output
    assert "chosen from the data; average linkage" in " ".join(result.stdout.split())
    result = invoke("mismatch", "duplicates", "--space", "image", "--linkage", "complete", "--json",
                    store=store_dir)
    data = json.loads(result.stdout)
    assert data["auto_threshold"] and 0 < data["threshold"] < 1 and data["linkage"] == "complete"
    assert ["spread000", "spread001"] in [sorted(g["members"]) for g in data["groups"]]
    for wrong in ("high", "1.5"):
        result = invoke("mismatch", "duplicates", "--threshold", wrong, store=store_dir)
        assert result.exit_code == 2 and "threshold must be a cosine" in result.output

    result = invoke("mismatch", "labels", "--label-field", "nope", "--space", "image", store=store_dir)
    assert result.exit_code == 2 and "no field 'nope'" in result.output
    result = invoke("mismatch", "pairs", "--a", "caption", "--b", "image", "--method", "cosine",
                    store=store_dir)
    assert result.exit_code == 2 and "zscore" in result.output
    runs = invoke("runs", "--json", store=store_dir)
    assert {r["operation"] for r in json.loads(runs.stdout)} == {
        "pair_mismatch", "label_mismatch", "duplicates"}


def test_http_mismatch_routes(store_dir):
    with Store(store_dir) as store, TestClient(create_app(Settings(api_key=None), store=store)) as client:
        response = client.post("/collections/pics/mismatch/pairs",
                               json={"a": "caption", "b": "image", "limit": 4})
        assert response.status_code == 200, response.text
        body = response.json()
        assert {p["id"] for p in body["pairs"]} == set(SWAPPED) and body["items"] == 120
        response = client.post("/collections/pics/mismatch/pairs",
                               json={"a": "caption", "b": "image", "neighbours": 3})
        assert response.status_code == 200, response.text
        run = client.get(f"/collections/pics/runs/{response.json()['run_id']}").json()
        assert run["params"]["neighbours"] == 3
        response = client.post("/collections/pics/mismatch/labels", json={
            "label_field": "kind", "space": "image", "method": "knn+probe", "budget": 2,
            "filter": {"field": "kind", "op": "in", "value": ["hub", "spread"]}})
        assert response.status_code == 200, response.text
        assert response.json()["rows"][0]["id"] == "hub005"
        assert response.json()["method"] == "knn+probe" and response.json()["flagged"] == 2
        response = client.post("/collections/pics/mismatch/duplicates",
                               json={"space": "caption", "threshold": 0.99})
        assert response.status_code == 200, response.text
        assert response.json()["threshold"] == 0.99 and not response.json()["auto_threshold"]
        groups = response.json()["groups"]
        assert [sorted(g["members"]) for g in groups] == [["spread000", "spread001"]]
        assert groups[0]["exact"]
        run = client.get(f"/collections/pics/runs/{response.json()['run_id']}")
        assert run.status_code == 200 and run.json()["operation"] == "duplicates"

        assert client.post("/collections/pics/mismatch/pairs",
                           json={"a": "caption", "b": "image", "filter": "kind = 'hub'"}
                           ).status_code == 422
        assert client.post("/collections/pics/mismatch/labels",
                           json={"label_field": "nope", "space": "image"}).status_code == 404
        assert client.post("/collections/pics/mismatch/duplicates",
                           json={"threshold": 2}).status_code == 422
        assert client.post("/collections/pics/mismatch/duplicates",
                           json={"space": "caption", "linkage": "ward"}).status_code == 422
        for body in ({"space": "caption"}, {"space": "caption", "threshold": "auto"}):
            response = client.post("/collections/pics/mismatch/duplicates", json=body)
            assert response.status_code == 200, response.text
            assert response.json()["auto_threshold"] and response.json()["linkage"] == "average"
            run = client.get(f"/collections/pics/runs/{response.json()['run_id']}").json()
            assert run["summary"]["threshold"] == response.json()["threshold"]


def test_neighbour_agreement_helps_where_the_cross_space_map_is_weak():
    """Groups are tight within each space but the a → b map is weak: a caption from another group
    is told apart better by asking whether it agrees with the captions of the nearest pictures."""
    from kinsight.engine.mismatch import pair_scores

    rng = np.random.default_rng(3)
    groups, per_group, dim = 12, 20, 32
    centre_a = rng.normal(size=(groups, dim))
    centre_b = 0.25 * centre_a + rng.normal(size=(groups, dim))  # only weakly related to a's
    label = np.repeat(np.arange(groups), per_group)

    def unit(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    pool_a = unit(centre_a[label] + 0.5 * rng.normal(size=(len(label), dim)))
    pool_b = unit(centre_b[label] + 0.5 * rng.normal(size=(len(label), dim)))
    other = np.array([rng.choice(np.flatnonzero(label != g)) for g in label])
    owners = np.concatenate([np.arange(len(label)), np.arange(len(label))])
    rows_b = np.concatenate([pool_b, pool_b[other]])
    wrong = np.repeat([False, True], len(label))

    def auroc(neighbours):
        scores = pair_scores(pool_a[owners], rows_b, pool_a=pool_a, pool_b=pool_b, owners=owners,
                             k=50, neighbours=neighbours)
        return roc_auc_score(wrong, scores.score("zscore"))

    plain, helped = auroc(0), auroc(5)
    assert helped > plain + 0.03 and helped > 0.9, (plain, helped)
    with pytest.raises(InvalidInputError, match="neighbours must be"):
        pair_scores(pool_a, pool_b, neighbours=-1)


def test_the_probe_reads_other_free_text_fields_too(store):
    """The sections are told apart only by the packages' titles (the vectors are random and the
    source text is filler): label checks read the title as free text and find the three flipped
    labels; the same items without the title cannot be told apart."""
    rng = np.random.default_rng(2)
    flipped = {"p011", "p050", "p083"}
    filler = ["tool", "library", "program", "package", "utility", "helper", "daemon"]
    found = {}
    for name, with_title in (("titled", True), ("untitled", False)):
        coll = store.create_collection(name)
        coll.ensure_space("text", ENCODER, source_fields=["text"])
        items = []
        for n in range(120):
            truth = "net" if n % 2 else "sound"
            label = ({"net": "sound", "sound": "net"}[truth] if f"p{n:03d}" in flipped else truth)
            title = "tcp socket network" if truth == "net" else "audio mixer sound"
            items.append(Item(id=f"p{n:03d}", vectors={"text": unit(rng.normal(size=DIM))},
                              fields={"section": label,
                                      "text": f"{filler[n % 7]} {filler[(n * 3) % 7]}",
                                      **({"title": f"{title} {filler[n % 5]}"}
                                         if with_title else {})}))
        coll.upsert(items)
        found[name] = {i.id for i in coll.label_mismatch("section", method="probe",
                                                         budget=3).items[:3]}
    assert found["titled"] == flipped
    assert len(found["untitled"] & flipped) <= 1
