"""Mismatch: pairs of spaces that disagree, labels that do not fit, near-duplicate groups."""

from __future__ import annotations

import time
from dataclasses import asdict

from fastapi import APIRouter

from kinsight.engine import DuplicateOptions, LabelMismatchOptions, PairMismatchOptions

from .deps import CollectionDep
from .models import ErrorOut
from .models_mismatch import (
    DuplicateGroupOut,
    DuplicatesRequest,
    DuplicatesResponse,
    LabelMismatchOut,
    LabelMismatchRequest,
    LabelMismatchResponse,
    PairMismatchOut,
    PairMismatchRequest,
    PairMismatchResponse,
)

__all__ = ["router"]

router = APIRouter(prefix="/collections/{name}/mismatch", tags=["analysis"],
                   responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}})


@router.post("/pairs", summary="Score how badly each item's two spaces fit, worst first")
def pairs(body: PairMismatchRequest, collection: CollectionDep) -> PairMismatchResponse:
    """Each item's ``a`` vector against its ``b`` vector, calibrated against impostor pairs (the
    item with other items' partners). ``score`` is the share of impostors that fit better than the
    true partner: 0 fits, 0.5 no better than a typical impostor, 1 worse than every impostor."""
    started = time.perf_counter()
    result = collection.pair_mismatch(body.a, body.b, body.to_options(PairMismatchOptions))
    return PairMismatchResponse(
        run_id=result.run_id, a=result.a, b=result.b, method=result.method,
        impostors=result.impostors, k=result.k, items=len(result.pairs), skipped=result.skipped,
        pairs=[PairMismatchOut(**asdict(p)) for p in result.pairs[:body.limit]],
        warnings=result.warnings, took_ms=(time.perf_counter() - started) * 1000)


@router.post("/labels", summary="Find items whose label disagrees with their neighbours and a probe")
def labels(body: LabelMismatchRequest, collection: CollectionDep) -> LabelMismatchResponse:
    """Each item's label against the labels of its ``k`` nearest other items and a
    cross-validated classifier head (``method``), least supported first, with a suggested label;
    flags the ``budget`` most likely errors, or what confident learning flags."""
    started = time.perf_counter()
    result = collection.label_mismatch(body.label_field, body.to_options(LabelMismatchOptions))
    return LabelMismatchResponse(
        run_id=result.run_id, label_field=result.label_field, space=result.space,
        method=result.method, k=result.k, budget=result.budget, lexical=result.lexical,
        fold_groups=result.fold_groups,
        items=len(result.items), flagged=result.flagged,
        unlabelled=result.unlabelled,
        rows=[LabelMismatchOut(**asdict(i)) for i in result.items[:body.limit]],
        warnings=result.warnings, took_ms=(time.perf_counter() - started) * 1000)


@router.post("/duplicates", summary="Group exact and near duplicates, each with a representative")
def duplicates(body: DuplicatesRequest, collection: CollectionDep) -> DuplicatesResponse:
    """Items with the same content hash or vector, or whose cosine reaches ``threshold`` (by
    default chosen from the space's nearest-neighbour similarities), grouped by ``linkage``,
    closest groups first; the response gives the threshold used."""
    started = time.perf_counter()
    result = collection.near_duplicates(body.to_options(DuplicateOptions))
    return DuplicatesResponse(
        run_id=result.run_id, space=result.space, threshold=result.threshold,
        auto_threshold=result.auto_threshold, linkage=result.linkage, items=result.items,
        duplicates=result.duplicates,
        groups=[DuplicateGroupOut(group=g.group, representative=g.representative,
                                  members=list(g.members), similarities=list(g.similarities),
                                  exact=g.exact, mean_similarity=g.mean_similarity,
                                  min_similarity=g.min_similarity)
                for g in result.groups[:body.limit]],
        warnings=result.warnings, took_ms=(time.perf_counter() - started) * 1000)
