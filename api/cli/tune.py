"""``kinsight tune``: fit a text space's search to relevance judgments; ``search --tuned`` uses it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from kinsight.engine import TuneOptions, TuneReport, load_clicks, load_qrels, load_queries

from .common import (
    DEFAULT_STORE,
    CollectionOpt,
    JsonOpt,
    SpaceOpt,
    StoreOpt,
    app,
    console,
    kinsight_command,
    open_store,
    pick_collection,
    progress_bar,
)
from .option_params import options_command

__all__ = ["tune_command", "tune_report_to_dict"]

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


@app.command("tune")
@options_command(TuneOptions)
def tune_command(
    options: dict[str, Any],
    queries: Annotated[Path | None, typer.Option(help="JSONL of {\"qid\", \"text\"} (with --qrels).")
                       ] = None,
    qrels: Annotated[Path | None, typer.Option(help="TSV with header qid, doc_id, rel.")] = None,
    clicks: Annotated[Path | None, typer.Option(
        help="Instead of --queries/--qrels: a search log, one click per line, as JSONL "
        "{\"query\", \"id\"} or CSV/TSV with the header query,id; a query's clicked items "
        "are its relevant ones.")] = None,
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    space: SpaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit search to relevance judgments: the hybrid fusion and a query adapter of the dense
    space, saved with the space for `search --tuned`.

    The judged queries are split by --seed: --held-out of them are only scored, and the table
    shows the default search and the tuned one on them (nDCG@10, Recall@10/100, MRR@10), in
    hybrid (what `search` does) and in dense mode. The rest train the adapter (contrastive, on
    the frozen vectors, stopped early on --validation of them) and choose the fusion. Search
    uses the tuning only when asked (`search --tuned`, HTTP "tuned": true): a tune fits one
    user's judgments, so results change only where that user says so.
    """
    if clicks is not None and queries is None and qrels is None:
        judged, judgments = load_clicks(clicks)
    elif clicks is None and queries is not None and qrels is not None:
        judged, judgments = load_queries(queries), load_qrels(qrels)
    else:
        raise typer.BadParameter("give either --queries FILE and --qrels FILE (judgments), or "
                                 "--clicks FILE (a search log of {query, id} clicks)")
    with open_store(store) as opened:
        coll = pick_collection(opened, collection)
        with progress_bar("tune", enabled=not as_json) as progress:
            report = coll.tune(judged, judgments, TuneOptions(**options, space=space),
                               progress=progress)
    if as_json:
        console.print_json(data=tune_report_to_dict(report))
        return
    table = Table("search", *(m.replace("ndcg", "nDCG").replace("recall", "Recall")
                              .replace("mrr", "MRR") for m in METRICS),
                  title=f"held-out queries ({report.queries['held_out']}, not trained on)")
    for name, scores in report.held_out.items():
        table.add_row(name, *(f"{scores[m]:.3f}" for m in METRICS))
    console.print(table)
    fusion = report.fusion
    chosen = "rrf" if fusion.method == "rrf" else f"{fusion.normalise}, dense weight " \
                                                  f"{fusion.dense_weight:.2f}"
    adapter = (f"query adapter of epoch {report.best_epoch} (stopped at {report.stopped_epoch})"
               if report.adapter else "no query adapter (none beat the untuned vectors)")
    console.print(f"tuned space {report.space!r} on {report.queries['train']} queries "
                  f"(+{report.queries['validation']} validation; {report.queries['skipped']} "
                  f"without a relevant item skipped): fusion {chosen}; {adapter}; "
                  f"{report.seconds:.1f} s", highlight=False, soft_wrap=True)
    console.print("search with it: " + kinsight_command(
        "search", "TEXT", "--tuned", "--collection", coll.name, store=store),
        highlight=False, soft_wrap=True)


def tune_report_to_dict(report: TuneReport) -> dict[str, Any]:
    """The report as JSON-ready data (the CLI's --json and the HTTP route's response)."""
    return {"space": report.space, "fusion": asdict(report.fusion), "adapter": report.adapter,
            "queries": report.queries, "held_out": report.held_out,
            "best_epoch": report.best_epoch, "stopped_epoch": report.stopped_epoch,
            "curve": [asdict(e) for e in report.curve], "seconds": report.seconds}
