"""Classify: train a linear probe on frozen embeddings and a label field, or label items
zero-shot from label prompts."""

from __future__ import annotations

import time
from dataclasses import asdict

from fastapi import APIRouter

from kinsight.engine import ProbeOptions, ZeroShotOptions

from .deps import CollectionDep, WriteLockDep
from .models import ErrorOut
from .models_classify import (
    ClassifyRequest,
    ClassifyResponse,
    ClassReportOut,
    DisagreementOut,
    PredictionOut,
    ZeroShotPredictionOut,
    ZeroShotRequest,
    ZeroShotResponse,
)

__all__ = ["router"]

router = APIRouter(prefix="/collections/{name}", tags=["analysis"],
                   responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}})


@router.post("/classify", summary="Train a linear probe on a label field; predict the unlabelled")
def classify(body: ClassifyRequest, collection: CollectionDep,
             write_lock: WriteLockDep) -> ClassifyResponse:
    """Cross-validated accuracy and per-class report of a logistic-regression head on the frozen
    embeddings; predictions for items whose label is null; labelled items whose stored label the
    head strongly doubts. The run is saved (tables classify_predictions, _classes, _disagreements)."""
    started = time.perf_counter()
    with write_lock:  # the first run of a collection creates its result tables
        result = collection.train_probe(body.label_field, body.to_options(ProbeOptions))
    return ClassifyResponse(
        run_id=result.run_id, label_field=result.label_field, accuracy=result.accuracy,
        fold_accuracies=result.fold_accuracies,
        fold_regularizations=result.fold_regularizations, lexical=result.lexical,
        labelled=result.labelled,
        classes=[ClassReportOut(**asdict(c)) for c in result.per_class],
        skipped_classes=result.skipped_classes, unlabelled=len(result.predictions),
        predictions=[PredictionOut(**asdict(p)) for p in result.predictions[: body.limit]],
        disagreements=[DisagreementOut(**asdict(d)) for d in result.disagreements[: body.limit]],
        took_ms=(time.perf_counter() - started) * 1000)


@router.post("/classify/zero-shot", summary="Label items from label names alone (prompts)")
def classify_zero_shot(body: ZeroShotRequest, collection: CollectionDep,
                       write_lock: WriteLockDep) -> ZeroShotResponse:
    """Each label is written into prompt templates, encoded by the space's text encoder (the
    text side of a picture space's embedding space), and each item gets the softmax over labels
    of its similarities. The run is saved (table zero_shot_predictions)."""
    started = time.perf_counter()
    with write_lock:  # the first run of a collection creates its result table
        result = collection.zero_shot(body.labels, body.to_options(ZeroShotOptions))
    return ZeroShotResponse(
        run_id=result.run_id, space=result.space, labels=result.labels,
        templates=result.templates, temperature=result.temperature, accuracy=result.accuracy,
        warnings=result.warnings, items=len(result.predictions),
        predictions=[ZeroShotPredictionOut(**asdict(p)) for p in result.predictions[: body.limit]],
        took_ms=(time.perf_counter() - started) * 1000)
