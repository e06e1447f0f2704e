"""Tuning: fit a text space's search to relevance judgments (``search`` with ``tuned: true``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from kinsight.engine import JudgedQuery, TuneOptions, judgments_from_clicks

from .deps import CollectionDep
from .models import ErrorOut
from .option_models import OptionsRequest, from_options

__all__ = ["TuneRequest", "TuneResponse", "router"]

router = APIRouter(prefix="/collections/{name}", tags=["search"],
                   responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}})

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class JudgedQueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    qid: Text = Field(description="The query's key into qrels.")
    text: Text


class ClickIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Text = Field(description="What was searched.")
    id: Text = Field(description="The item clicked in its results.")


@from_options(TuneOptions)
class TuneRequest(OptionsRequest):
    """Judged queries (the lines of a queries.jsonl) and their judgments ``{qid: {doc_id:
    rel}}`` (a qrels.tsv), or clicks instead of both, and how to tune (the engine's
    ``TuneOptions``)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "queries": [{"qid": "q1", "text": "read a csv file"}, {"qid": "q2", "text": "web server"}],
        "qrels": {"q1": {"python3-pandas": 1}, "q2": {"nginx": 1}}, "seed": 0}, {
        "clicks": [{"query": "read a csv file", "id": "python3-pandas"},
                   {"query": "web server", "id": "nginx"}]}]})

    queries: list[JudgedQueryIn] | None = Field(None, max_length=1_000_000)
    qrels: dict[str, dict[str, int]] | None = Field(
        None, description="Relevance grades by qid and item id; a grade <= 0 is not relevant.")
    clicks: list[ClickIn] | None = Field(
        None, max_length=10_000_000, description="Instead of queries and qrels: a search log, "
        "one click per entry; a query's clicked items are its relevant ones (one judged query "
        "per distinct text, case and spacing ignored).")

    @model_validator(mode="after")
    def _one_kind_of_judgments(self) -> TuneRequest:
        judged = self.clicks is None and self.queries is not None and self.qrels is not None
        clicked = self.clicks is not None and self.queries is None and self.qrels is None
        if not (judged or clicked):
            raise ValueError("give either queries and qrels (judgments), or clicks (a search "
                             "log of {query, id} entries)")
        return self

    def judgments(self) -> tuple[list[JudgedQuery], dict[str, dict[str, int]]]:
        """The judged queries and their judgments, from whichever kind was given."""
        if self.clicks is not None:
            return judgments_from_clicks((c.query, c.id) for c in self.clicks)
        assert self.queries is not None and self.qrels is not None
        return [JudgedQuery(q.qid, q.text) for q in self.queries], self.qrels


class EpochOut(BaseModel):
    epoch: int
    loss: float | None = Field(description="Mean training loss; null for epoch 0 (untuned).")
    validation_ndcg: float = Field(description="Dense nDCG@10 of the validation queries.")


class TuneResponse(BaseModel):
    space: str
    fusion: dict[str, float | int | str] = Field(description="The fusion chosen (tuned search's).")
    adapter: bool = Field(description="Whether a query adapter beat the untuned vectors.")
    queries: dict[str, int] = Field(description="Queries in train, validation and held_out, and "
                                                "skipped (no relevant item in the collection).")
    held_out: dict[str, dict[str, float]] = Field(
        description="nDCG@10, recall@10/100, MRR@10 on the held-out queries (never trained on) "
                    "of the default search, the tuned one, and both in mode dense.")
    best_epoch: int
    stopped_epoch: int
    curve: list[EpochOut]
    took_ms: float


@router.post("/tune", summary="Fit the space's fusion and query adapter to judged queries")
def tune_collection(body: TuneRequest, collection: CollectionDep) -> TuneResponse:
    """Splits the judged queries by ``seed``, trains on some and reports on the held-out rest;
    the tuned settings are saved with the space and used by searches that ask for ``tuned``."""
    report = collection.tune(*body.judgments(), body.to_options(TuneOptions))
    return TuneResponse(
        space=report.space, fusion=vars(report.fusion), adapter=report.adapter,
        queries=report.queries, held_out=report.held_out, best_epoch=report.best_epoch,
        stopped_epoch=report.stopped_epoch,
        curve=[EpochOut(epoch=e.epoch, loss=e.loss, validation_ndcg=e.validation_ndcg)
               for e in report.curve], took_ms=report.seconds * 1000)
