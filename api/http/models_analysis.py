"""Request and response bodies of the analysis routes: clustering, and reading any saved run.

Like ``models``: requests forbid unknown keys, filters are the structured form only (no SQL over
the network), and responses are their own models, not the engine's dataclasses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from kinsight.engine import ClusterOptions

from .option_models import OptionsRequest, from_options

__all__ = ["ClusterOut", "ClusterRequest", "ClusterResponse", "RunList", "RunOut", "RunTableOut"]


@from_options(ClusterOptions, rename={"label_prompts": "labels"},
              types={"label_prompts": Annotated[list[str] | None, Field(max_length=1000)]})
class ClusterRequest(OptionsRequest):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"k": "auto", "k_range": [2, 30], "filter": {"field": "section", "op": "eq", "value": "net"}},
        {"method": "hdbscan", "labels": ["web servers", "network monitoring", "chat clients"]},
    ]})


class ClusterOut(BaseModel):
    cluster: int = Field(description="Numbered by size: 0 is the largest.")
    name: str = Field(description="Its most distinctive terms (class-based TF-IDF).")
    terms: list[str]
    size: int
    cohesion: float = Field(description="Mean cosine of the members to the centroid.")
    representatives: list[str] = Field(description="Ids of the members nearest the centroid.")
    label: str | None = None
    label_score: float | None = None


class ClusterResponse(BaseModel):
    run_id: str = Field(description="Read the assignments and the map from /runs/{run_id}/...")
    method: str
    items: int
    noise: int = Field(description="HDBSCAN: items in no cluster.")
    criterion: str | None
    k_scores: dict[int, float] = Field(description="k='auto': the criterion's score of each k tried.")
    clusters: list[ClusterOut]
    took_ms: float


class RunOut(BaseModel):
    run_id: str
    operation: str
    params: dict[str, Any]
    summary: dict[str, Any]
    tables: list[str]
    # RunInfo.created_at carries its UTC offset, so it serialises as an RFC 3339 date-time.
    created_at: datetime = Field(description="When the run was saved, in UTC.")


class RunList(BaseModel):
    runs: list[RunOut]


class RunTableOut(BaseModel):
    run_id: str
    table: str
    total: int = Field(description="Rows in the whole table; page with offset and limit.")
    offset: int
    rows: list[dict[str, Any]]
