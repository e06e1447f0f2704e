"""Analysis runs: what ``cluster``, ``anomalies``, ``mismatch`` and ``classify`` found, kept as
DuckDB tables tied to a run id, so results can be queried with SQL and joined with metadata.

Each run is one row of ``kinsight.runs`` (operation, collection, parameters, summary, time) and
rows in result tables of the collection's schema named ``OPERATION_TABLE``, for example
``docs.cluster_assignments`` or ``docs.anomaly_scores``, whose first column is ``run_id``::

    SELECT a.id, a.score, i.section FROM docs.anomaly_scores a JOIN docs.items i USING (id)
    WHERE a.run_id = 'anomalies-20261123-101500-3fa2' ORDER BY a.score DESC

A run and all its tables are written in one transaction: a crash leaves the whole run or none.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from .errors import InvalidInputError, NotFoundError
from .indexed_collection import IndexedCollection
from .storage import RunTables

__all__ = ["RunInfo", "get_run", "list_runs", "read_run_table", "save_run"]


@dataclass(frozen=True)
class RunInfo:
    """One analysis run: ``tables`` are the short names, read them with ``read_run_table``."""

    run_id: str
    collection: str
    operation: str
    params: dict[str, Any]
    summary: dict[str, Any]
    tables: list[str]
    created_at: datetime  # in UTC, with its offset
    table_names: dict[str, str] = field(default_factory=dict)  # short name -> qualified SQL name


def save_run(
    collection: IndexedCollection,
    operation: str,
    params: Mapping[str, Any],
    tables: Mapping[str, pa.Table],
    summary: Mapping[str, Any] | None = None,
) -> RunInfo:
    """Write a run and its result tables in one transaction; returns its info (and run id).

    ``params`` and ``summary`` must be JSON-serialisable; each table gets a ``run_id`` column
    in front and is appended to ``COLLECTION.OPERATION_NAME`` (created on first use; columns a
    later run adds are added to the table)."""
    created = datetime.now(timezone.utc)
    run_id = f"{operation}-{created:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    try:
        params_json = json.dumps(dict(params), sort_keys=True, default=str)
        summary_json = json.dumps(dict(summary or {}), sort_keys=True, default=str)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"run parameters of {operation!r} are not JSON: {e}") from e
    results = RunTables(collection.tables)
    results.save([run_id, collection.name, operation, params_json, summary_json, list(tables),
                  created.replace(tzinfo=None)],  # stored as naive UTC
                 {f"{operation}_{name}": table for name, table in tables.items()})
    return RunInfo(run_id, collection.name, operation, dict(params), dict(summary or {}),
                   list(tables), created, _qualified(results, operation, list(tables)))


def list_runs(collection: IndexedCollection, operation: str | None = None) -> list[RunInfo]:
    """The collection's runs, newest first (optionally of one operation)."""
    results = RunTables(collection.tables)
    return [RunInfo(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), list(r[5]),
                    r[6].replace(tzinfo=timezone.utc), _qualified(results, r[2], list(r[5])))
            for r in collection.tables.db.run_rows(collection.name, operation)]


def get_run(collection: IndexedCollection, run_id: str) -> RunInfo:
    for run in list_runs(collection):
        if run.run_id == run_id:
            return run
    raise NotFoundError(f"no run {run_id!r} in collection {collection.name!r}; list them with "
                        "list_runs(collection) or `kinsight runs`")


def read_run_table(collection: IndexedCollection, run_id: str, table: str) -> pa.Table:
    """One result table of a run, without its ``run_id`` column, in the order it was written."""
    run = get_run(collection, run_id)
    if table not in run.tables:
        raise NotFoundError(f"run {run_id!r} has no table {table!r}; it has "
                            f"{', '.join(run.tables) or 'none'}")
    return RunTables(collection.tables).read(f"{run.operation}_{table}", run_id)


def _qualified(results: RunTables, operation: str, tables: list[str]) -> dict[str, str]:
    return {t: results.qualified(f"{operation}_{t}") for t in tables}
