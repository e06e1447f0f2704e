"""``kinsight report ...``: turn a saved analysis run into one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DEFAULT_STORE, CollectionOpt, JsonOpt, StoreOpt, app, console, open_store

__all__ = ["report_anomalies", "report_app"]

report_app = typer.Typer(help="Turn a saved analysis run into a self-contained HTML report.",
                         no_args_is_help=True)
app.add_typer(report_app, name="report")


@report_app.command("anomalies")
def report_anomalies(
    run: Annotated[str | None, typer.Option(help="Run id (default: the latest anomalies run).")
                   ] = None,
    collection: CollectionOpt = "docs",
    store: StoreOpt = DEFAULT_STORE,
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("anomalies.html"),
    top: Annotated[int, typer.Option(min=1, help="Anomalies listed.")] = 50,
    thumbnail_field: Annotated[str | None, typer.Option(
        help="Field holding image thumbnails (bytes) to show beside each anomaly.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The report of an anomalies run: parameters, score histogram with the threshold, the top
    anomalies with their fields and nearest reference items, and a 2-D map."""
    from kinsight.api.reports.anomalies import latest_anomaly_run, render_anomaly_report
    from kinsight.api.reports.page import write_report

    with open_store(store, read_only=True) as opened:
        coll = opened.collection(collection)
        run_id = run or latest_anomaly_run(coll)
        html = render_anomaly_report(coll, run_id, top=top, thumbnail_field=thumbnail_field)
    path = write_report(out, html)
    if as_json:
        console.print_json(data={"run_id": run_id, "path": str(path)})
    else:
        console.print(f"wrote {path} (run {run_id})")
