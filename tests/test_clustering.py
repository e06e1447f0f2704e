"""Clustering on synthetic vectors with known groups, and on fake-encoder text with known topics."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from kinsight.engine import EncoderInfo, InvalidInputError, Item, NotFoundError, load_encoder
from kinsight.engine.clustering import NOISE, read_cluster_run
from kinsight.engine.vectors import mean_item_vectors

ENCODER = EncoderInfo(spec="vectors:synthetic", modality="text", dim=16, fingerprint="synthetic-16")
TOPICS = {
    "music": "guitar piano violin drums concert melody",
    "code": "python rust compiler debugger syntax library",
    "sport": "football tennis golf stadium match referee",
    "food": "bread cheese wine recipe kitchen oven",
}


def blobs(n_groups: int = 4, per_group: int = 40, *, spread: float = 0.15, seed: int = 0
          ) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated groups on the sphere: random unit centres, members a small step away."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, ENCODER.dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(n_groups), per_group)
    return (centres[truth] + spread * rng.normal(size=(len(truth), ENCODER.dim))).astype(
        np.float32), truth


@pytest.fixture
def grouped(store):
    """160 items in 4 groups; each group's text uses its own topic's words."""
    vectors, truth = blobs()
    topics = list(TOPICS.values())
    coll = store.create_collection("docs")
    coll.ensure_space("text", ENCODER, source_fields=["text"])
    rng = np.random.default_rng(1)
    coll.upsert(Item(id=f"i{n:03d}", vectors={"text": v}, fields={
        "text": " ".join(rng.choice(topics[g].split(), 4)) + " and the usual words",
        "group": int(g), "half": n % 2}) for n, (v, g) in enumerate(zip(vectors, truth, strict=True)))
    return coll, truth


def test_kmeans_recovers_the_groups_and_names_them_by_their_words(grouped):
    coll, truth = grouped
    result = coll.cluster(k=4)
    found = np.array([a.cluster for a in result.assignments])  # ids sort as the groups were made
    assert adjusted_rand_score(truth, found) == 1.0
    assert [c.size for c in result.clusters] == [40, 40, 40, 40]
    assert result.noise == 0 and result.k_scores == {} and result.chosen_k is None
    for c in result.clusters:
        group = coll.fields_of([c.representatives[0]])[c.representatives[0]]["group"]
        topic_words = set(list(TOPICS.values())[group].split())
        assert set(c.name.split(", ")) <= topic_words, c  # shared words ("usual") rank below
        assert "the" not in c.terms and "and" not in c.terms  # stop words are dropped
        members = [a for a in result.assignments if a.cluster == c.cluster]
        assert c.cohesion == pytest.approx(np.mean([a.similarity for a in members]), abs=1e-5)
        assert c.cohesion > 0.8 and len(c.representatives) == 5
        best = max(members, key=lambda a: a.similarity or 0)
        assert c.representatives[0] == best.id
    assert result.coordinates.shape == (160, 2)


def test_auto_k_picks_the_true_number_of_groups(store):
    vectors, _ = blobs(n_groups=6, per_group=30, seed=3)
    coll = store.create_collection("six")
    coll.ensure_space("v", ENCODER)
    coll.upsert(Item(id=f"x{i}", vectors={"v": v}) for i, v in enumerate(vectors))
    result = coll.cluster(k="auto", k_range=(2, 12))
    assert result.chosen_k == 6 and len(result.clusters) == 6
    assert result.criterion == "silhouette" and sorted(result.k_scores) == list(range(2, 13))
    # A space without source fields has no text: clusters get numbered names.
    assert result.clusters[0].name == "cluster 0" and result.clusters[0].terms == ()


def test_auto_k_goes_past_a_grid_that_stops_too_soon(store):
    vectors, _ = blobs(n_groups=9, per_group=30, seed=4)
    coll = store.create_collection("nine")
    coll.ensure_space("v", ENCODER)
    coll.upsert(Item(id=f"x{i}", vectors={"v": v}) for i, v in enumerate(vectors))
    result = coll.cluster(k="auto", k_range=(2, 6))
    assert sorted(result.k_scores)[:5] == [2, 3, 4, 5, 6] and max(result.k_scores) > 6
    assert result.chosen_k == 9 and len(result.clusters) == 9


def test_hdbscan_leaves_scattered_items_out_as_noise(store):
    vectors, truth = blobs(n_groups=3, per_group=40, spread=0.05, seed=5)
    scattered = np.random.default_rng(9).normal(size=(12, ENCODER.dim)).astype(np.float32)
    coll = store.create_collection("dense")
    coll.ensure_space("v", ENCODER)
    coll.upsert([Item(id=f"g{i:03d}", vectors={"v": v}) for i, v in enumerate(vectors)]
                + [Item(id=f"s{i:02d}", vectors={"v": v}) for i, v in enumerate(scattered)])
    result = coll.cluster(method="hdbscan", min_cluster_size=10)
    by_id = {a.id: a for a in result.assignments}
    assert len(result.clusters) == 3
    grouped = np.array([by_id[f"g{i:03d}"].cluster for i in range(len(vectors))])
    assert adjusted_rand_score(truth, grouped) == 1.0
    noise = [a for a in result.assignments if a.cluster == NOISE]
    assert result.noise == len(noise) >= 10 and all(a.id.startswith("s") for a in noise)
    assert all(a.similarity is None for a in noise)
    assert sum(c.size for c in result.clusters) + result.noise == len(result.assignments)


def test_hdbscan_default_finds_each_of_twenty_topics(store):
    """20 topics in 128 dimensions, 60 items each: reduced to 16 dimensions with min_samples at
    the group size, the default merged two of them (19 clusters, 3% noise); it finds the 20."""
    rng = np.random.default_rng(0)
    dim, per_topic = 128, 60
    topics = rng.normal(size=(20, dim))
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    truth = np.repeat(np.arange(20), per_topic)
    vectors = topics[truth] + 1.5 * rng.normal(size=(len(truth), dim)) / np.sqrt(dim)
    coll = store.create_collection("topics")
    coll.ensure_space("v", EncoderInfo(spec="vectors:synthetic-128", modality="text", dim=dim,
                                       fingerprint="synthetic-128"))
    coll.upsert(Item(id=f"x{i:04d}", vectors={"v": v.astype(np.float32)})
                for i, v in enumerate(vectors))
    result = coll.cluster(method="hdbscan")
    labels = np.array([a.cluster for a in sorted(result.assignments, key=lambda a: a.id)])
    assert len(result.clusters) == 20
    assert result.noise <= 0.02 * len(truth)
    assert adjusted_rand_score(truth[labels != NOISE], labels[labels != NOISE]) > 0.99


def test_label_prompts_name_text_clusters_with_the_fake_encoder(store):
    encoder = load_encoder("fake:dim=256")
    coll = store.create_collection("texts")
    coll.ensure_space("text", encoder.info, source_fields=["text"])
    rng = np.random.default_rng(2)
    texts = {f"{topic}{i}": " ".join(rng.choice(words.split(), 4))
             for topic, words in TOPICS.items() for i in range(15)}
    vectors = encoder.encode(list(texts.values()))
    coll.upsert(Item(id=i, fields={"text": t}, vectors={"text": v})
                for (i, t), v in zip(texts.items(), vectors, strict=True))
    prompts = ["a concert with guitar and piano", "python compiler and debugger",
               "a football match in a stadium", "bread and cheese from the oven"]
    result = coll.cluster(k=4, label_prompts=prompts)
    for c in result.clusters:
        topic = c.representatives[0].rstrip("0123456789")
        assert c.label == prompts[list(TOPICS).index(topic)], c
        assert c.label_score is not None and c.label_score > 0.2


def test_filter_restricts_the_items_clustered(grouped):
    coll, _ = grouped
    result = coll.cluster(k=4, where={"field": "half", "op": "eq", "value": 0})
    assert len(result.assignments) == 80
    assert all(int(a.id[1:]) % 2 == 0 for a in result.assignments)
    assert read_cluster_run(coll).assignments == result.assignments


def test_run_tables_are_queryable_with_sql(grouped):
    coll, _ = grouped
    result = coll.cluster(k=4)
    rows = coll.store.cursor().execute(
        "SELECT c.name, min(i.\"group\"), max(i.\"group\"), count(*) FROM docs.cluster_assignments a "
        "JOIN docs.cluster_clusters c USING (run_id, cluster) JOIN docs.items i USING (id) "
        "WHERE a.run_id = ? GROUP BY c.name ORDER BY c.name", [result.run_id]).fetchall()
    assert len(rows) == 4 and all(lo == hi and n == 40 for _, lo, hi, n in rows)
    back = read_cluster_run(coll, result.run_id)
    assert back.clusters == result.clusters and back.assignments == result.assignments
    np.testing.assert_allclose(back.coordinates, result.coordinates)


def test_mean_item_vectors_average_an_items_chunks(store):
    coll = store.create_collection("chunks")
    coll.ensure_space("v", ENCODER)
    a, b = np.eye(16, dtype=np.float32)[:2]
    coll.upsert([Item(id="two", vectors={"v": np.stack([a, b])}), Item(id="one", vectors={"v": a})])
    ids, vectors = mean_item_vectors(coll, "v")
    assert ids == ["one", "two"]
    np.testing.assert_allclose(vectors[1], (a + b) / np.sqrt(2), atol=1e-6)


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"k": 500}, InvalidInputError, "k=500 is more than the 160 items"),
    ({"space": "image"}, NotFoundError, "no vector space 'image'"),
    ({"name_field": "title"}, NotFoundError, "no field 'title'"),
    ({"where": "\"group\" > 10"}, InvalidInputError, "the filter selects no items"),
    ({"k": "auto", "k_range": (5, 3)}, InvalidInputError, "k_range must be"),
    ({"method": "dbscan"}, InvalidInputError, "unknown clustering method"),
    ({"projection": "umap"}, InvalidInputError, "umap-learn"),
])
def test_errors_say_what_to_change(grouped, options, error, message):
    coll, _ = grouped
    if options.get("projection") == "umap" and importlib.util.find_spec("umap"):
        pytest.skip("umap is installed: the message for a missing one cannot show")
    with pytest.raises(error, match=message):
        coll.cluster(**{"k": 4, **options})


def test_hdbscan_groups_larger_than_the_selection_are_refused(grouped):
    with pytest.raises(InvalidInputError, match="more than the 160 items selected"):
        grouped[0].cluster(method="hdbscan", min_cluster_size=161)


def test_the_words_of_a_text_space_join_its_vectors(store):
    """Vectors that blur two topics together (each pair of topics shares one blob) are told apart
    by the items' words at the default lexical weight, and not with the vectors alone."""
    vectors, blob = blobs(n_groups=2, per_group=80)
    topic = np.tile(np.repeat([0, 1], 40), 2) + 2 * blob  # 4 topics, 2 per blob
    coll = store.create_collection("docs")
    coll.ensure_space("text", ENCODER, source_fields=["text"])
    rng = np.random.default_rng(2)
    topics = list(TOPICS.values())
    coll.upsert(Item(id=f"i{n:03d}", vectors={"text": v}, fields={
        "text": " ".join(rng.choice(topics[t].split(), 4))})
        for n, (v, t) in enumerate(zip(vectors, topic, strict=True)))
    ids = sorted(f"i{n:03d}" for n in range(len(topic)))
    truth = topic[[int(i[1:]) for i in ids]]

    def agreement(**options) -> float:
        by_id = {a.id: a.cluster for a in coll.cluster(k=4, **options).assignments}
        return adjusted_rand_score(truth, [by_id[i] for i in ids])

    assert agreement() > 0.9
    assert agreement(lexical_weight=0) < 0.7


def test_clusters_of_clusters_follow_their_centroids(store):
    """Six tight groups around two far-apart centres: the clusters fall into two groups, each
    holding the clusters around one centre (k-means may merge or split the tight groups)."""
    from kinsight.engine import cluster_groups

    rng = np.random.default_rng(5)
    poles = np.eye(ENCODER.dim)[:2] * 5
    centres = np.repeat(poles, 3, axis=0) + 0.7 * rng.normal(size=(6, ENCODER.dim))
    truth = np.repeat(np.arange(6), 25)
    vectors = (centres[truth] + 0.1 * rng.normal(size=(150, ENCODER.dim))).astype(np.float32)
    coll = store.create_collection("six")
    coll.ensure_space("v", ENCODER)
    coll.upsert(Item(id=f"x{i:03d}", vectors={"v": v}) for i, v in enumerate(vectors))
    result = coll.cluster(k=6)
    groups = cluster_groups(coll, result, groups=2)
    assert len(groups) == 2 and sorted(c for g in groups for c in g.clusters) == list(range(6))
    pole_of = {}
    for a in result.assignments:
        pole_of.setdefault(a.cluster, set()).add(int(a.id[1:]) // 75)
    assert sorted({p for c in g.clusters for p in pole_of[c]}.pop() for g in groups) == [0, 1]
    for g in groups:
        assert len({p for c in g.clusters for p in pole_of[c]}) == 1
    assert sum(g.size for g in groups) == 150
    assert cluster_groups(coll, coll.cluster(k=2)) == []
