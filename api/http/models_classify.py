"""Request and response bodies of ``POST /collections/{name}/classify`` (train a linear probe)
and ``POST /collections/{name}/classify/zero-shot`` (labels from prompts)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kinsight.engine.filters import Filter

from .models import _no_sql, _Request

__all__ = ["ClassReportOut", "ClassifyRequest", "ClassifyResponse", "DisagreementOut",
           "PredictionOut", "ZeroShotPredictionOut", "ZeroShotRequest", "ZeroShotResponse"]


class ClassifyRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"label_field": "section", "filter": {"field": "n_words", "op": "gt", "value": 20}}]})

    label_field: str = Field(min_length=1, description="Field holding each item's label; items "
                                                       "where it is null are predicted.")
    filter: Filter | None = Field(None, description="Items to train on and predict (default all).")
    space: str | None = None
    folds: int = Field(5, ge=2, le=20, description="Cross-validation folds.")
    doubt_below: float = Field(0.1, gt=0, lt=1, description=(
        "List labelled items whose stored label gets a lower out-of-fold probability."))
    limit: int = Field(100, ge=0, le=10_000, description=(
        "Predictions and disagreements returned (every one is kept in the run)."))

    _filter_not_sql = field_validator("filter", mode="before")(_no_sql)


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
    run_id: str
    label_field: str
    accuracy: float = Field(description="Cross-validated accuracy over the labelled items.")
    fold_accuracies: list[float]
    labelled: int
    classes: list[ClassReportOut]
    skipped_classes: dict[str, int] = Field(
        description="Classes with fewer labelled items than folds, left out.")
    unlabelled: int
    predictions: list[PredictionOut]
    disagreements: list[DisagreementOut]
    took_ms: float


class ZeroShotRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"labels": ["a cat", "a dog", "a car"], "space": "image", "limit": 20},
        {"labels": ["games", "sound", "editors"], "label_field": "section"}]})

    labels: list[str] = Field(min_length=2, description="The labels to choose from.")
    templates: list[str] | None = Field(
        None, description="Prompt templates with {} for the label; left out: an ensemble "
                          "suited to the space (pictures or text).")
    space: str | None = None
    filter: Filter | None = Field(None, description="Items to label (default all).")
    # Similarities are divided by it in float32: below ~1e-38 they overflow and the
    # probabilities come out NaN. 1e-4 is a logit scale of 10,000, far past any model's.
    temperature: float | None = Field(None, ge=1e-4, description="Softmax temperature, 1e-4 or "
                                      "more; left out: the space's own, else 0.01.")
    label_field: str | None = Field(None, description="Score the labels against this field.")
    limit: int = Field(100, ge=0, le=10_000, description="Predictions returned (all are kept "
                                                         "in the run).")

    _filter_not_sql = field_validator("filter", mode="before")(_no_sql)


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
    items: int
    predictions: list[ZeroShotPredictionOut]
    took_ms: float
