"""Request and response bodies of the analysis routes: clustering, and reading any saved run.

Like ``models``: requests forbid unknown keys, filters are the structured form only (no SQL over
the network), and responses are their own models, not the engine's dataclasses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kinsight.engine.filters import Filter

from .models import Seed, _no_sql, _Request

__all__ = ["ClusterOut", "ClusterRequest", "ClusterResponse", "RunList", "RunOut", "RunTableOut"]


class ClusterRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"k": "auto", "k_range": [2, 30], "filter": {"field": "section", "op": "eq", "value": "net"}},
        {"method": "hdbscan", "labels": ["web servers", "network monitoring", "chat clients"]},
    ]})

    space: str | None = Field(None, description="Vector space; left out: the only one, or 'text'.")
    method: Literal["kmeans", "hdbscan"] = "kmeans"
    k: int | Literal["auto"] = Field(
        "auto", description="k-means: number of clusters, or 'auto' (highest silhouette).")
    k_range: tuple[int, int] = Field((2, 40), description="With k='auto': smallest and largest k.")
    min_cluster_size: int | None = Field(
        None, ge=2, description="HDBSCAN: smallest group (default 0.5% of the items, at least 5).")
    filter: Filter | None = None
    name_field: str | None = Field(
        None, description="Text field the names come from; default: the space's first source field.")
    labels: list[str] | None = Field(
        None, max_length=1000, description="Label prompts: each cluster gets the nearest one.")
    projection: Literal["pca", "umap"] = "pca"
    seed: Seed = 0

    _filter_not_sql = field_validator("filter", mode="before")(_no_sql)

    @model_validator(mode="after")
    def _positive_k(self) -> ClusterRequest:
        if self.k != "auto" and self.k < 1:
            raise ValueError(f"k must be 'auto' or at least 1, not {self.k}")
        return self


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
