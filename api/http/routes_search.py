"""Search: dense, BM25 or hybrid, by text, vector or stored item, with structured filters."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from fastapi import APIRouter

from kinsight.engine import FUSIONS, ById, Fusion, Hit, InvalidInputError, Query, SearchOptions

from ..reporting import json_ready
from .deps import CollectionDep
from .models import ChunkOut, ErrorOut, HitOut, SearchRequest, SearchResponse

__all__ = ["hit_out", "router"]

router = APIRouter(prefix="/collections/{name}", tags=["search"],
                   responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}})


@router.post("/search", summary="Find the items closest to a text, a vector or a stored item")
def search_collection(body: SearchRequest, collection: CollectionDep) -> SearchResponse:
    """Query with exactly one of ``text``, ``vector`` or ``id`` (the item itself is left out of
    its results). ``bm25`` and ``hybrid`` need text or an id. Scores are cosine (or the space's
    metric) for dense, BM25 for bm25, and fused scores for hybrid. Text on an image space finds
    pictures where the space's encoder has a text partner (open_clip towers, adapters)."""
    started = time.perf_counter()
    options = SearchOptions(
        k=body.k, space=body.space, mode=body.mode, where=body.filter, exact=body.exact,
        fusion=_fusion(body),
        aggregate=body.aggregate,
        return_fields=body.fields)
    hits = collection.search(_query(body), options)
    took_ms = (time.perf_counter() - started) * 1000
    return SearchResponse(hits=[hit_out(hit) for hit in hits], took_ms=took_ms,
                          warnings=collection.space(body.space).warnings())


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
