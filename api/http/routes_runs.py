"""Analysis runs of a collection (cluster, anomalies, ...): list them and page through their
result tables, whatever operation made them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kinsight.engine import RunInfo, get_run, list_runs, read_run_table

from .deps import CollectionDep
from .models import ErrorOut
from .models_analysis import RunList, RunOut, RunTableOut

__all__ = ["router"]

router = APIRouter(prefix="/collections/{name}/runs", tags=["analysis"],
                   responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}})


@router.get("", summary="List the analysis runs, newest first")
def list_collection_runs(
    collection: CollectionDep,
    operation: Annotated[str | None, Query(description="Only runs of this operation.")] = None,
) -> RunList:
    return RunList(runs=[_run_out(r) for r in list_runs(collection, operation)])


@router.get("/{run_id}", summary="A run's parameters, summary and table names")
def get_collection_run(run_id: str, collection: CollectionDep) -> RunOut:
    return _run_out(get_run(collection, run_id))


@router.get("/{run_id}/{table}", summary="Rows of one result table of a run, a page at a time")
def read_collection_run_table(
    run_id: str, table: str, collection: CollectionDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> RunTableOut:
    rows = read_run_table(collection, run_id, table)
    return RunTableOut(run_id=run_id, table=table, total=rows.num_rows, offset=offset,
                       rows=rows.slice(offset, limit).to_pylist())


def _run_out(run: RunInfo) -> RunOut:
    return RunOut(run_id=run.run_id, operation=run.operation, params=run.params,
                  summary=run.summary, tables=run.tables, created_at=run.created_at)
