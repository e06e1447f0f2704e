"""Request and response bodies of ``POST /collections/{name}/classify`` (train a head of any
kind), ``.../classify/zero-shot`` (labels from prompts) and ``.../classify/predict`` (a saved head
on new texts or pictures); the fields that tune each derive from ``HeadOptions``,
``ZeroShotOptions`` and ``PredictOptions`` by ``from_options``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from kinsight.engine import HeadOptions, PredictOptions, ZeroShotOptions

from .option_models import OptionsRequest, from_options

__all__ = ["PREDICT_EXAMPLES", "ClassReportOut", "ClassifyRequest", "ClassifyResponse",
           "DisagreementOut", "HeadOut", "HeadPredictionOut", "HeadTrainingResponse",
           "ItemPredictionOut", "PredictRequest", "PredictResponse", "PredictTarget",
           "PredictionOut", "ZeroShotPredictionOut", "ZeroShotRequest", "ZeroShotResponse"]

PREDICT_EXAMPLES: list[JsonValue] = [
    {"head": "section", "texts": ["a fast text editor for the terminal"], "top": 3},
    {"head": "section", "texts": [{"text": "Vim is a modal editor with many extensions.",
                                   "title": "Vi IMproved, a text editor"}]}]


# The folds' seed is Python's for now, as it always was.
@from_options(HeadOptions, omit=("seed",), types={
    "kind": Literal["auto", "logistic", "knn", "multilabel", "regression"],
    "text_fields": list[str] | None})
class ClassifyRequest(OptionsRequest):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"label_field": "section", "filter": {"field": "n_words", "op": "gt", "value": 20}},
        {"label_field": "section", "kind": "knn"},
        {"label_field": "n_words", "kind": "regression"}]})

    label_field: str = Field(min_length=1, description=(
        "Field holding each item's label, list of labels or number; items where it is null "
        "are predicted."))
    limit: int = Field(100, ge=0, le=10_000, description=(
        "Predictions and disagreements returned (every one is kept in the run)."))


class ClassReportOut(BaseModel):
    label: str
    precision: float
    recall: float
    f1: float
    support: int


class PredictionOut(BaseModel):
    id: str
    label: str
    probability: float


class DisagreementOut(BaseModel):
    id: str
    stored_label: str
    suggested_label: str
    confidence: float
    stored_probability: float


class ClassifyResponse(BaseModel):
    """What the logistic probe found (kind logistic)."""

    kind: Literal["logistic"] = "logistic"
    run_id: str
    label_field: str
    accuracy: float = Field(description="Cross-validated accuracy over the labelled items.")
    fold_accuracies: list[float]
    fold_regularizations: list[float] = Field(
        description="The logistic regression's C in each fold (chosen by inner cross-validation "
                    "unless given).")
    lexical: bool = Field(description="Whether the head read TF-IDF of the source text too.")
    labelled: int
    classes: list[ClassReportOut]
    skipped_classes: dict[str, int] = Field(
        description="Classes with fewer labelled items than folds, left out.")
    fold_groups: int = Field(description="Groups of near-duplicate labelled items, each kept in "
                                         "one fold so no copy leaks into the estimate.")
    unlabelled: int
    predictions: list[PredictionOut]
    disagreements: list[DisagreementOut]
    head: str = Field(description="The name the head fitted on all labelled items is saved "
                                  "under; apply it with classify/predict.")
    text_fields: list[str] = Field(description=(
        "The free-text fields whose words the head read as blocks of their own."))
    took_ms: float


@from_options(PredictOptions)
class PredictTarget(OptionsRequest):
    """Which saved head, and how (pictures, as multipart, send these as form fields)."""

    head: str = Field(min_length=1, description="The saved head (classify's save_as; default "
                                                "there: the label field).")


class PredictRequest(PredictTarget):
    """Texts or records to label (pictures come as multipart, see the route)."""

    model_config = ConfigDict(json_schema_extra={"examples": PREDICT_EXAMPLES})

    texts: list[Annotated[str, StringConstraints(min_length=1)] | dict[str, str | None]] = Field(
        min_length=1, description=(
            "Texts, or records: objects of field values, the text under the source field(s) "
            "of the head's space and the free-text fields the head reads (its text_fields) "
            "beside it; a field a record lacks reads as empty, as for a plain text."))


class HeadOut(BaseModel):
    name: str
    label_field: str
    space: str = Field(description="The space it was trained on.")
    encoder: str
    fingerprint: str
    kind: str = Field(description="logistic, knn, multilabel or regression.")
    classes: list[str] = Field(description="The labels it tells apart (none for regression).")
    threshold: float | None = Field(description="A multilabel head predicts the labels whose "
                                                "probability reaches this.")
    lexical: bool
    text_fields: list[str] = Field(description=(
        "Free-text fields it reads beside the source text: send records to fill them."))
    trained_on: int
    run_id: str


class HeadPredictionOut(BaseModel):
    label: str | None = Field(description="The most probable label (null for regression).")
    probability: float | None
    probabilities: dict[str, float] = Field(description="The top labels, most probable first.")
    labels: list[str] = Field(description=(
        "What the head predicts: the labels at or above a multilabel head's threshold, the one "
        "label of the other classifiers, none for regression."))
    value: float | None = Field(None, description="The number a regression head predicts.")


class ItemPredictionOut(HeadPredictionOut):
    id: str


class HeadTrainingResponse(BaseModel):
    """What a knn, multilabel or regression head found, out of fold."""

    kind: Literal["knn", "multilabel", "regression"]
    run_id: str
    label_field: str
    space: str
    labelled: int
    folds: int
    lexical: bool = Field(description="Whether the head read TF-IDF of the source text too.")
    metrics: dict[str, float] = Field(description=(
        "Out of fold: accuracy and macro_f1 (knn); micro_f1 and macro_f1 (multilabel); r2, mae "
        "and baseline_mae, the MAE of predicting each training part's mean (regression)."))
    fold_scores: list[float] = Field(description="Accuracy, micro-F1 or R² of each fold.")
    parameter: str = Field(description="What each fold chose: k, threshold or alpha.")
    fold_parameters: list[float]
    per_label: list[ClassReportOut] = Field(description="Per class or label (classifiers).")
    skipped: dict[str, int] = Field(description="Labels with fewer items than folds, left out.")
    unlabelled: int
    predictions: list[ItemPredictionOut]
    head: str = Field(description="The name the head fitted on all labelled items is saved "
                                  "under; apply it with classify/predict.")
    fold_groups: int = Field(description=(
        "Groups of near-duplicates among the labelled items, each kept in one fold."))
    took_ms: float


class PredictResponse(BaseModel):
    head: HeadOut
    space: str = Field(description="The space whose encoder read the inputs.")
    predictions: list[HeadPredictionOut] = Field(description="One per input, in order.")
    took_ms: float


@from_options(ZeroShotOptions, types={"templates": list[str] | None})
class ZeroShotRequest(OptionsRequest):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"labels": ["a cat", "a dog", "a car"], "space": "image", "limit": 20},
        {"labels": ["games", "sound", "editors"], "label_field": "section"}]})

    labels: list[str] = Field(min_length=2, description="The labels to choose from.")
    limit: int = Field(100, ge=0, le=10_000, description="Predictions returned (all are kept "
                                                         "in the run).")


class ZeroShotPredictionOut(BaseModel):
    id: str
    label: str
    probability: float
    probabilities: dict[str, float]


class ZeroShotResponse(BaseModel):
    run_id: str
    space: str
    labels: list[str]
    templates: list[str]
    temperature: float
    accuracy: float | None = Field(description="Share of items whose label_field is the "
                                               "predicted label (with label_field).")
    warnings: list[str] = Field(description="E.g. stored labels that are none of the labels.")
    items: int
    predictions: list[ZeroShotPredictionOut]
    took_ms: float
