"""Batches of searches and recommendations, each call with its own options.

A service answers many queries per request (Qdrant's ``search_batch``): ``search_batch`` groups the
calls that can share one encoder batch and one index call (the same options but for ``k``, and the
same kind of query, so that mode ``auto`` resolves alike) and runs each group through
``search_many``. Answers come back in the order asked; a call that fails (an unknown space, item or
field, a vector of the wrong length) gets its error in its place, and the others their hits: a
group that fails is run again one call at a time, so one bad query cannot fail its neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .errors import KinsightError
from .indexed_collection import IndexedCollection
from .recommend import RecommendOptions, WeightedExample, recommend
from .search import ById, Hit, Query, SearchOptions, search, search_many

__all__ = ["Answer", "RecommendCall", "SearchCall", "recommend_batch", "search_batch"]

# The hits of one call of a batch, or the error that call raised.
Answer = list[Hit] | KinsightError


@dataclass(frozen=True)
class SearchCall:
    """One search of a batch: a query (text, vector or ``ById``) and its options."""

    query: Query
    options: SearchOptions = field(default_factory=SearchOptions)


@dataclass(frozen=True)
class RecommendCall:
    """One recommendation of a batch: the arguments of ``engine.recommend``."""

    positive: Sequence[WeightedExample] = ()
    negative: Sequence[WeightedExample] = ()
    options: RecommendOptions = field(default_factory=RecommendOptions)
    user: str | None = None


def search_batch(collection: IndexedCollection, calls: Sequence[SearchCall]) -> list[Answer]:
    """One answer per call, in order: its hits, or the ``KinsightError`` it raised."""
    groups: list[tuple[tuple[SearchOptions, str], list[int]]] = []
    for position, call in enumerate(calls):
        key = (_shared(call.options), _kind(call.query))
        for known, members in groups:  # options hold filters, which need not hash: compare
            if known == key:
                members.append(position)
                break
        else:
            groups.append((key, [position]))
    answers: list[Answer | None] = [None] * len(calls)
    for (options, _), members in groups:
        deepest = max(calls[i].options.k for i in members)
        found: Sequence[Answer]
        try:
            found = search_many(collection, [calls[i].query for i in members],
                                replace(options, k=deepest))
        except KinsightError:  # find which calls fail: each one alone
            found = [_alone(collection, calls[i]) for i in members]
        for i, hits in zip(members, found, strict=True):
            answers[i] = hits[: calls[i].options.k] if isinstance(hits, list) else hits
    return [answer for answer in answers if answer is not None]


def recommend_batch(collection: IndexedCollection, calls: Sequence[RecommendCall]
                    ) -> list[Answer]:
    """One answer per call, in order: its hits, or the ``KinsightError`` it raised. Each call
    runs on its own: recommendations encode nothing, and their examples and exclusions differ
    per call (``recommend_users`` batches the many-users case)."""
    answers: list[Answer] = []
    for call in calls:
        try:
            answers.append(recommend(collection, call.positive, call.negative, user=call.user,
                                     options=call.options))
        except KinsightError as error:
            answers.append(error)
    return answers


def _shared(options: SearchOptions) -> SearchOptions:
    """The options with ``k`` left out where the first ``k`` hits of a deeper search are the
    hits of this one: not for mean aggregation (it re-ranks only the candidates it is given),
    nor past hybrid's fusion depth (a deeper search fuses deeper lists)."""
    if options.aggregate == "mean" or options.k > options.fusion.depth:
        return options
    return replace(options, k=1)


def _kind(query: Query) -> str:
    """What ``resolve_mode`` looks at in a query: texts, vectors, or items of a given space."""
    if isinstance(query, ById):
        return f"id:{query.space}"
    return "text" if isinstance(query, str) else "vector"


def _alone(collection: IndexedCollection, call: SearchCall) -> Answer:
    try:
        return search(collection, call.query, call.options)
    except KinsightError as error:
        return error
