"""Classify: train a head (logistic probe, k-NN, multilabel, regression) on frozen embeddings and
a field (the head is saved), apply a saved head to new texts or pictures, or label items
zero-shot from label prompts."""

from __future__ import annotations

import time
from dataclasses import asdict
from functools import partial

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from kinsight.engine import HeadOptions, PredictOptions, ProbeResult, ZeroShotOptions

from .deps import CollectionDep, SettingsDep, WriteLockDep
from .models import ErrorOut
from .models_classify import (
    PREDICT_EXAMPLES,
    ClassifyRequest,
    ClassifyResponse,
    ClassReportOut,
    DisagreementOut,
    HeadOut,
    HeadPredictionOut,
    HeadTrainingResponse,
    ItemPredictionOut,
    PredictionOut,
    PredictRequest,
    PredictResponse,
    PredictTarget,
    ZeroShotPredictionOut,
    ZeroShotRequest,
    ZeroShotResponse,
)
from .routes_embed import texts_or_pictures, texts_or_pictures_body
from .service import EncodedDep

__all__ = ["router"]

router = APIRouter(prefix="/collections/{name}", tags=["analysis"],
                   responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}})


@router.post("/classify", summary="Train a head on a field; predict the unlabelled")
def classify(body: ClassifyRequest, collection: CollectionDep,
             write_lock: WriteLockDep) -> ClassifyResponse | HeadTrainingResponse:
    """A head of ``kind`` on the frozen embeddings (auto: regression for a numeric field,
    multilabel for a list field, logistic otherwise), its cross-validated report, predictions for
    items whose field is null, and (logistic) labelled items whose stored label the head strongly
    doubts. The run is saved (tables classify_predictions, _classes, _disagreements) and the head
    with the collection."""
    started = time.perf_counter()
    with write_lock:  # the first run of a collection creates its result tables
        result = collection.train_head(body.label_field, body.to_options(HeadOptions))
    if not isinstance(result, ProbeResult):
        return HeadTrainingResponse(
            **{key: value for key, value in asdict(result).items()
               if key not in ("per_label", "predictions")},
            per_label=[ClassReportOut(**asdict(c)) for c in result.per_label],
            unlabelled=len(result.predictions),
            predictions=[ItemPredictionOut(id=p.id, **asdict(p.prediction))
                         for p in result.predictions[: body.limit]],
            took_ms=(time.perf_counter() - started) * 1000)
    return ClassifyResponse(
        run_id=result.run_id, label_field=result.label_field, accuracy=result.accuracy,
        fold_accuracies=result.fold_accuracies,
        fold_regularizations=result.fold_regularizations, lexical=result.lexical,
        labelled=result.labelled,
        classes=[ClassReportOut(**asdict(c)) for c in result.per_class],
        skipped_classes=result.skipped_classes, fold_groups=result.fold_groups,
        unlabelled=len(result.predictions),
        predictions=[PredictionOut(**asdict(p)) for p in result.predictions[: body.limit]],
        disagreements=[DisagreementOut(**asdict(d)) for d in result.disagreements[: body.limit]],
        head=result.head, text_fields=result.text_fields,
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


@router.post("/classify/predict", summary="Label new texts or pictures with a saved head",
             openapi_extra={"requestBody": texts_or_pictures_body(
                 PredictRequest, PredictTarget, PREDICT_EXAMPLES)},
             responses={415: {"model": ErrorOut, "description": "Neither JSON nor a form"}})
async def classify_predict(request: Request, collection: CollectionDep, settings: SettingsDep,
                           encoded: EncodedDep) -> PredictResponse:
    """Texts as JSON ``{"head": H, "texts": [...]}`` (or records: objects of field values,
    for a head that reads free-text fields beside the text), or pictures as a multipart form (``image``
    files, ``head`` and the other fields as form fields). The inputs are encoded as the head's
    space stores items, a long text as the mean of its chunks (or as ``space``, whose encoder
    must be the head's: 422 otherwise), and each gets its ``top`` labels (a multilabel head's
    ``labels`` above its threshold; a regression head's ``value``). Nothing is written: a
    prediction never waits for a write."""
    from kinsight.indexers.embed import encode_items

    started = time.perf_counter()
    target, inputs = await texts_or_pictures(request, settings, PredictRequest, PredictTarget)
    encoded(len(inputs))
    texts = all(isinstance(value, str | dict) for value in inputs)
    result = await run_in_threadpool(partial(
        collection.predict, target.head, inputs, target.to_options(PredictOptions),
        encode=encode_items if texts else None))  # a long text: the mean of its chunks
    info = result.head
    return PredictResponse(
        head=HeadOut(name=info.name, label_field=info.label_field, space=info.space,
                     encoder=info.encoder.spec, fingerprint=info.encoder.fingerprint,
                     kind=info.kind, classes=info.classes, threshold=info.threshold,
                     lexical=info.lexical, text_fields=info.text_fields,
                     trained_on=info.trained_on, run_id=info.run_id),
        space=result.space,
        predictions=[HeadPredictionOut(**asdict(p)) for p in result.predictions],
        took_ms=(time.perf_counter() - started) * 1000)
