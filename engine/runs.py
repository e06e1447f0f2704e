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
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .errors import InvalidInputError, NotFoundError
from .schema import quote

if TYPE_CHECKING:
    from .collection import Collection

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
    collection: Collection,
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
    with collection.store.writing() as con:
        for name, table in tables.items():
            _append(con, collection, f"{operation}_{name}", run_id, table)
        con.execute("INSERT INTO kinsight.runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [run_id, collection.name, operation, params_json, summary_json,
                     list(tables), created.replace(tzinfo=None)])  # stored as naive UTC
    return RunInfo(run_id, collection.name, operation, dict(params), dict(summary or {}),
                   list(tables), created, _qualified(collection, operation, list(tables)))


def list_runs(collection: Collection, operation: str | None = None) -> list[RunInfo]:
    """The collection's runs, newest first (optionally of one operation)."""
    sql = ("SELECT run_id, collection, operation, params, summary, tables, created_at "
           "FROM kinsight.runs WHERE collection = ?")
    params: list[Any] = [collection.name]
    if operation is not None:
        sql += " AND operation = ?"
        params.append(operation)
    if not _catalog_exists(collection):
        return []
    rows = collection.store.cursor().execute(sql + " ORDER BY created_at DESC, run_id DESC",
                                             params).fetchall()
    return [RunInfo(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), list(r[5]),
                    r[6].replace(tzinfo=timezone.utc), _qualified(collection, r[2], list(r[5])))
            for r in rows]


def get_run(collection: Collection, run_id: str) -> RunInfo:
    for run in list_runs(collection):
        if run.run_id == run_id:
            return run
    raise NotFoundError(f"no run {run_id!r} in collection {collection.name!r}; list them with "
                        "list_runs(collection) or `kinsight runs`")


def read_run_table(collection: Collection, run_id: str, table: str) -> pa.Table:
    """One result table of a run, without its ``run_id`` column, in the order it was written."""
    run = get_run(collection, run_id)
    if table not in run.tables:
        raise NotFoundError(f"run {run_id!r} has no table {table!r}; it has "
                            f"{', '.join(run.tables) or 'none'}")
    return collection.store.cursor().sql(
        f"SELECT * EXCLUDE (run_id) FROM {run.table_names[table]} WHERE run_id = ? "
        "ORDER BY _row", params=[run_id]).to_arrow_table().drop_columns(["_row"])


def _append(con: Any, collection: Collection, table_name: str, run_id: str,
            table: pa.Table) -> None:
    target = f"{quote(collection.name)}.{quote(table_name)}"
    # _row keeps the order the operation wrote (ranked results stay ranked when read back).
    con.register("_run_rows", table.append_column("_row", pa.array(range(table.num_rows),
                                                                   pa.int64())))
    try:
        existing = {r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ?",
            [collection.name, table_name]).fetchall()}
        if not existing:
            con.execute(f"CREATE TABLE {target} AS SELECT ?::VARCHAR AS run_id, * "
                        "FROM _run_rows LIMIT 0", [run_id])
        else:
            for name, kind in con.execute("SELECT column_name, column_type FROM "
                                          "(DESCRIBE SELECT * FROM _run_rows)").fetchall():
                if name not in existing:
                    con.execute(f"ALTER TABLE {target} ADD COLUMN {quote(name)} {kind}")
        con.execute(f"INSERT INTO {target} BY NAME SELECT ?::VARCHAR AS run_id, * FROM _run_rows",
                    [run_id])
    finally:
        con.unregister("_run_rows")


def _qualified(collection: Collection, operation: str, tables: list[str]) -> dict[str, str]:
    return {t: f"{quote(collection.name)}.{quote(f'{operation}_{t}')}" for t in tables}


def _catalog_exists(collection: Collection) -> bool:
    """False in a read-only store made before runs existed."""
    return bool(collection.store.scalar(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'kinsight' "
        "AND table_name = 'runs'"))
