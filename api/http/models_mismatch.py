"""Request and response bodies of the mismatch routes (pairs, labels, near-duplicates).

Like ``models``: requests forbid unknown keys and take structured filters only (no SQL over the
network); responses carry the worst ``limit`` rows, and the whole result stays in the run's tables
(``GET /collections/{name}/runs/{run_id}/...``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kinsight.engine.filters import Filter
from kinsight.engine.mismatch import DEFAULT_IMPOSTORS, DEFAULT_NEIGHBOURS, DEFAULT_THRESHOLD

from .models import Seed, _no_sql, _Request

__all__ = [
    "DuplicateGroupOut",
    "DuplicatesRequest",
    "DuplicatesResponse",
    "LabelMismatchOut",
    "LabelMismatchRequest",
    "LabelMismatchResponse",
    "PairMismatchOut",
    "PairMismatchRequest",
    "PairMismatchResponse",
]

Limit = Field(100, ge=1, le=10_000, description="Rows returned, worst first; all are in the run.")


class PairMismatchRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"a": "caption", "b": "image"},
        {"a": "title", "b": "text", "method": "rank", "impostors": "nearest", "k": 20},
    ]})

    a: str = Field(description="One space of each item, e.g. 'caption'.")
    b: str = Field(description="Its partner space; both must share one embedding space.")
    method: Literal["zscore", "rank"] = "zscore"
    impostors: Literal["random", "nearest"] = "random"
    k: int = Field(DEFAULT_IMPOSTORS, ge=2, le=10_000, description="Impostors per item and direction.")
    filter: Filter | None = None
    seed: Seed = 0
    neighbours: int = Field(0, ge=0, le=1000, description=(
        "Also check each b against the b of the N items with the nearest a; 0: off."))
    limit: int = Limit

    _filter_not_sql = field_validator("filter", mode="before")(_no_sql)


class PairMismatchOut(BaseModel):
    id: str
    score: float = Field(description="Share of impostors fitting better: 0 fits, 0.5 typical impostor, "
                                     "1 worse than all.")
    cosine: float = Field(description="Raw cosine of the two vectors (not comparable across items).")
    z: float
    rank: float


class PairMismatchResponse(BaseModel):
    run_id: str
    a: str
    b: str
    method: str
    impostors: str
    k: int
    items: int
    skipped: int = Field(description="Selected items with vectors in only one of the two spaces.")
    pairs: list[PairMismatchOut]
    warnings: list[str]
    took_ms: float


class LabelMismatchRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"label_field": "section"}, {"label_field": "category", "space": "image", "probe": True},
    ]})

    label_field: str
    space: str | None = Field(None, description="Vector space; left out: the only one, or 'text'.")
    k: int = Field(DEFAULT_NEIGHBOURS, ge=1, le=1_000, description="Neighbours that vote.")
    probe: bool = Field(False, description="Also ask a cross-validated logistic-regression probe.")
    filter: Filter | None = None
    seed: Seed = 0
    limit: int = Limit

    _filter_not_sql = field_validator("filter", mode="before")(_no_sql)


class LabelMismatchOut(BaseModel):
    id: str
    label: str
    suggested: str
    confidence: float
    support: float = Field(description="Weight the item's own label gets from the witnesses.")
    score: float
    flagged: bool
    knn_support: float
    probe_support: float | None


class LabelMismatchResponse(BaseModel):
    run_id: str
    label_field: str
    space: str
    method: str
    k: int
    items: int
    flagged: int
    unlabelled: int
    rows: list[LabelMismatchOut]
    warnings: list[str]
    took_ms: float


class DuplicatesRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"threshold": 0.95}, {"space": "image", "filter": {"field": "category", "op": "eq",
                                                           "value": "animals"}},
    ]})

    space: str | None = Field(None, description="Vector space; left out: the only one, or 'text'.")
    threshold: float = Field(DEFAULT_THRESHOLD, gt=0, le=1,
                             description="Cosine at or above which two items are near-duplicates.")
    filter: Filter | None = None
    limit: int = Limit

    _filter_not_sql = field_validator("filter", mode="before")(_no_sql)


class DuplicateGroupOut(BaseModel):
    group: int
    representative: str = Field(description="The member of highest mean cosine to the others.")
    members: list[str] = Field(description="Representative first, then by similarity to it.")
    similarities: list[float]
    exact: bool = Field(description="All members share one content hash or one vector.")
    mean_similarity: float
    min_similarity: float


class DuplicatesResponse(BaseModel):
    run_id: str
    space: str
    threshold: float
    items: int
    duplicates: int = Field(description="Members that are not their group's representative.")
    groups: list[DuplicateGroupOut]
    warnings: list[str]
    took_ms: float
