"""Request and response bodies of the recommendation routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kinsight.engine import Filter

from .models import FieldName, HitOut, ItemId, Vector, _no_sql, _Request

__all__ = [
    "ExampleIn",
    "InteractionIn",
    "InteractionsRequest",
    "InteractionsResponse",
    "RecommendBatchRequest",
    "RecommendRequest",
    "RecommendResponse",
]


class ExampleIn(_Request):
    """An example given with a weight (a bare id or vector weighs 1)."""

    id: ItemId | None = None
    vector: Vector | None = None
    weight: float = Field(1.0, gt=0)


Example = Annotated[ItemId | Vector | ExampleIn, Field(
    description="An item id, a vector of the space, or {id|vector, weight}.")]


class RecommendRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"positive": ["vim", "emacs"], "negative": ["nano"], "k": 5},
        {"user": "u42", "k": 10, "diversity": 0.3,
         "filter": {"field": "section", "op": "eq", "value": "games"}},
        {"positive": [{"id": "vim", "weight": 2}], "strategy": "best_score",
         "spaces": {"text": 1.0, "image": 0.5}},
    ]})

    positive: list[Example] = Field(default_factory=list, description="More like these.")
    negative: list[Example] = Field(default_factory=list, description="Less like these.")
    user: ItemId | None = Field(None, description="Add this user's interactions as examples "
                                                  "and leave out the items they have.")
    k: int = Field(10, ge=1, le=1000)
    strategy: Literal["average_vector", "best_score"] = "average_vector"
    mode: Literal["hybrid", "dense"] = Field("hybrid", description=(
        "hybrid: more like one stored text item fuses its vector and its words (BM25); "
        "dense: vectors alone."))
    diversity: float = Field(0.0, ge=0.0, le=1.0, description="0: pure relevance; higher: "
                                                              "more varied (MMR).")
    space: str | None = Field(None, description="Vector space; left out: the only one.")
    spaces: dict[str, Annotated[float, Field(gt=0)]] | None = Field(
        None, description="A weighted mix of spaces instead of one space.")
    filter: Filter | None = None
    exclude: list[ItemId] = Field(default_factory=list, description="Never return these.")
    include_seen: bool = Field(False, description="Let the user's own items come back.")
    half_life_days: float | None = Field(30.0, gt=0, description="Interaction time decay; "
                                                                 "null: none.")
    fields: list[FieldName] | None = Field(
        None, description="Fields to return with each hit; left out: all, []: none.")

    _filter_not_sql = field_validator("filter", mode="before")(_no_sql)

    @model_validator(mode="after")
    def _one_space_form(self) -> RecommendRequest:
        if self.space is not None and self.spaces is not None:
            raise ValueError("give 'space' or 'spaces', not both")
        return self


class RecommendResponse(BaseModel):
    hits: list[HitOut]
    took_ms: float


class InteractionIn(_Request):
    user: ItemId
    item: ItemId
    kind: Annotated[str, Field(min_length=1)] = "view"
    weight: float = 1.0
    timestamp: datetime | None = Field(None, description="ISO 8601; left out: now.")


class InteractionsRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [{"interactions": [
        {"user": "u42", "item": "vim", "kind": "like"},
        {"user": "u42", "item": "nano", "kind": "dislike", "timestamp": "2026-11-01T10:00:00Z"},
    ]}]})

    interactions: list[InteractionIn] = Field(min_length=1)


class InteractionsResponse(BaseModel):
    written: int


class RecommendBatchRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [{"requests": [
        {"positive": ["vim"], "k": 3},
        {"user": "u42", "k": 5, "filter": {"field": "section", "op": "eq", "value": "games"}},
        {"positive": ["no-such-item"]},
    ]}]})

    # The upper bound is a server setting (max_batch_items), checked by the route.
    requests: list[RecommendRequest] = Field(
        min_length=1, description="Recommendations, each with its own examples and options; "
                                  "one that fails gets its error in its place.")
