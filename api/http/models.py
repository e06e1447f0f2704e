"""Request and response bodies of the HTTP API.

Requests and responses are separate models, and responses never expose engine objects directly:
the wire format stays put when the engine's dataclasses change. Filters are the engine's structured
form only (``Condition``, ``And``, ``Or``, ``Not``); a raw SQL string does not validate, so SQL text
cannot come in over the network.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from kinsight.engine import Filter

__all__ = [
    "BatchAnswer",
    "BatchResponse",
    "ChunkOut",
    "CollectionInfo",
    "CollectionList",
    "CreateCollection",
    "DeleteRequest",
    "DeleteResponse",
    "ErrorOut",
    "Health",
    "HitOut",
    "ItemIn",
    "ItemOut",
    "ProblemOut",
    "SearchBatchRequest",
    "SearchRequest",
    "SearchResponse",
    "SpaceInfo",
    "UpsertRequest",
    "UpsertResponse",
]

# Ids are stripped as the file readers strip them, so a record posted here and the same record
# ingested from a file get the same id.
ItemId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
FieldName = Annotated[str, StringConstraints(min_length=1)]
# Vectors are searched as float32: a component past its range would turn into an infinity there.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
VectorComponent = Annotated[float, Field(ge=-_FLOAT32_MAX, le=_FLOAT32_MAX)]
Vector = Annotated[list[VectorComponent], Field(min_length=1)]

_FILTER_EXAMPLE: dict[str, Any] = {"and": [{"field": "section", "op": "eq", "value": "python"},
                           {"field": "year", "op": "ge", "value": 2020}]}


class _Request(BaseModel):
    # A misspelt option ("fitler") must fail loudly instead of being ignored. Python's JSON parser
    # reads NaN and Infinity, which JSON has not; no number of a request may be one of them.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _no_sql(value: Any) -> Any:
    """Refuse a string filter with a message that says why, instead of pydantic's four
    "not a valid dictionary" errors (one per member of the filter union)."""
    if isinstance(value, str):
        raise ValueError(
            "filter must be a structured filter such as "
            '{"field": "section", "op": "eq", "value": "python"} (combine with "and", "or", '
            '"not"); raw SQL is not accepted over HTTP')
    return value


# -- errors and health -----------------------------------------------------------------------------
class ErrorOut(BaseModel):
    """Every error response: ``error`` names the kind, ``detail`` says what to change."""

    error: str
    detail: Any


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    collections: int


# -- collections -----------------------------------------------------------------------------------
class SpaceInfo(BaseModel):
    name: str
    encoder: str = Field(description="Spec that loads the encoder which built this space.")
    fingerprint: str
    modality: str
    dim: int
    metric: str
    source_fields: list[str]
    chunk_words: int | None
    language: str | None = Field(
        description="Language of the keyword (BM25) index of a text space ('auto' until detected "
                    "from its texts, 'multi' for several); null for other spaces.")


class CollectionInfo(BaseModel):
    name: str
    count: int
    fields: dict[str, str] = Field(description="Field name → DuckDB column type.")
    spaces: list[SpaceInfo]


class CollectionList(BaseModel):
    collections: list[CollectionInfo]


class CreateCollection(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "docs"}]})

    # The store decides which names are valid (validate_collection_name); restating its rule here
    # would go stale when it changes. A refused name is a 422 whose detail gives the rule.
    name: str = Field(description="Name of the new collection; one the store cannot use is "
                                  "refused (422) with the characters it allows.")


# -- items -----------------------------------------------------------------------------------------
class ItemIn(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "doc-1", "fields": {"text": "How to read a CSV file in Python", "section": "python"}}]})

    id: ItemId
    fields: dict[str, Any] = Field(
        default_factory=dict,
        description="Metadata fields (they become columns), the text fields to encode among them.")


class UpsertRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "items": [
            {"id": "doc-1", "fields": {"text": "How to read a CSV file in Python",
                                       "section": "python", "year": 2021}},
            {"id": "doc-2", "fields": {"text": "Sorting a list of dicts by a key",
                                       "section": "python", "year": 2019}},
        ],
        "text_fields": ["text"],
        "space": "text",
    }]})

    # The upper bound is a server setting (max_batch_items), checked by the route.
    items: list[ItemIn] = Field(min_length=1)
    text_fields: list[FieldName] = Field(
        default=["text"], min_length=1,
        description="Fields joined into the text that is encoded. Left out, an existing space "
                    "keeps the fields it was built from.")
    space: str = "text"
    language: str = Field(
        default="auto",
        description="Language of the space's keyword (BM25) index: a code such as en, de, ru, "
                    "ja; 'multi' for several; 'auto' detects it for a new space and keeps an "
                    "existing space's. A new code rebuilds the BM25 index.")


class ProblemOut(BaseModel):
    """An item that was not written: where it was in the request, what is wrong, how to fix it."""

    source: str
    line: int | None = Field(description="1-based position of the item in the request.")
    message: str
    fix: str


class UpsertResponse(BaseModel):
    written: int
    unchanged: int = Field(description="Items identical to the stored ones (not re-encoded).")
    problems: list[ProblemOut]
    warnings: list[str] = Field(
        default_factory=list,
        description="Items written with only the beginning of their text encoded (the chunk cap).")


class ItemOut(BaseModel):
    id: str
    fields: dict[str, Any]


class DeleteRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"ids": ["doc-1", "doc-2"]},
        {"filter": {"field": "section", "op": "eq", "value": "obsolete"}},
    ]})

    ids: list[ItemId] | None = None
    filter: Filter | None = None

    _filter_not_sql = field_validator("filter", mode="before")(_no_sql)

    @model_validator(mode="after")
    def _one_target(self) -> DeleteRequest:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give exactly one of 'ids' or 'filter'")
        return self


class DeleteResponse(BaseModel):
    deleted: int


# -- search ----------------------------------------------------------------------------------------
class SearchRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"text": "read a csv file", "k": 5, "mode": "hybrid", "filter": _FILTER_EXAMPLE,
         "fields": ["text", "section"]},
        {"id": "doc-1", "k": 10},
    ]})

    text: str | None = Field(None, min_length=1, description="Query text (encoded by the space's model).")
    vector: Vector | None = Field(
        None, description="Query vector; its length must be the space's dimension.")
    id: ItemId | None = Field(None, description="Find items like this stored one (it is left out).")
    id_space: str | None = Field(
        None, description="With id: the space the item's vector comes from, when it is not the "
                          "searched one, e.g. pictures (space image) like an item's caption "
                          "(id_space caption); both must share one embedding space.")
    k: int = Field(10, ge=1, le=1000)
    mode: Literal["auto", "dense", "bm25", "hybrid"] = Field(
        "auto", description="auto: hybrid for text and id queries, dense for vectors.")
    space: str | None = Field(None, description="Vector space; left out: the only one, or 'text'.")
    filter: Filter | None = None
    exact: bool = Field(False, description="Exact search instead of the approximate index.")
    fusion: Literal["zscore", "minmax", "rrf"] = Field(
        "zscore", description="How hybrid merges rankings: weighted z-scores (the default), "
                              "weighted min-max scores, or reciprocal ranks.")
    dense_weight: float | None = Field(
        None, ge=0.0, le=1.0, description="Dense share of zscore or minmax; left out: the "
                                          "fusion's own (0.5 for zscore).")
    aggregate: Literal["max", "mean"] = Field(
        "max", description="How a long item's chunk scores combine: best chunk or mean.")
    fields: list[FieldName] | None = Field(
        None, description="Fields to return with each hit; left out: all, []: none.")
    tuned: bool = Field(False, description="Use what POST /collections/{name}/tune fitted for "
                                           "the space: its fusion (in place of fusion and "
                                           "dense_weight) and its query adapter.")

    _filter_not_sql = field_validator("filter", mode="before")(_no_sql)

    @model_validator(mode="after")
    def _one_query(self) -> SearchRequest:
        given = [name for name in ("text", "vector", "id") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'text', 'vector' or 'id' as the query; got "
                             f"{' and '.join(repr(n) for n in given) if given else 'none'}")
        if self.id_space is not None and self.id is None:
            raise ValueError("'id_space' goes with 'id': it names the space of that item's vector")
        return self


class ChunkOut(BaseModel):
    """The chunk of a long item that matched, as character offsets into its text."""

    index: int
    start: int | None
    end: int | None


class HitOut(BaseModel):
    id: str
    score: float = Field(description="Higher is better; the scale depends on the mode.")
    fields: dict[str, Any] = Field(description="Binary fields (thumbnails: WebP) come as base64.")
    chunk: ChunkOut | None = None


class SearchResponse(BaseModel):
    hits: list[HitOut]
    took_ms: float
    warnings: list[str] = Field(
        default_factory=list,
        description="What the reader must know, e.g. that the space runs on random weights.")


# -- batches ---------------------------------------------------------------------------------------
class SearchBatchRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [{"queries": [
        {"text": "read a csv file", "k": 3},
        {"text": "http server", "k": 5, "mode": "bm25",
         "filter": {"field": "section", "op": "eq", "value": "go"}},
        {"vector": [0.1, 0.2, 0.3], "k": 2, "space": "image"},
        {"id": "doc-1", "k": 10, "fields": []},
    ]}]})

    # The upper bound is a server setting (max_batch_items), checked by the route.
    queries: list[SearchRequest] = Field(
        min_length=1, description="Searches, each with its own query and options; a query that "
                                  "does not validate fails the request (422), one that fails "
                                  "when run gets its error in its place.")


class BatchAnswer(BaseModel):
    """One answer of a batch, in the place of its query: hits, or the error of that query."""

    status: int = Field(description="200, or the status the query alone would have got.")
    hits: list[HitOut] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    error: ErrorOut | None = None


class BatchResponse(BaseModel):
    answers: list[BatchAnswer] = Field(description="One per query, in the order asked.")
    took_ms: float
