"""Anomalies: score items (stored, or new ones in the body) against a reference set."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import APIRouter

from kinsight.engine import AnomalyOptions, InvalidInputError, NewVectors

from .deps import CollectionDep, SettingsDep, StoreDep, WriteLockDep
from .models import ErrorOut
from .models_anomalies import AnomaliesRequest, AnomaliesResponse, AnomalyOut, NeighbourOut

__all__ = ["router"]

router = APIRouter(prefix="/collections/{name}", tags=["analysis"],
                   responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}})


@router.post("/anomalies", summary="Score items against a reference set and flag outliers")
def score_anomalies(body: AnomaliesRequest, collection: CollectionDep, store: StoreDep,
                    settings: SettingsDep, write_lock: WriteLockDep) -> AnomaliesResponse:
    """Fits a detector on the reference, scores the targets (or the new texts / vectors), and
    saves the run. Percentiles are calibrated on the reference scored out of sample, so a
    threshold of 95 flags about 5% of items that look like the reference, for every method."""
    started = time.perf_counter()
    new = body.texts or body.vectors
    if new is not None and len(new) > settings.max_batch_items:
        raise InvalidInputError(f"{len(new)} new items in one request; the most is "
                                f"{settings.max_batch_items} (max_batch_items): split the batch")
    options = body.to_options(AnomalyOptions)
    space = collection.space(options.space)
    targets: Any = body.targets
    if body.texts is not None:
        from kinsight.indexers.embed import encode_items

        targets = NewVectors(encode_items(space, body.texts), ids=body.ids, texts=body.texts)
    elif body.vectors is not None:
        targets = NewVectors(np.asarray(body.vectors, dtype=np.float32), ids=body.ids)
    reference: Any = body.reference
    if body.reference_collection is not None:
        reference = store.collection(body.reference_collection)
    with write_lock:  # the first run of a collection creates its result tables
        result = collection.anomalies(options, reference=reference, targets=targets)
    return AnomaliesResponse(
        run_id=result.run_id, method=result.method,
        threshold_percentile=result.threshold_percentile, threshold=result.threshold,
        reference=result.n_reference, targets=len(result.scores),
        anomalies=len(result.anomalies), expected_share=result.drift.expected,
        drift_p_value=result.drift.p_value,
        scores=[AnomalyOut(id=s.id, score=s.score, percentile=s.percentile,
                           is_anomaly=s.is_anomaly, in_reference=s.in_reference,
                           neighbours=[NeighbourOut(id=n.id, similarity=n.similarity)
                                       for n in s.neighbours],
                           unusual_words=list(s.unusual_words))
                for s in result.scores[: body.limit]],
        took_ms=(time.perf_counter() - started) * 1000)
