"""``kinsight report ...``: self-contained HTML pages of analysis runs, one sub-command per kind
of run (``clusters``; others add theirs to ``report_app``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DEFAULT_STORE, CollectionOpt, StoreOpt, app, console, open_store

__all__ = ["report_app"]

report_app = typer.Typer(help="Write an HTML report of an analysis run: one file that opens "
                              "anywhere, offline.", no_args_is_help=True)
app.add_typer(report_app, name="report")

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")]


@report_app.command("clusters")
def clusters_report(
    run: Annotated[str | None, typer.Option(
        help="A clustering run id (see `kinsight runs`); default: the latest.")] = None,
    out: OutOpt = Path("clusters.html"),
    collection: CollectionOpt = "docs",
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """A page of a clustering run: parameters, cluster names and sizes, the 2-D map, and each
    cluster's terms and representative items."""
    from kinsight.api.reports.clusters import cluster_report
    from kinsight.api.reports.page import write_report

    with open_store(store, read_only=True) as opened:
        html = cluster_report(opened.collection(collection), run)
    console.print(f"wrote {write_report(out, html)}", highlight=False)
