"""Search: dense, BM25 or hybrid, by text, vector or stored item, with structured filters."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial

import numpy as np
from fastapi import APIRouter

from kinsight.engine import (
    FUSIONS,
    Answer,
    ById,
    Collection,
    Fusion,
    Hit,
    InvalidInputError,
    Query,
    SearchCall,
    SearchOptions,
)

from ..reporting import json_ready
from .deps import CollectionDep, SearchBatcherDep, SettingsDep
from .errors import INTERNAL_ERROR_DETAIL, status_for
from .models import (
    BatchAnswer,
    BatchResponse,
    ChunkOut,
    ErrorOut,
    HitOut,
    SearchBatchRequest,
    SearchRequest,
    SearchResponse,
)
from .service import EncodedDep
from .settings import Settings

__all__ = ["batch_answer", "check_batch_size", "hit_out", "router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/collections/{name}", tags=["search"],
                   responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}})


@router.post("/search", summary="Find the items closest to a text, a vector or a stored item")
async def search_collection(body: SearchRequest, collection: CollectionDep,
                            batcher: SearchBatcherDep, encoded: EncodedDep) -> SearchResponse:
    """Query with exactly one of ``text``, ``vector`` or ``id`` (the item itself is left out of
    its results). ``bm25`` and ``hybrid`` need text or an id. Scores are cosine (or the space's
    metric) for dense, BM25 for bm25, and fused scores for hybrid. Text on an image space finds
    pictures where the space's encoder has a text partner (open_clip towers, adapters).
    Searches that arrive while another runs on the collection are run with it as one batch."""
    # async: a search waiting for its batch holds no worker thread (search_batcher.py).
    started = time.perf_counter()
    answer = await batcher.search(collection, search_call(body), partial(_count_texts, encoded))
    if not isinstance(answer, list):
        raise answer
    took_ms = (time.perf_counter() - started) * 1000
    return SearchResponse(hits=[hit_out(hit) for hit in answer], took_ms=took_ms,
                          warnings=collection.space(body.space).warnings())


@router.post("/search/batch", summary="Many searches in one call, each with its own options")
def search_batch(body: SearchBatchRequest, collection: CollectionDep,
                 settings: SettingsDep, encoded: EncodedDep) -> BatchResponse:
    """Searches that share their options (but for ``k``) and their kind of query are encoded
    in one batch and searched in one index call. Answers come in the order asked; a query that
    fails (an unknown space, item or field, a vector of the wrong length) gets its error and
    status in its place while the others get their hits."""
    check_batch_size(len(body.queries), settings, "queries")
    started = time.perf_counter()
    encoded(sum(query.text is not None for query in body.queries))
    answers = collection.search_batch([search_call(query) for query in body.queries])
    out = [batch_answer(answer, partial(_warnings, collection, query.space))
           for answer, query in zip(answers, body.queries, strict=True)]
    return BatchResponse(answers=out, took_ms=(time.perf_counter() - started) * 1000)


def _count_texts(encoded: Callable[[int], None], calls: Sequence[SearchCall]) -> None:
    encoded(sum(isinstance(call.query, str) for call in calls))


def search_call(body: SearchRequest) -> SearchCall:
    """The engine's search that a request asks for."""
    options = SearchOptions(
        k=body.k, space=body.space, mode=body.mode, where=body.filter, exact=body.exact,
        fusion=_fusion(body),
        aggregate=body.aggregate,
        return_fields=body.fields, tuned=body.tuned)
    return SearchCall(_query(body), options)


def check_batch_size(count: int, settings: Settings, what: str) -> None:
    if count > settings.max_batch_items:
        raise InvalidInputError(
            f"{count} {what} in one request; the most is {settings.max_batch_items} "
            "(max_batch_items): split the batch")


def batch_answer(answer: Answer, warnings: Callable[[], list[str]] = list) -> BatchAnswer:
    """One answer of a batch: hits (with ``warnings()``), or the error as the route of one
    query would have answered it."""
    if isinstance(answer, list):
        return BatchAnswer(status=200, hits=[hit_out(hit) for hit in answer], warnings=warnings())
    status = status_for(answer)
    if status is None:  # not the caller's fault: keep the details in the server log
        log.error("internal error in a batch call", exc_info=answer)
        return BatchAnswer(status=500, error=ErrorOut(error="InternalError",
                                                      detail=INTERNAL_ERROR_DETAIL))
    return BatchAnswer(status=status, error=ErrorOut(error=type(answer).__name__,
                                                     detail=str(answer)))


def _warnings(collection: Collection, space: str | None) -> list[str]:
    return collection.space(space).warnings()


def _fusion(body: SearchRequest) -> Fusion:
    fusion = FUSIONS[body.fusion]
    return fusion if body.dense_weight is None else replace(fusion, dense_weight=body.dense_weight)


def _query(body: SearchRequest) -> Query:
    if body.text is not None:
        return body.text
    if body.vector is not None:
        return np.asarray(body.vector, dtype=np.float32)
    if body.id is not None:
        return ById(body.id, space=body.id_space)
    # SearchRequest validates that one is given; this guards against that check being dropped.
    raise InvalidInputError("give one of 'text', 'vector' or 'id' as the query")


def hit_out(hit: Hit) -> HitOut:
    chunk = None if hit.chunk is None else ChunkOut(
        index=hit.chunk.index, start=hit.chunk.start, end=hit.chunk.end)
    fields = {name: json_ready(value) for name, value in hit.fields.items()}
    return HitOut(id=hit.id, score=hit.score, fields=fields, chunk=chunk)
