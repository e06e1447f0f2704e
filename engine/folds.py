"""Cross-validation folds that keep near-duplicates together.

A probe judged on a fold whose items have copies in its training part is judged on what it has
memorised: the copy's label leaks into the estimate (and, for label checks, a flipped label's copy
vouches for it). So items that are near-duplicates of one another share a **fold group**, found as
``mismatch.duplicate_groups`` finds them (the same content hash, identical vectors, or the cosine of
their unit vectors at least ``FOLD_GROUP_SIMILARITY`` by an exact FAISS range search, single
linkage), and each group goes to one fold: scikit-learn's ``StratifiedKFold`` splits one item per
group (its first), and the other members follow it. Without near-duplicates these are exactly
``StratifiedKFold``'s folds. (``StratifiedGroupKFold`` balances the labels of whole groups, but by a
Python loop over groups x folds: 10 s for 10,000 items here, against milliseconds; the groups are
mostly pairs of one label, so stratifying their first items keeps the labels' shares as well.)

``FOLD_GROUP_SIMILARITY`` is 0.98, above the near-duplicate default (0.95): only re-encodings and
copies with a word changed, not two packages of one family that a probe should tell apart.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InvalidInputError
from .indexed_collection import IndexedCollection

__all__ = ["FOLD_GROUP_SIMILARITY", "FoldGroups", "fold_groups", "group_folds"]

FOLD_GROUP_SIMILARITY = 0.98


@dataclass(frozen=True)
class FoldGroups:
    """``codes`` ``(n,)`` int: the fold group of each item (items of one code share a fold);
    ``merged``: how many groups of two or more items there are, ``items_merged`` the items in them."""

    codes: np.ndarray
    merged: int
    items_merged: int


def fold_groups(collection: IndexedCollection, ids: Sequence[str], vectors: np.ndarray,
                threshold: float = FOLD_GROUP_SIMILARITY) -> FoldGroups:
    """The fold groups of the items ``ids`` of ``collection`` with unit ``vectors`` ``(n, d)`` (and
    their stored content hashes); an item with no near-duplicate is a group of its own."""
    # Imported here: mismatch.labels imports heads, which imports this module.
    from .mismatch.duplicates import duplicate_groups

    position = {item_id: n for n, item_id in enumerate(ids)}
    codes = np.arange(len(ids))
    hashes = collection.content_hashes(ids)
    # Single linkage: a leak runs along any chain of copies, so a whole chain shares one fold
    # (and it has no size limit, where average linkage refuses components of 5,000 items).
    groups = duplicate_groups(list(ids), vectors, [hashes.get(i) for i in ids], threshold,
                              linkage="single")
    for group in groups:
        members = [position[m] for m in group.members]
        codes[members] = min(members)
    return FoldGroups(codes, len(groups), sum(g.size for g in groups))


def group_folds(y: np.ndarray | None, groups: np.ndarray | None, folds: int, seed: int
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(training rows, held-out rows)`` of each of ``folds`` shuffled (``seed``) folds of the
    items, stratified by labels ``y`` ``(n,)``; with ``groups`` ``(n,)`` (any codes), the items of
    one group are in one fold. ``groups=None``: every item is its own group (``StratifiedKFold``);
    ``y=None``: not stratified (``KFold`` over the groups: numbers, sets of labels), ``groups``
    needed."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if groups is None:
        if y is None:
            raise InvalidInputError("group_folds needs labels y or groups to know the items")
        groups = np.arange(len(y))
    _, first, group = np.unique(groups, return_index=True, return_inverse=True)
    if len(first) < folds:
        raise InvalidInputError(
            f"{folds}-fold cross-validation needs {folds} groups of distinct items; these "
            f"{len(groups)} items form {len(first)} (near-duplicates share a fold): lower folds or "
            "add distinct items")
    # Stratifying needs a label with a group in every fold; groups of mixed labels may leave none.
    stratified = y is not None and np.unique(y[first], return_counts=True)[1].max() >= folds
    splitter = (StratifiedKFold if stratified else KFold)(folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # A label with fewer groups than folds is spread as far as it goes, which is what the
        # callers want (their reports count such labels); scikit-learn warns on stderr about it.
        warnings.filterwarnings("ignore", message="The least populated class in y",
                                category=UserWarning)
        splits = list(splitter.split(first, None if y is None else y[first]))
    for _, held_groups in splits:
        held = np.isin(group.ravel(), held_groups)
        yield np.flatnonzero(~held), np.flatnonzero(held)
