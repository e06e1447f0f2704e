"""``kinsight classify --train``: a linear probe on frozen embeddings and a label field."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kinsight.engine import SqlWhere, read_run_table
from kinsight.engine.probes import ProbeResult, train_probe

from .common import DEFAULT_STORE, CollectionOpt, JsonOpt, StoreOpt, app, console, err, fail, open_store
from .results import busy, export_table

__all__ = ["classify"]


@app.command()
def classify(
    label_field: Annotated[str, typer.Option(help="Field holding each item's label (null: "
                                                  "unlabelled, to be predicted).")],
    train: Annotated[bool, typer.Option(
        "--train", help="Train a probe on the labelled items (the only mode for now).")] = False,
    collection: CollectionOpt = "docs",
    store: StoreOpt = DEFAULT_STORE,
    where: Annotated[str | None, typer.Option(
        help="SQL WHERE choosing the items, e.g. \"n_words > 20\" (trusted local use).")] = None,
    space: Annotated[str | None, typer.Option(help="Vector space (default: the only one).")] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="Cross-validation folds.")] = 5,
    doubt_below: Annotated[float, typer.Option(
        min=0.001, max=0.999, help="List labelled items whose stored label gets a probability "
                                   "below this out of fold.")] = 0.1,
    out: Annotated[Path | None, typer.Option(
        help="Write every item's prediction to a .csv or .parquet file.")] = None,
    top: Annotated[int, typer.Option(min=0, help="Disagreements shown (0: all).")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Train a logistic-regression head on the frozen embeddings of labelled items.

    Prints the cross-validated accuracy and per-class report, predicts the unlabelled items, and
    lists labelled items whose stored label the head strongly disagrees with (likely mislabels).
    Everything is saved as a run in the store (tables classify_predictions, _classes,
    _disagreements).
    """
    if not train:
        fail("pass --train: classify trains a probe on the labelled items (zero-shot "
             "classification by label prompts is not available yet)")
    with open_store(store) as opened:
        coll = opened.collection(collection)
        with busy("training the probe", as_json):
            result = train_probe(coll, label_field, space=space,
                                 where=SqlWhere(where) if where else None, folds=folds,
                                 doubt_below=doubt_below)
        if out is not None:
            export_table(read_run_table(coll, result.run_id, "predictions"), out)
    if as_json:
        payload = dataclasses.asdict(result)
        if top:
            payload["disagreements"] = payload["disagreements"][:top]
        console.print_json(data=payload)
    else:
        _print(result, top)
    if out is not None:
        err.print(f"wrote predictions to {out}")


def _print(result: ProbeResult, top: int) -> None:
    console.print(f"[bold]{result.label_field}[/bold]: cross-validated accuracy "
                  f"{result.accuracy:.3f} over {result.labelled} labelled items, "
                  f"{len(result.classes)} classes, {result.folds} folds (run {result.run_id})")
    if result.skipped_classes:
        console.print("left out (fewer labelled items than folds): " + ", ".join(
            f"{label} ({n})" for label, n in sorted(result.skipped_classes.items())))
    classes = Table(title="per class (out of fold)", title_justify="left")
    for column in ("class", "precision", "recall", "f1", "support"):
        classes.add_column(column, justify="left" if column == "class" else "right")
    for c in result.per_class:
        classes.add_row(c.label, f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}",
                        str(c.support))
    console.print(classes)
    console.print(f"predicted {len(result.predictions)} unlabelled items")
    doubts = Table(title=f"{len(result.disagreements)} labels the probe doubts",
                   title_justify="left")
    for column in ("id", "stored", "p(stored)", "suggested", "confidence"):
        doubts.add_column(column)
    for d in result.disagreements[: top or None]:
        doubts.add_row(d.id, d.stored_label, f"{d.stored_probability:.3f}", d.suggested_label,
                       f"{d.confidence:.3f}")
    console.print(doubts)
