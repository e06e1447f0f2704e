"""Recommendations on synthetic vectors, checked against the formulas computed with numpy."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from kinsight.engine import (
    EncoderInfo,
    Interaction,
    InvalidInputError,
    Item,
    NotFoundError,
    ProfilePolicy,
    RecommendCall,
    RecommendOptions,
    recommend,
    recommend_users,
    user_profiles,
)

from .conftest import VECTOR_ENCODER, normalized

IMAGE_ENCODER = EncoderInfo(spec="vectors:image", modality="image", dim=8, fingerprint="img-8")


def ranking(vectors: np.ndarray, scores: np.ndarray, leave_out: set[int], k: int) -> list[str]:
    order = [i for i in np.argsort(-scores, kind="stable") if i not in leave_out]
    return [f"d{i}" for i in order[:k]]


def test_one_positive_is_its_nearest_items_and_never_itself(filled, vectors):
    unit = normalized(vectors)
    hits = recommend(filled, ["d7"], options=RecommendOptions(mode="dense"))
    assert [h.id for h in hits] == ranking(unit, unit @ unit[7], {7}, 10)
    assert hits[0].fields["n"] in range(300)  # fields come with the hits


def test_average_vector_follows_qdrants_formula_with_weights(filled, vectors):
    unit = normalized(vectors)
    mean_pos = (3 * unit[1] + 1 * unit[2]) / 4
    query = normalized(mean_pos + (mean_pos - (unit[3] + unit[4]) / 2))
    hits = recommend(filled, [("d1", 3.0), "d2"], ["d3", "d4"], options=RecommendOptions(k=15))
    assert [h.id for h in hits] == ranking(unit, unit @ query, {1, 2, 3, 4}, 15)
    np.testing.assert_allclose([h.score for h in hits],
                               [unit[int(h.id[1:])] @ query for h in hits], atol=1e-5)


def test_best_score_scores_each_candidate_against_every_example(filled, vectors):
    unit = normalized(vectors)
    pos, neg = unit[[10, 20]], unit[[30]]
    best_pos, best_neg = (unit @ pos.T).max(axis=1), (unit @ neg.T).max(axis=1)
    expected = np.where(best_pos > best_neg, best_pos, -(best_neg**2))
    hits = recommend(filled, ["d10", "d20"], ["d30"], options=RecommendOptions(
        k=10, strategy="best_score", candidates=300))
    assert [h.id for h in hits] == ranking(unit, expected, {10, 20, 30}, 10)
    np.testing.assert_allclose(hits[0].score, expected[int(hits[0].id[1:])], atol=1e-5)


def test_vector_examples_filters_and_exclusions(filled, vectors):
    unit = normalized(vectors)
    hits = recommend(filled, [vectors[5]], options=RecommendOptions(
        k=5, where="\"group\" = 'a'", exclude=["d5"]))
    allowed = {i for i in range(300) if i % 3 != 0 or i == 5}
    assert [h.id for h in hits] == ranking(unit, unit @ unit[5], allowed, 5)


def test_diversity_trades_relevance_for_a_less_redundant_list(store):
    rng = np.random.default_rng(1)
    base = normalized(rng.normal(size=16))
    # Ten near-copies of one direction, and ten items a little less relevant but all different.
    copies = [normalized(base + 0.05 * rng.normal(size=16)) for _ in range(10)]
    others = [normalized(base + 0.9 * normalized(rng.normal(size=16))) for _ in range(10)]
    coll = store.create_collection("c")
    from .conftest import VECTOR_ENCODER

    coll.ensure_space("text", VECTOR_ENCODER)
    coll.upsert(Item(f"x{i}", vectors={"text": v}) for i, v in enumerate(copies + others))
    coll.upsert([Item("query", vectors={"text": base})])

    def intra(hits):
        vecs = normalized(np.stack([coll.item_vectors("text", h.id)[0] for h in hits]))
        sims = vecs @ vecs.T
        return (sims.sum() - len(hits)) / (len(hits) * (len(hits) - 1))

    plain = recommend(coll, ["query"], options=RecommendOptions(k=6))
    diverse = recommend(coll, ["query"], options=RecommendOptions(k=6, diversity=0.5))
    assert all(h.id in {f"x{i}" for i in range(10)} for h in plain)
    assert intra(diverse) < intra(plain) - 0.1
    assert diverse[0].id == plain[0].id  # the most relevant item still comes first
    same = recommend(coll, ["query"], options=RecommendOptions(k=6, diversity=0.0,
                                                               candidates=20))
    assert [h.id for h in same] == [h.id for h in plain]


def test_a_weighted_mix_of_spaces(store):
    rng = np.random.default_rng(2)
    text, image = normalized(rng.normal(size=(50, 16))), normalized(rng.normal(size=(50, 8)))
    from .conftest import VECTOR_ENCODER

    coll = store.create_collection("multi")
    coll.ensure_space("text", VECTOR_ENCODER)
    coll.ensure_space("image", IMAGE_ENCODER)
    coll.upsert(Item(f"d{i}", vectors={"text": text[i], "image": image[i]}) for i in range(50))
    expected = (2 * (text @ text[0]) + 1 * (image @ image[0])) / 3
    hits = recommend(coll, ["d0"], options=RecommendOptions(
        k=8, space={"text": 2.0, "image": 1.0}, candidates=50))
    assert [h.id for h in hits] == ranking(text, expected, {0}, 8)
    with pytest.raises(InvalidInputError, match="vector example belongs to one space"):
        recommend(coll, [text[0]], options=RecommendOptions(space={"text": 1, "image": 1}))
    with pytest.raises(NotFoundError, match="no vector space 'audio'"):
        recommend(coll, ["d0"], options=RecommendOptions(space={"audio": 1.0}))


def test_user_profiles_weigh_kinds_decay_with_time_and_treat_dislikes_as_negatives(filled):
    now = datetime(2026, 1, 31)
    filled.add_interactions([
        Interaction("ann", "d1", "like", timestamp=now),
        Interaction("ann", "d2", "view", timestamp=now - timedelta(days=30)),
        Interaction("ann", "d3", "dislike", timestamp=now),
        Interaction("bob", "d4", "purchase", weight=2.0, timestamp=now),
    ])
    profiles = user_profiles(filled, policy=ProfilePolicy(now=now))
    ann = profiles["ann"]
    assert ann.positive == pytest.approx({"d1": 3.0, "d2": 0.5})  # a view, one half-life old
    assert ann.negative == pytest.approx({"d3": 3.0})
    assert ann.seen == {"d1", "d2", "d3"} and profiles["bob"].positive == {"d4": 10.0}
    no_decay = user_profiles(filled, ["ann"], ProfilePolicy(now=now, half_life_days=None))
    assert no_decay["ann"].positive["d2"] == 1.0


def test_recommend_for_a_user_excludes_what_they_have(filled, vectors):
    unit = normalized(vectors)
    filled.add_interactions([Interaction("ann", "d1", "like"), Interaction("ann", "d2", "view"),
                             Interaction("ann", "d3", "dislike")])
    hits = recommend(filled, user="ann", options=RecommendOptions(
        k=10, profile=ProfilePolicy(half_life_days=None)))
    mean_pos = (3 * unit[1] + unit[2]) / 4
    query = normalized(2 * mean_pos - unit[3])
    assert [h.id for h in hits] == ranking(unit, unit @ query, {1, 2, 3}, 10)
    with_seen = recommend(filled, ["d1"], options=RecommendOptions(k=300, include_seen=True))
    assert "d2" in {h.id for h in with_seen}  # without a user, nothing is "seen"


def test_batch_matches_one_call_per_user(filled):
    rng = np.random.default_rng(3)
    filled.add_interactions(
        Interaction(f"u{u}", f"d{i}", str(rng.choice(["view", "like", "dislike"])))
        for u in range(40) for i in rng.choice(300, 6, replace=False))
    options = RecommendOptions(k=7, return_fields=())
    batch = dict(recommend_users(filled, options=options))
    assert len(batch) == 40
    for user in ("u0", "u17", "u39"):
        single = recommend(filled, user=user, options=options)
        assert [h.id for h in batch[user]] == [h.id for h in single]
        np.testing.assert_allclose([h.score for h in batch[user]], [h.score for h in single],
                                   atol=1e-5)
    asked = dict(recommend_users(filled, ["u1", "nobody"], options))
    assert asked["nobody"] == [] and len(asked["u1"]) == 7
    diverse = dict(recommend_users(filled, ["u2"], RecommendOptions(k=5, diversity=0.3)))
    assert len(diverse["u2"]) == 5


def test_errors_name_the_problem(filled):
    with pytest.raises(NotFoundError, match="no item 'nope'"):
        recommend(filled, ["d1", "nope"])
    with pytest.raises(InvalidInputError, match="no positive example"):
        recommend(filled, [], ["d1"])
    with pytest.raises(NotFoundError, match="user 'zed' has no interactions"):
        recommend(filled, user="zed")
    with pytest.raises(InvalidInputError, match="k must be between"):
        recommend(filled, ["d1"], options=RecommendOptions(k=0))
    with pytest.raises(InvalidInputError, match="diversity must be between 0 and 1"):
        recommend(filled, ["d1"], options=RecommendOptions(diversity=1.5))
    with pytest.raises(InvalidInputError, match="unknown strategy"):
        recommend(filled, ["d1"], options=RecommendOptions(strategy="magic"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="example vector has 3 dimensions"):
        recommend(filled, [np.ones(3)])
    with pytest.raises(InvalidInputError, match="weight must be a positive number"):
        recommend(filled, [("d1", -1.0)])
    filled.add_interactions([Interaction("hater", "d1", "dislike")])
    with pytest.raises(InvalidInputError, match="no positive example"):
        recommend(filled, user="hater")
    with pytest.raises(InvalidInputError, match="interaction 2: user must be a non-empty"):
        filled.add_interactions([Interaction("a", "d1"), Interaction(" ", "d1")])
    with pytest.raises(InvalidInputError, match="weight must be a finite number"):
        filled.add_interactions([Interaction("a", "d1", weight=float("nan"))])


def test_more_like_one_text_item_fuses_its_words_by_default(store, vectors):
    """The item whose text shares the positive's rare words comes back in hybrid mode though its
    vector is the farthest; dense mode, several examples and a picture space rank on vectors."""
    docs = store.create_collection("docs")
    docs.ensure_space("text", VECTOR_ENCODER, source_fields=["text"])
    unit = normalized(vectors[:100])
    by_vector = np.argsort(-(unit @ unit[0]))  # d0 itself first
    wordy = {int(i): " zanzibar" * n for n, i in enumerate(by_vector[40:45])}  # far, same words
    docs.upsert(Item(id=f"d{i}", fields={"text": "zanzibar quokka" + wordy[i] if i in wordy
                                         else "zanzibar quokka" if i == 0 else f"plain item {i}"},
                     vectors={"text": unit[i]}) for i in range(100))
    hybrid = [h.id for h in recommend(docs, ["d0"])]
    dense = [h.id for h in recommend(docs, ["d0"], options=RecommendOptions(mode="dense"))]
    assert {f"d{i}" for i in wordy} & set(hybrid) and not {f"d{i}" for i in wordy} & set(dense)
    assert "d0" not in hybrid
    assert dense == ranking(unit, unit @ unit[0], {0}, 10)
    two = [h.id for h in recommend(docs, ["d0", "d1"])]
    assert two == ranking(unit, unit @ normalized(unit[0] + unit[1]), {0, 1}, 10)
    batch = docs.recommend_batch([RecommendCall(["d0"]), RecommendCall(["d0"], options=
                                                                       RecommendOptions(mode="dense"))])
    assert [h.id for h in batch[0]] == hybrid and [h.id for h in batch[1]] == dense
    with pytest.raises(InvalidInputError, match="unknown recommendation mode"):
        recommend(docs, ["d0"], options=RecommendOptions(mode="bm25"))  # type: ignore[arg-type]
