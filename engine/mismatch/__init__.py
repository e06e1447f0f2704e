"""Mismatch: what does not agree with its partner?

- ``pair_mismatch``: an item's two spaces (a picture and its caption, a title and its body) scored
  against impostor pairs, so scores compare across items (``pairs``).
- ``label_mismatch``: items whose label disagrees with their nearest neighbours' labels, and
  optionally with a cross-validated linear probe (``labels``).
- ``near_duplicates``: groups of exact and near copies, each with a representative (``duplicates``).

Each saves its run (``engine.runs``) as DuckDB tables: ``COLLECTION.pair_mismatch_scores``,
``COLLECTION.label_mismatch_items``, ``COLLECTION.duplicates_groups`` and
``COLLECTION.duplicates_members``, worst (or closest) first.
"""

from __future__ import annotations

from .duplicates import (
    DuplicateGroup,
    DuplicateOptions,
    DuplicatesResult,
    Linkage,
    near_duplicates,
)
from .labels import LabelMismatch, LabelMismatchOptions, LabelMismatchResult, label_mismatch
from .pairs import (
    ImpostorKind,
    PairMethod,
    PairMismatch,
    PairMismatchOptions,
    PairMismatchResult,
    PairScores,
    check_shared_space,
    pair_mismatch,
    pair_scores,
)

__all__ = [
    "DuplicateGroup",
    "DuplicateOptions",
    "DuplicatesResult",
    "ImpostorKind",
    "LabelMismatch",
    "LabelMismatchOptions",
    "LabelMismatchResult",
    "Linkage",
    "PairMethod",
    "PairMismatch",
    "PairMismatchOptions",
    "PairMismatchResult",
    "PairScores",
    "check_shared_space",
    "label_mismatch",
    "near_duplicates",
    "pair_mismatch",
    "pair_scores",
]
