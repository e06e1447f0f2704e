"""``kinsight runs``: the analysis runs saved in a collection (cluster, anomalies, ...) and their
result tables, printed, as JSON, or exported to Parquet or CSV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from kinsight.engine import Collection, RunInfo, get_run, list_runs, read_run_table

from ..reporting import keep_whole
from .common import (
    DEFAULT_STORE,
    CollectionOpt,
    JsonOpt,
    StoreOpt,
    app,
    console,
    fail,
    open_store,
    pick_collection,
)
from .results import check_export_path, export_table

__all__ = ["run_to_dict", "runs_app"]

runs_app = typer.Typer(
    help="Analysis runs of a collection. With no command: list them, newest first.",
    invoke_without_command=True, no_args_is_help=False)
app.add_typer(runs_app, name="runs")


@runs_app.callback()
def list_command(
    ctx: typer.Context,
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    operation: Annotated[str | None, typer.Option(
        help="Only runs of this operation (cluster, anomalies, ...).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the analysis runs of a collection, newest first (see `kinsight runs show`)."""
    if ctx.invoked_subcommand is not None:
        return
    with open_store(store, read_only=True) as opened:
        coll = pick_collection(opened, collection)
        runs = list_runs(coll, operation)
    if as_json:
        console.print_json(data=[run_to_dict(r) for r in runs])
        return
    table = Table("run id", "operation", "created (UTC)", "tables", "summary",
                  title=f"runs of {coll.name}")
    keep_whole(table, 0, [run.run_id for run in runs])
    for run in runs:
        table.add_row(run.run_id, run.operation, f"{run.created_at:%Y-%m-%d %H:%M:%S}",
                      ", ".join(run.tables), _brief(run.summary))
    console.print(table if runs else f"collection {coll.name!r} has no runs yet")


@runs_app.command("show")
def show_command(
    run_id: Annotated[str, typer.Argument(
        help="The run id (see `kinsight runs`), or 'latest' for the newest run.")],
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    table: Annotated[str | None, typer.Option(
        "--table", "-t", help="A result table of the run; left out: the run's parameters.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows to print (--out writes all).")] = 20,
    out: Annotated[Path | None, typer.Option(
        help="Write the whole table to a .parquet or .csv file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a run: its parameters and summary, or the rows of one of its tables (--table).

    The tables are also plain DuckDB tables, COLLECTION.OPERATION_TABLE with a run_id column, for
    SQL joins with the items' fields.
    """
    check_export_path(out)
    if out is not None and table is None:
        fail("--out needs --table: which of the run's tables to write")
    with open_store(store, read_only=True) as opened:
        coll = pick_collection(opened, collection)
        run = _latest(coll) if run_id == "latest" else get_run(coll, run_id)
        rows = read_run_table(coll, run.run_id, table) if table is not None else None
    if rows is None:
        if as_json:
            console.print_json(data=run_to_dict(run))
        else:
            _print_run(run)
        return
    if out is not None:
        export_table(rows, out)
        console.print(f"wrote {rows.num_rows} rows to {out}", highlight=False)
    elif as_json:
        console.print_json(data=rows.slice(0, limit).to_pylist())
    else:
        shown = Table(*rows.column_names, title=f"{table} of {run_id} ({rows.num_rows} rows)")
        for row in rows.slice(0, limit).to_pylist():
            shown.add_row(*(_cell(v) for v in row.values()))
        console.print(shown)


def run_to_dict(run: RunInfo) -> dict[str, Any]:
    return {"run_id": run.run_id, "collection": run.collection, "operation": run.operation,
            "params": run.params, "summary": run.summary, "tables": run.tables,
            "sql_tables": run.table_names, "created_at": run.created_at.isoformat()}


def _print_run(run: RunInfo) -> None:
    table = Table("", "", show_header=False, title=f"{run.operation} run {run.run_id}")
    table.add_row("created (UTC)", f"{run.created_at:%Y-%m-%d %H:%M:%S}")
    for key, value in {**run.params, **run.summary}.items():
        table.add_row(key, _cell(value))
    for name, sql in run.table_names.items():
        table.add_row(f"table {name}", f"{sql} WHERE run_id = '{run.run_id}'")
    console.print(table)


def _brief(summary: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_cell(v)}" for k, v in summary.items() if not isinstance(v, dict | list))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return "" if value is None else str(value)


def _latest(coll: Collection) -> RunInfo:
    runs = list_runs(coll)
    if not runs:
        fail(f"collection {coll.name!r} has no runs yet; run cluster, anomalies, classify or "
             "mismatch first")
    return runs[0]
