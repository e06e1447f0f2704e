"""Request and response bodies of ``POST /collections/{name}/anomalies``.

Reference and targets are structured filters (never SQL), another collection, or new items sent
in the body as texts (encoded by the space's model) or vectors. How they are compared (method,
threshold, neighbours...) is ``AnomalyOptions``, derived by ``from_options``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kinsight.engine import AnomalyOptions, Filter

from .models import ItemId, Vector, _no_sql
from .option_models import OptionsRequest, from_options

__all__ = ["AnomaliesRequest", "AnomaliesResponse", "AnomalyOut", "NeighbourOut"]


# Of the detectors' own parameters the wire has the one it always had; the rest are Python's.
@from_options(AnomalyOptions, omit=("aggregate", "n_estimators", "seed", "n_components",
                                    "vector_weight"),
              types={"n_neighbors": Annotated[int | None, Field(le=1000)]})
class AnomaliesRequest(OptionsRequest):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"reference": {"field": "section", "op": "eq", "value": "python"},
         "targets": {"field": "section", "op": "ne", "value": "python"}, "method": "knn"},
        {"reference": {"field": "section", "op": "eq", "value": "python"},
         "texts": ["a python library to parse csv", "a GNOME theme"], "ids": ["a", "b"]},
    ]})

    reference: Filter | None = Field(
        None, description="Items of this collection that define normal (default: all).")
    reference_collection: str | None = Field(
        None, description="Use every item of another collection (same encoder) instead.")
    targets: Filter | None = Field(
        None, description="Items of this collection to score (default: all; reference items get "
                          "their out-of-sample score).")
    texts: list[str] | None = Field(None, min_length=1, description="New items as texts.")
    vectors: list[Vector] | None = Field(None, min_length=1,
                                         description="New items as vectors, all of one length.")
    ids: list[ItemId] | None = Field(None, description="Names of the new items, one each.")
    limit: int = Field(100, ge=1, le=10_000,
                       description="Scores returned, worst first (every score is kept in the run).")

    _filters_not_sql = field_validator("reference", "targets", mode="before")(_no_sql)

    @model_validator(mode="after")
    def _one_of_each(self) -> AnomaliesRequest:
        if self.reference is not None and self.reference_collection is not None:
            raise ValueError("give 'reference' or 'reference_collection', not both")
        if sum(x is not None for x in (self.targets, self.texts, self.vectors)) > 1:
            raise ValueError("give at most one of 'targets', 'texts' or 'vectors'")
        if self.vectors is not None and len({len(v) for v in self.vectors}) > 1:
            raise ValueError("'vectors' must all have one length, the space's dimension; got "
                             f"lengths {sorted({len(v) for v in self.vectors})}")
        new = self.texts or self.vectors
        if self.ids is not None and (new is None or len(self.ids) != len(new)):
            raise ValueError("'ids' names new items: give one per text or vector")
        return self


class NeighbourOut(BaseModel):
    id: str
    similarity: float


class AnomalyOut(BaseModel):
    id: str
    score: float = Field(description="The detector's raw normality: higher is more normal.")
    percentile: float = Field(description="Share (0-100) of reference items more normal.")
    is_anomaly: bool
    in_reference: bool
    neighbours: list[NeighbourOut]
    unusual_words: list[str] = Field(description=(
        "Of an anomaly flagged by a text detector: its words rarest in the reference texts."))


class AnomaliesResponse(BaseModel):
    run_id: str
    method: str
    threshold_percentile: float
    threshold: float
    reference: int
    targets: int
    anomalies: int
    expected_share: float = Field(description="Share of targets a batch drawn like the "
                                              "reference would have flagged.")
    drift_p_value: float = Field(description="Binomial test of the share flagged against the "
                                             "expected one: small means the batch drifted.")
    scores: list[AnomalyOut]
    took_ms: float
