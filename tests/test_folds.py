"""Folds that keep near-duplicates together: planted copies of items in other folds would leak
their labels into the out-of-fold estimate."""

from __future__ import annotations

import numpy as np
import pytest

from kinsight.engine import EncoderInfo, Item
from kinsight.engine.folds import group_folds
from kinsight.engine.head_training import HeadOptions, HeadResult, train_head
from kinsight.engine.heads import cross_validated_probe
from kinsight.engine.knn_head import KnnHead
from kinsight.engine.mismatch import LabelMismatchOptions, label_mismatch
from kinsight.engine.probes import ProbeOptions, train_probe

from .conftest import normalized

PAIRS = 60
DIM = 64
ENCODER = EncoderInfo(spec="vectors:synthetic", modality="text", dim=DIM, fingerprint="synthetic-64")


def _planted_pairs() -> tuple[np.ndarray, np.ndarray]:
    """``(vectors (2 * PAIRS, DIM), labels)``: random directions with labels that are pure noise,
    each item followed ``PAIRS`` rows later by a near copy (cosine > 0.99) with the same label."""
    rng = np.random.default_rng(0)
    base = normalized(rng.normal(size=(PAIRS, DIM)))
    copies = normalized(base + 0.01 * rng.normal(size=(PAIRS, DIM)))
    labels = rng.permutation(np.arange(PAIRS) % 2)
    return np.r_[base, copies], np.tile(labels, 2)


@pytest.fixture
def duplicated(store):
    vectors, labels = _planted_pairs()
    coll = store.create_collection("copies")
    coll.ensure_space("text", ENCODER)
    # "score": a number the vectors do not hold either (the item's pair index), copied with it.
    coll.upsert(Item(id=f"item-{n:03d}", fields={"kind": ("odd", "even")[label],
                                                 "score": float(n % PAIRS)},
                     vectors={"text": vector})
                for n, (vector, label) in enumerate(zip(vectors, labels, strict=True)))
    return coll


def _fold_of(splits: list[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    fold = np.full(n, -1)
    for number, (_, held) in enumerate(splits):
        fold[held] = number
    return fold


def test_group_folds_keep_each_group_in_one_fold_and_stratify():
    _, labels = _planted_pairs()
    pairs = np.tile(np.arange(PAIRS), 2)
    grouped = _fold_of(list(group_folds(labels, pairs, 5, seed=0)), len(labels))
    assert (grouped[:PAIRS] == grouped[PAIRS:]).all()
    assert all(abs(np.mean(labels[grouped == f]) - 0.5) < 0.1 for f in range(5))
    # Plain stratified folds (groups=None: scikit-learn's StratifiedKFold) split most pairs.
    plain = _fold_of(list(group_folds(labels, None, 5, seed=0)), len(labels))
    assert np.mean(plain[:PAIRS] != plain[PAIRS:]) > 0.5


def test_probe_accuracy_does_not_leak_through_copies(duplicated):
    result = train_probe(duplicated, "kind", ProbeOptions(lexical=False))
    assert result.fold_groups == PAIRS
    # The labels are noise: with each copy in its item's fold the probe is at chance...
    assert result.accuracy < 0.65
    # ...while plain folds let the copy in the training part give the answer away.
    vectors, labels = _planted_pairs()
    leaky, _, _ = cross_validated_probe(vectors, labels, folds=5, seed=0, regularization=None)
    assert np.mean(leaky.argmax(axis=1) == labels) > 0.7


def test_label_mismatch_reports_the_groups_it_kept_together(duplicated):
    probe = label_mismatch(duplicated, "kind", LabelMismatchOptions(lexical=False))
    assert probe.fold_groups == PAIRS
    assert label_mismatch(duplicated, "kind", LabelMismatchOptions(method="knn")).fold_groups == 0


def test_heads_of_every_kind_keep_copies_in_one_fold(duplicated):
    knn = train_head(duplicated, "kind", HeadOptions(kind="knn", neighbours=1))
    assert isinstance(knn, HeadResult) and knn.fold_groups == PAIRS
    # Noise labels: one neighbour is at chance when the copy is held out with its item...
    assert knn.metrics["accuracy"] < 0.65
    # ...and copies the answer under plain folds, where the copy is in the training part.
    vectors, labels = _planted_pairs()
    leaked = [np.mean(KnnHead(1).fit(vectors[fit], labels[fit]).predict_proba(vectors[held])
                      .argmax(axis=1) == labels[held])
              for fit, held in group_folds(labels, None, 5, seed=0)]
    assert np.mean(leaked) > 0.9
    regression = train_head(duplicated, "score", HeadOptions(lexical=False))
    assert isinstance(regression, HeadResult) and regression.kind == "regression"
    assert regression.fold_groups == PAIRS and regression.metrics["r2"] < 0.2
