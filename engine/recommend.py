"""Recommendations: what else would this user or item like?

Examples are item ids or vectors, positive ("more like these") and negative ("less like
these"), each with an optional weight; a user's stored interactions add examples of their own
(see ``interactions``). Two strategies, as Qdrant users know them:

- ``average_vector``: one query, ``avg(pos) + (avg(pos) - avg(neg))`` (weighted averages), searched
  in the space's index like any vector query. One index call: the fastest, and the default.
- ``best_score``: candidates are gathered near every positive; each candidate is scored against
  every example, and its score is its best positive similarity when that beats its best negative
  similarity, else ``-(best negative)^2`` (Qdrant's step formula: clearly "negative" items sink).
  A weight scales an example's similarities (relative to the largest weight).

``mode``: ``hybrid`` (default) makes "more like this" of one item in a text space fuse the dense
ranking with the item's own text as a BM25 query (search's hybrid fusion: an item's words find
related packages that its vector ranks lower, 0.301 against 0.292 hit@10 on the Debian pairs of
the development split); other requests (several examples, vectors, negatives, users, best_score,
a mix of spaces, diversity) rank on vectors, as ``dense`` always does.

Examples given in the call, ``exclude`` and (unless ``include_seen``) a user's own items never
come back. ``diversity`` re-ranks the
candidates by maximal marginal relevance (0 = pure relevance, 1 = pure novelty); scores stay the
relevance, so a diverse list is not sorted by score. Items with several spaces (text and image)
can be recommended on a weighted mix of spaces: relevance and similarity are then the weighted
means over the spaces an item has. Recommendations compare items by the mean of their chunk
vectors.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

import numpy as np

from .errors import InvalidInputError, NotFoundError
from .filters import FilterInput
from .indexed_collection import IndexedCollection
from .interactions import ProfilePolicy, UserProfile, user_profiles
from .kernels import unit_rows
from .search import ById, Hit, SearchOptions, search_many
from .vectors import mean_item_vectors

__all__ = [
    "RECOMMEND_MODES",
    "Example",
    "RecommendMode",
    "RecommendOptions",
    "Strategy",
    "WeightedExample",
    "recommend",
    "recommend_users",
]

Example = str | np.ndarray  # an item id, or a vector of the space
WeightedExample = Example | tuple[Example, float]
Strategy = Literal["average_vector", "best_score"]
STRATEGIES: tuple[Strategy, ...] = ("average_vector", "best_score")
RecommendMode = Literal["hybrid", "dense"]
RECOMMEND_MODES: tuple[RecommendMode, ...] = get_args(RecommendMode)
USER_BLOCK = 512  # users whose queries go to the index in one batch


@dataclass(frozen=True)
class RecommendOptions:
    """``space``: a space name, or ``{space: weight}`` to mix several (None: the only space).
    ``candidates``: how many nearest items are re-ranked by ``best_score``, a space mix or
    diversity (default ``max(10 k, 100)``). ``include_seen`` lets a user's own items come back.
    ``mode``: see the module docstring."""

    k: int = 10
    strategy: Strategy = "average_vector"
    mode: RecommendMode = "hybrid"
    space: str | Mapping[str, float] | None = None
    where: FilterInput = None
    diversity: float = 0.0
    exclude: Sequence[str] = ()
    include_seen: bool = False
    profile: ProfilePolicy = field(default_factory=ProfilePolicy)
    candidates: int | None = None
    return_fields: Sequence[str] | None = None


@dataclass
class _Examples:
    """Examples resolved to vectors in one space: rows of ``vectors`` weighted by ``weights``."""

    vectors: np.ndarray
    weights: np.ndarray

    def average(self) -> np.ndarray:
        return np.asarray(self.weights @ self.vectors / self.weights.sum(), dtype=np.float32)


def recommend(
    collection: IndexedCollection,
    positive: Sequence[WeightedExample] = (),
    negative: Sequence[WeightedExample] = (),
    *,
    user: str | None = None,
    options: RecommendOptions | None = None,
) -> list[Hit]:
    """Items like the positives and unlike the negatives, and/or for ``user`` (from their
    interactions); best first. Raises ``NotFoundError`` for unknown example ids or a user with no
    interactions, ``InvalidInputError`` when there is no positive example at all."""
    options = options or RecommendOptions()
    _check(options)
    pos, neg = _weighted(positive, "positive"), _weighted(negative, "negative")
    missing = [e for e, _ in pos + neg if isinstance(e, str)]
    missing = sorted(set(missing) - set(collection.existing_ids(missing)))
    if missing:
        raise NotFoundError(f"no item {', '.join(map(repr, missing[:5]))}"
                            f"{' and more' if len(missing) > 5 else ''} in collection "
                            f"{collection.name!r}; examples must be ids of stored items")
    never = set(options.exclude) | {e for e, _ in pos + neg if isinstance(e, str)}
    if user is not None:
        profile = user_profiles(collection, [user], options.profile).get(user)
        if profile is None:
            raise NotFoundError(f"user {user!r} has no interactions in collection "
                                f"{collection.name!r}; add some first (add_interactions, "
                                "`kinsight interactions ingest`, or POST .../interactions)")
        pos += list(profile.positive.items())
        neg += list(profile.negative.items())
        never |= _unwanted(profile, options)
    return _recommend_one(collection, pos, neg, never, options)


def recommend_users(
    collection: IndexedCollection, users: Sequence[str] | None = None,
    options: RecommendOptions | None = None,
) -> Iterator[tuple[str, list[Hit]]]:
    """Recommendations for many users (all users with interactions when ``users`` is None), in
    batches: with ``average_vector`` on one space and no diversity, every user's query is built
    with one matrix product and searched ``USER_BLOCK`` at a time. A user with no interactions
    (or only dislikes) gets an empty list."""
    options = options or RecommendOptions()
    _check(options)
    profiles = user_profiles(collection, users, options.profile)
    wanted = list(users) if users is not None else sorted(profiles)
    fast = options.strategy == "average_vector" and options.diversity == 0 \
        and len(_spaces(collection, options.space)) == 1
    for start in range(0, len(wanted), USER_BLOCK):
        block = wanted[start:start + USER_BLOCK]
        usable = [profiles[u] for u in block if u in profiles and profiles[u].positive]
        if fast:
            found = dict(zip([p.user for p in usable], _average_vector_batch(
                collection, usable, options), strict=True))
        else:
            found = {p.user: _recommend_one(collection, list(p.positive.items()),
                                            list(p.negative.items()), _unwanted(p, options),
                                            options)
                     for p in usable}
        for user in block:
            yield user, found.get(user, [])


# -- one request ------------------------------------------------------------------------------
def _unwanted(profile: UserProfile, options: RecommendOptions) -> set[str]:
    """What a user's recommendations leave out: ``exclude``, and their own items unless
    ``include_seen``."""
    return set(options.exclude) | (set() if options.include_seen else set(profile.seen))


def _recommend_one(collection: IndexedCollection, pos: list[tuple[Example, float]],
                   neg: list[tuple[Example, float]], excluded: set[str],
                   options: RecommendOptions) -> list[Hit]:
    spaces = _spaces(collection, options.space)
    examples = {name: _resolve(collection, name, pos, neg, len(spaces)) for name in spaces}
    if not any(p is not None for p, _ in examples.values()):
        raise InvalidInputError(
            "no positive example: give at least one item id or vector to recommend from, or a "
            "user whose interactions include something other than dislikes")
    plain = options.strategy == "average_vector" and len(spaces) == 1 and options.diversity == 0
    depth = options.k if plain else options.candidates or max(10 * options.k, 100)
    search = SearchOptions(k=depth, mode="dense", where=options.where,
                           return_fields=options.return_fields if plain else ())
    if plain and options.mode == "hybrid" and _more_like_this(collection, spaces, pos, neg):
        [name] = spaces
        query = ById(str(pos[0][0]))
        return search_many(collection, [query], replace(_in_space(search, name), mode="hybrid"),
                           exclude=[excluded])[0]
    found: dict[str, float] = {}
    for name, (p, n) in examples.items():
        if p is None:
            continue
        queries = [_average_vector(p, n)] if options.strategy == "average_vector" else list(
            p.vectors)
        hit_lists = search_many(collection, queries, _in_space(search, name),
                                exclude=[excluded] * len(queries))
        if plain:
            return hit_lists[0]
        for hits in hit_lists:
            for hit in hits:
                found.setdefault(hit.id, hit.score)
    candidates = sorted(found)
    relevance, similarity = _rescore(collection, candidates, examples, spaces, options.strategy)
    order = _mmr(relevance, similarity, options.k, options.diversity)
    chosen = [candidates[i] for i in order]
    # Read after the searches: an item deleted meanwhile has no row and is left out.
    wanted = options.return_fields
    fields = collection.fields_of(chosen) if wanted != () else {
        i: {} for i in collection.existing_ids(chosen)}
    return [Hit(i, float(relevance[j]), {f: fields[i].get(f) for f in wanted}
                if wanted is not None else fields[i])
            for i, j in zip(chosen, order, strict=True) if i in fields]


def _rescore(collection: IndexedCollection, candidates: list[str],
             examples: dict[str, tuple[_Examples | None, _Examples | None]],
             spaces: dict[str, float], strategy: Strategy) -> tuple[np.ndarray, np.ndarray]:
    """Exact relevance of each candidate (weighted over spaces) and their pairwise similarity."""
    relevance = np.zeros(len(candidates))
    similarity = np.zeros((len(candidates), len(candidates)))
    weight_sum = np.zeros(len(candidates))
    pair_weight = np.zeros((len(candidates), len(candidates)))
    for name, weight in spaces.items():
        p, n = examples[name]
        if p is None:  # no example has a vector in this space: it cannot rank anything
            continue
        means = item_means(collection, name, candidates)
        rows = np.array([i for i, c in enumerate(candidates) if c in means], dtype=np.int64)
        if not len(rows):
            continue
        vectors = np.stack([means[candidates[i]] for i in rows])
        if strategy == "average_vector":
            scores = vectors @ _average_vector(p, n)
        else:
            scores = _best_score(vectors, p, n)
        relevance[rows] += weight * scores
        weight_sum[rows] += weight
        pairs = np.ix_(rows, rows)
        similarity[pairs] += weight * (vectors @ vectors.T)
        pair_weight[pairs] += weight
    relevance = np.where(weight_sum > 0, relevance / np.maximum(weight_sum, 1e-12), -np.inf)
    return relevance, similarity / np.maximum(pair_weight, 1e-12)


def _average_vector(pos: _Examples, neg: _Examples | None) -> np.ndarray:
    mean = pos.average()
    return unit_rows(mean if neg is None else mean + (mean - neg.average()))


def _best_score(vectors: np.ndarray, pos: _Examples, neg: _Examples | None) -> np.ndarray:
    best_pos = np.max((vectors @ pos.vectors.T) * (pos.weights / pos.weights.max()), axis=1)
    if neg is None:
        return best_pos
    best_neg = np.max((vectors @ neg.vectors.T) * (neg.weights / neg.weights.max()), axis=1)
    return np.where(best_pos > best_neg, best_pos, -(best_neg**2))


def _mmr(relevance: np.ndarray, similarity: np.ndarray, k: int, diversity: float) -> list[int]:
    """Greedy maximal marginal relevance (Carbonell & Goldstein, 1998): each step takes the
    candidate maximising ``(1 - diversity) * relevance - diversity * max similarity to those
    already taken``. Written here because it is a dozen lines over the similarity matrix we
    already hold; diversity 0 is plain ranking by relevance."""
    usable = np.flatnonzero(np.isfinite(relevance))
    if diversity == 0:
        return [int(i) for i in usable[np.argsort(-relevance[usable], kind="stable")][:k]]
    chosen: list[int] = []
    closest = np.full(len(relevance), -np.inf)
    remaining = set(usable.tolist())
    while remaining and len(chosen) < k:
        pool = np.fromiter(remaining, dtype=np.int64)
        penalty = np.where(np.isfinite(closest[pool]), closest[pool], 0.0)
        best = int(pool[np.argmax((1 - diversity) * relevance[pool] - diversity * penalty)])
        chosen.append(best)
        remaining.discard(best)
        closest = np.maximum(closest, similarity[best])
    return chosen


# -- many users -------------------------------------------------------------------------------
def _average_vector_batch(collection: IndexedCollection, profiles: list[UserProfile],
                          options: RecommendOptions) -> list[list[Hit]]:
    if not profiles:
        return []
    [space] = _spaces(collection, options.space)
    items = sorted({i for p in profiles for i in (*p.positive, *p.negative)})
    means = item_means(collection, space, items)
    column = {item: j for j, item in enumerate(i for i in items if i in means)}
    matrix = np.stack([means[i] for i in column]) if column else np.zeros((0, 1), np.float32)
    queries: list[np.ndarray] = []
    for profile in profiles:
        queries.append(_profile_vector(profile, column, matrix))
    search = _in_space(SearchOptions(k=options.k, mode="dense", where=options.where,
                                     return_fields=options.return_fields), space)
    exclude = [_unwanted(p, options) for p in profiles]
    live = [i for i, q in enumerate(queries) if np.any(q)]  # every example item deleted: none
    results: list[list[Hit]] = [[] for _ in profiles]
    if live:
        hits = search_many(collection, [queries[i] for i in live], search,
                           exclude=[exclude[i] for i in live])
        for i, found in zip(live, hits, strict=True):
            results[i] = found
    return results


def _profile_vector(profile: UserProfile, column: dict[str, int], matrix: np.ndarray
                    ) -> np.ndarray:
    def side(weights: dict[str, float]) -> _Examples | None:
        known = [(column[i], w) for i, w in weights.items() if i in column]
        if not known:
            return None
        rows, values = zip(*known, strict=True)
        return _Examples(matrix[list(rows)], np.asarray(values, dtype=np.float32))

    pos = side(profile.positive)
    return np.zeros(matrix.shape[1], np.float32) if pos is None else _average_vector(
        pos, side(profile.negative))


# -- helpers ----------------------------------------------------------------------------------
def item_means(collection: IndexedCollection, space: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """One vector per item (see ``vectors.mean_item_vectors``) for those of ``ids`` that have
    one in ``space``."""
    if not ids:
        return {}
    found, vectors = mean_item_vectors(collection, space, ids)
    return dict(zip(found, vectors, strict=True))


def _resolve(collection: IndexedCollection, space: str, pos: list[tuple[Example, float]],
             neg: list[tuple[Example, float]], n_spaces: int
             ) -> tuple[_Examples | None, _Examples | None]:
    """Positive and negative examples as vectors of ``space`` (read in one query); ids without a
    vector there are left out of it."""
    dim = collection.space(space).dim
    means = item_means(collection, space, [e for e, _ in pos + neg if isinstance(e, str)])

    def side(examples: list[tuple[Example, float]]) -> _Examples | None:
        rows: list[np.ndarray] = []
        weights: list[float] = []
        for example, weight in examples:
            if isinstance(example, str):
                if example not in means:
                    continue
                vector = means[example]
            else:
                vector = _example_vector(example, space, dim, n_spaces)
            rows.append(vector)
            weights.append(weight)
        if not rows:
            return None
        return _Examples(np.stack(rows).astype(np.float32), np.asarray(weights, np.float32))

    return side(pos), side(neg)


def _example_vector(example: np.ndarray, space: str, dim: int, n_spaces: int) -> np.ndarray:
    if n_spaces > 1:
        raise InvalidInputError("a vector example belongs to one space; with a mix of spaces "
                                "give item ids, or recommend on one space")
    vector = np.asarray(example, dtype=np.float32).reshape(-1)
    if vector.shape[0] != dim:
        raise InvalidInputError(f"example vector has {vector.shape[0]} dimensions; space "
                                f"{space!r} has {dim}")
    return unit_rows(vector)


def _weighted(examples: Sequence[WeightedExample], side: str) -> list[tuple[Example, float]]:
    out: list[tuple[Example, float]] = []
    for n, example in enumerate(examples, start=1):
        value, weight = example if isinstance(example, tuple) else (example, 1.0)
        if not (isinstance(value, str | np.ndarray)) or (isinstance(value, str) and not value):
            raise InvalidInputError(f"{side} example {n} must be an item id or a vector, "
                                    f"got {value!r}")
        if not np.isfinite(weight) or weight <= 0:
            raise InvalidInputError(f"{side} example {n} ({value if isinstance(value, str) else 'vector'}"
                                    f"): weight must be a positive number, got {weight!r}")
        out.append((value, float(weight)))
    return out


def _spaces(collection: IndexedCollection, space: str | Mapping[str, float] | None) -> dict[str, float]:
    if space is None or isinstance(space, str):
        return {collection.space(space).name: 1.0}
    if not space:
        raise InvalidInputError("space weights are empty; name at least one space")
    for name, weight in space.items():
        collection.space(name)  # NotFoundError names the spaces there are
        if not np.isfinite(weight) or weight <= 0:
            raise InvalidInputError(f"space {name!r}: weight must be positive, got {weight!r}")
    return dict(space)


def _more_like_this(collection: IndexedCollection, spaces: dict[str, float],
                    pos: list[tuple[Example, float]], neg: list[tuple[Example, float]]) -> bool:
    """Whether a request is "more like this one stored item" in a space with a keyword index."""
    [name] = spaces
    return len(pos) == 1 and isinstance(pos[0][0], str) and not neg \
        and collection.space(name).keyword_language is not None


def _in_space(options: SearchOptions, space: str) -> SearchOptions:
    return replace(options, space=space)


def _check(options: RecommendOptions) -> None:
    if not 1 <= options.k <= 10_000:
        raise InvalidInputError(f"k must be between 1 and 10000, got {options.k}")
    if options.strategy not in STRATEGIES:
        raise InvalidInputError(f"unknown strategy {options.strategy!r}; use one of "
                                f"{', '.join(STRATEGIES)}")
    if options.mode not in RECOMMEND_MODES:
        raise InvalidInputError(f"unknown recommendation mode {options.mode!r}; use one of "
                                f"{', '.join(RECOMMEND_MODES)}")
    if not 0.0 <= options.diversity <= 1.0:
        raise InvalidInputError(f"diversity must be between 0 and 1, got {options.diversity}")
    if options.candidates is not None and options.candidates < options.k:
        raise InvalidInputError(f"candidates ({options.candidates}) must be at least k "
                                f"({options.k})")
