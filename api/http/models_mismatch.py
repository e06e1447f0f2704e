"""Request and response bodies of the mismatch routes (pairs, labels, near-duplicates).

Like ``models``: requests forbid unknown keys and take structured filters only (no SQL over the
network); responses carry the worst ``limit`` rows, and the whole result stays in the run's tables
(``GET /collections/{name}/runs/{run_id}/...``). The fields that tune each operation derive from its
options (``PairMismatchOptions``...) by ``from_options``; the server caps a few of them lower.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from kinsight.engine import DuplicateOptions, LabelMismatchOptions, PairMismatchOptions

from .option_models import OptionsRequest, from_options

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


# Bounds of the server's own, on what one request may cost.
@from_options(PairMismatchOptions, types={"k": Annotated[int, Field(le=10_000)],
                                          "neighbours": Annotated[int, Field(le=1000)]})
class PairMismatchRequest(OptionsRequest):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"a": "caption", "b": "image"},
        {"a": "title", "b": "text", "method": "rank", "impostors": "nearest", "k": 20},
    ]})

    a: str = Field(description="One space of each item, e.g. 'caption'.")
    b: str = Field(description="Its partner space; both must share one embedding space.")
    limit: int = Limit


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


@from_options(LabelMismatchOptions, types={"k": Annotated[int, Field(le=1000)]})
class LabelMismatchRequest(OptionsRequest):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"label_field": "section"}, {"label_field": "section", "budget": 50},
        {"label_field": "category", "space": "image", "method": "knn"},
    ]})

    label_field: str
    limit: int = Limit


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
    budget: int | None = Field(description="Items flagged as the most likely errors; null: what "
                                           "confident learning flags.")
    lexical: bool = Field(description="Whether the probe read TF-IDF of the source text too.")
    fold_groups: int = Field(description="Groups of near-duplicates the probe kept in one fold.")
    items: int
    flagged: int
    unlabelled: int
    rows: list[LabelMismatchOut]
    warnings: list[str]
    took_ms: float


@from_options(DuplicateOptions, types={
    "threshold": Annotated[float, Field(gt=0, le=1)] | Literal["auto"]})
class DuplicatesRequest(OptionsRequest):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {}, {"threshold": 0.95, "linkage": "complete"},
        {"space": "image", "filter": {"field": "category", "op": "eq", "value": "animals"}},
    ]})

    limit: int = Limit


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
    threshold: float = Field(description="The cosine the items were linked at.")
    auto_threshold: bool = Field(description="Whether it was chosen from the data ('auto').")
    linkage: str
    items: int
    duplicates: int = Field(description="Members that are not their group's representative.")
    groups: list[DuplicateGroupOut]
    warnings: list[str]
    took_ms: float
