"""``kinsight report ...``: self-contained HTML pages of analysis runs, one sub-command per kind
of run (``clusters``; others add theirs to ``report_app``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import (
    DEFAULT_STORE,
    CollectionOpt,
    JsonOpt,
    StoreOpt,
    app,
    console,
    open_store,
    pick_collection,
)

__all__ = ["clusters_report", "report_anomalies", "report_app"]

report_app = typer.Typer(help="Write an HTML report of an analysis run: one file that opens "
                              "anywhere, offline.", no_args_is_help=True)
app.add_typer(report_app, name="report")

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")]


@report_app.command("clusters")
def clusters_report(
    run: Annotated[str | None, typer.Option(
        help="A clustering run id (see `kinsight runs`); default: the latest.")] = None,
    out: OutOpt = Path("clusters.html"),
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """A page of a clustering run: parameters, cluster names and sizes, the 2-D map, and each
    cluster's terms and representative items."""
    from kinsight.api.reports.clusters import cluster_report
    from kinsight.api.reports.page import write_report

    with open_store(store, read_only=True) as opened:
        html = cluster_report(pick_collection(opened, collection), run)
    console.print(f"wrote {write_report(out, html)}", highlight=False)


@report_app.command("anomalies")
def report_anomalies(
    run: Annotated[str | None, typer.Option(help="Run id (default: the latest anomalies run).")
                   ] = None,
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    out: OutOpt = Path("anomalies.html"),
    top: Annotated[int, typer.Option(min=1, help="Anomalies listed.")] = 50,
    thumbnail_field: Annotated[str | None, typer.Option(
        help="Field holding image thumbnails (bytes) to show beside each anomaly.")] = None,
    by: Annotated[str | None, typer.Option(
        help="Field whose values the drift table is broken down by, e.g. section.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The report of an anomalies run: parameters, score histogram with the threshold, the top
    anomalies with their fields and nearest reference items, and a 2-D map."""
    from kinsight.api.reports.anomalies import latest_anomaly_run, render_anomaly_report
    from kinsight.api.reports.page import write_report

    with open_store(store, read_only=True) as opened:
        coll = pick_collection(opened, collection)
        run_id = run or latest_anomaly_run(coll)
        html = render_anomaly_report(coll, run_id, top=top, thumbnail_field=thumbnail_field,
                                     by=by)
    path = write_report(out, html)
    if as_json:
        console.print_json(data={"run_id": run_id, "path": str(path)})
    else:
        console.print(f"wrote {path} (run {run_id})")
