"""Interactions of users with items (views, likes, purchases, dislikes), and user profiles built
from them for ``recommend(user=...)``.

Interactions live in the collection's schema as ``COLLECTION.interactions`` (user_id, item_id,
kind, weight, ts), appended in batches. They are not items: writing them leaves the collection's
generation, and so its indexes, alone.

A profile turns a user's interactions into weighted examples: each interaction counts
``kind weight x its own weight x 0.5 ** (age / half-life)``; summed per item, a positive total makes
the item a positive example and a negative one (dislikes) a negative example.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa

from .errors import InvalidInputError
from .indexed_collection import IndexedCollection
from .storage import InteractionTable

__all__ = [
    "DEFAULT_KIND_WEIGHTS",
    "Interaction",
    "ProfilePolicy",
    "UserProfile",
    "add_interactions",
    "count_interactions",
    "count_users",
    "user_profiles",
]

# Stronger signals weigh more; a dislike pushes away. Kinds not listed weigh 1 (a positive signal).
DEFAULT_KIND_WEIGHTS: Mapping[str, float] = {
    "view": 1.0, "click": 1.0, "like": 3.0, "add_to_cart": 3.0, "purchase": 5.0,
    "dislike": -3.0,
}


@dataclass(frozen=True)
class Interaction:
    """``user`` did ``kind`` to ``item`` (with a ``weight``, e.g. a rating) at ``timestamp``
    (naive times are taken as UTC; None means now)."""

    user: str
    item: str
    kind: str = "view"
    weight: float = 1.0
    timestamp: datetime | None = None


@dataclass(frozen=True)
class ProfilePolicy:
    """How interactions become examples: weights by kind and a time decay (``half_life_days``;
    None: no decay) measured back from ``now`` (None: the current time)."""

    kind_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_KIND_WEIGHTS))
    half_life_days: float | None = 30.0
    now: datetime | None = None


@dataclass(frozen=True)
class UserProfile:
    """A user's examples: item id -> weight, and every item the user has interacted with."""

    user: str
    positive: dict[str, float]
    negative: dict[str, float]
    seen: frozenset[str]


def add_interactions(collection: IndexedCollection, interactions: Iterable[Interaction]) -> int:
    """Append interactions in one transaction; returns how many. Every one is checked first, so a
    bad one (named with its position and the fix) writes none of the batch."""
    rows = [_checked(i, n) for n, i in enumerate(interactions, start=1)]
    if not rows:
        return 0
    table = pa.table({
        "user_id": pa.array([r.user for r in rows], pa.string()),
        "item_id": pa.array([r.item for r in rows], pa.string()),
        "kind": pa.array([r.kind for r in rows], pa.string()),
        "weight": pa.array([r.weight for r in rows], pa.float64()),
        "ts": pa.array([r.timestamp for r in rows], pa.timestamp("us")),
    })
    InteractionTable(collection.tables).append(table)
    return len(rows)


def count_interactions(collection: IndexedCollection) -> int:
    return InteractionTable(collection.tables).count()


def count_users(collection: IndexedCollection) -> int:
    """How many users have interactions (``user_profiles`` of every user gives this many)."""
    return InteractionTable(collection.tables).count_users()


def user_profiles(collection: IndexedCollection, users: Sequence[str] | None = None,
                  policy: ProfilePolicy | None = None) -> dict[str, UserProfile]:
    """Profiles of the given users (all users with ``None``); a user with no interactions gets
    none: the caller says so."""
    policy = policy or ProfilePolicy()
    now = _utc_naive(policy.now) if policy.now else datetime.now(timezone.utc).replace(tzinfo=None)
    rows = InteractionTable(collection.tables).weighted_totals(
        {kind: float(w) for kind, w in policy.kind_weights.items()}, now,
        None if policy.half_life_days is None else policy.half_life_days * 86400, users)
    profiles: dict[str, tuple[dict[str, float], dict[str, float], set[str]]] = {}
    for user, item, total in rows:
        positive, negative, seen = profiles.setdefault(user, ({}, {}, set()))
        seen.add(item)
        if total > 0:
            positive[item] = float(total)
        elif total < 0:
            negative[item] = float(-total)
    return {u: UserProfile(u, p, n, frozenset(s)) for u, (p, n, s) in profiles.items()}


def _checked(interaction: Interaction, position: int) -> Interaction:
    where = f"interaction {position}"
    for name in ("user", "item", "kind"):
        value = getattr(interaction, name)
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(f"{where}: {name} must be a non-empty string, got {value!r}")
    try:
        weight = float(interaction.weight)
    except (TypeError, ValueError):
        weight = math.nan
    if not math.isfinite(weight):
        raise InvalidInputError(f"{where} ({interaction.user!r}, {interaction.item!r}): weight "
                                f"must be a finite number, got {interaction.weight!r}")
    stamp = interaction.timestamp
    if stamp is not None and not isinstance(stamp, datetime):
        raise InvalidInputError(f"{where}: timestamp must be a datetime, got {stamp!r}")
    return Interaction(interaction.user.strip(), interaction.item.strip(), interaction.kind.strip(),
                       weight, _utc_naive(stamp) if stamp else
                       datetime.now(timezone.utc).replace(tzinfo=None))


def _utc_naive(stamp: datetime) -> datetime:
    """DuckDB TIMESTAMP is naive: store UTC; a naive input is taken as UTC already."""
    return stamp.astimezone(timezone.utc).replace(tzinfo=None) if stamp.tzinfo else stamp
