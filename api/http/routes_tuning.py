"""Tuning: fit a text space's search to relevance judgments (``search`` with ``tuned: true``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kinsight.engine import JudgedQuery, TuneOptions

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


@from_options(TuneOptions)
class TuneRequest(OptionsRequest):
    """Judged queries (the lines of a queries.jsonl) and their judgments ``{qid: {doc_id:
    rel}}`` (a qrels.tsv), and how to tune (the engine's ``TuneOptions``)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "queries": [{"qid": "q1", "text": "read a csv file"}, {"qid": "q2", "text": "web server"}],
        "qrels": {"q1": {"python3-pandas": 1}, "q2": {"nginx": 1}}, "seed": 0}]})

    queries: list[JudgedQueryIn] = Field(max_length=1_000_000)
    qrels: dict[str, dict[str, int]] = Field(
        description="Relevance grades by qid and item id; a grade <= 0 is not relevant.")


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
    report = collection.tune([JudgedQuery(q.qid, q.text) for q in body.queries], body.qrels,
                             body.to_options(TuneOptions))
    return TuneResponse(
        space=report.space, fusion=vars(report.fusion), adapter=report.adapter,
        queries=report.queries, held_out=report.held_out, best_epoch=report.best_epoch,
        stopped_epoch=report.stopped_epoch,
        curve=[EpochOut(epoch=e.epoch, loss=e.loss, validation_ndcg=e.validation_ndcg)
               for e in report.curve], took_ms=report.seconds * 1000)
