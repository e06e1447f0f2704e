"""Recommendations (more like these items, or for a user) and the interactions they learn from."""

from __future__ import annotations

import time

import numpy as np
from fastapi import APIRouter

from kinsight.engine import (
    Interaction,
    InvalidInputError,
    ProfilePolicy,
    RecommendCall,
    RecommendOptions,
    WeightedExample,
)

from .deps import CollectionDep, SettingsDep, WriteLockDep
from .models import BatchResponse, ErrorOut
from .models_recommend import (
    ExampleIn,
    InteractionsRequest,
    InteractionsResponse,
    RecommendBatchRequest,
    RecommendRequest,
    RecommendResponse,
)
from .routes_search import batch_answer, check_batch_size, hit_out

__all__ = ["router"]

router = APIRouter(prefix="/collections/{name}", tags=["recommend"],
                   responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}})


@router.post("/recommend", summary="Items like the positive examples, unlike the negative ones, "
                                   "or for a user")
def recommend_items(body: RecommendRequest, collection: CollectionDep) -> RecommendResponse:
    """Examples are item ids, vectors or ``{id|vector, weight}``; they never come back, nor do a
    user's own items (unless ``include_seen``). Unknown ids and users with no interactions are
    404s; no positive example at all is a 422."""
    started = time.perf_counter()
    call = _recommend_call(body)
    hits = collection.recommend(call.positive, call.negative, call.options, user=call.user)
    return RecommendResponse(hits=[hit_out(h) for h in hits],
                             took_ms=(time.perf_counter() - started) * 1000)


@router.post("/recommend/batch", summary="Many recommendations in one call")
def recommend_batch(body: RecommendBatchRequest, collection: CollectionDep,
                    settings: SettingsDep) -> BatchResponse:
    """Answers come in the order asked; a request that fails (an unknown item or user, no
    positive example) gets its error and status in its place while the others get their hits."""
    check_batch_size(len(body.requests), settings, "requests")
    started = time.perf_counter()
    answers = collection.recommend_batch([_recommend_call(r) for r in body.requests])
    out = [batch_answer(answer) for answer in answers]
    return BatchResponse(answers=out, took_ms=(time.perf_counter() - started) * 1000)


def _recommend_call(body: RecommendRequest) -> RecommendCall:
    options = RecommendOptions(
        k=body.k, strategy=body.strategy, mode=body.mode, diversity=body.diversity,
        space=body.spaces if body.spaces is not None else body.space, where=body.filter,
        exclude=body.exclude, include_seen=body.include_seen, return_fields=body.fields,
        profile=ProfilePolicy(half_life_days=body.half_life_days))
    return RecommendCall([_example(e) for e in body.positive],
                         [_example(e) for e in body.negative], options, body.user)


@router.post("/interactions", summary="Append user interactions (views, likes, dislikes, ...)")
def add_interactions(body: InteractionsRequest, collection: CollectionDep, settings: SettingsDep,
                     write_lock: WriteLockDep) -> InteractionsResponse:
    """All or none: one bad interaction (named by its position) writes none of the batch."""
    if len(body.interactions) > settings.max_batch_items:
        raise InvalidInputError(
            f"{len(body.interactions)} interactions in one request; the most is "
            f"{settings.max_batch_items} (max_batch_items): split the batch")
    with write_lock:
        written = collection.add_interactions(
            Interaction(i.user, i.item, i.kind, i.weight, i.timestamp) for i in body.interactions)
    return InteractionsResponse(written=written)


def _example(example: str | list[float] | ExampleIn) -> WeightedExample:
    if isinstance(example, str):
        return example
    if isinstance(example, list):
        return np.asarray(example, dtype=np.float32)
    if (example.id is None) == (example.vector is None):
        raise InvalidInputError("an example object needs exactly one of 'id' or 'vector'")
    value = example.id if example.id is not None else np.asarray(example.vector, np.float32)
    return value, example.weight
