"""``kinsight classify``: a linear probe trained on frozen embeddings and a label field
(``--train``), or zero-shot labels from label prompts (``--zero-shot``)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kinsight.engine import SqlWhere, read_run_table
from kinsight.engine.probes import ProbeResult, train_probe

from .common import (
    DEFAULT_STORE,
    CollectionOpt,
    JsonOpt,
    SpaceOpt,
    StoreOpt,
    WhereOpt,
    app,
    console,
    err,
    fail,
    open_store,
)
from .results import busy, check_export_path, export_table

__all__ = ["classify"]


@app.command()
def classify(
    label_field: Annotated[str | None, typer.Option(
        help="Field holding each item's label (null: unlabelled, to be predicted). Needed by "
             "--train; with --zero-shot, scores the labels against it.")] = None,
    train: Annotated[bool, typer.Option(
        "--train", help="Train a probe on the labelled items.")] = False,
    zero_shot_labels: Annotated[str | None, typer.Option(
        "--zero-shot", help="Comma-separated labels: each item gets the closest one, no "
                            "training (e.g. \"cat,dog,car\").")] = None,
    template: Annotated[list[str] | None, typer.Option(
        help="With --zero-shot: a prompt template with {} for the label; repeat for an "
             "ensemble (default: photo/drawing/icon prompts for pictures, the label for text).")
    ] = None,
    collection: CollectionOpt = "docs",
    store: StoreOpt = DEFAULT_STORE,
    where: WhereOpt = None,
    space: SpaceOpt = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="Cross-validation folds.")] = 5,
    doubt_below: Annotated[float, typer.Option(
        min=0.001, max=0.999, help="List labelled items whose stored label gets a probability "
                                   "below this out of fold.")] = 0.1,
    out: Annotated[Path | None, typer.Option(
        help="Write every item's prediction to a .csv or .parquet file.")] = None,
    top: Annotated[int, typer.Option(min=0, help="Disagreements or predictions shown "
                                                 "(0: all).")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Label items: --train a logistic-regression head on the frozen embeddings of labelled
    items, or label them --zero-shot from label names alone.

    --train prints the cross-validated accuracy and per-class report, predicts the unlabelled
    items, and lists labelled items whose stored label the head strongly disagrees with (likely
    mislabels). --zero-shot turns each label into prompts, encodes them with the space's text
    encoder and gives each item the softmax over labels. Both are saved as runs in the store.
    """
    if train == (zero_shot_labels is not None):
        fail("pass --train (a probe on --label-field) or --zero-shot LABELS, one of the two")
    check_export_path(out)
    if zero_shot_labels is not None:
        _zero_shot(collection, store, zero_shot_labels.split(","), template, where, space,
                   label_field, out, top, as_json)
        return
    if label_field is None:
        fail("--train needs --label-field: the field holding each item's label")
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


def _zero_shot(collection: str, store: Path, labels: list[str], templates: list[str] | None,
               where: str | None, space: str | None, label_field: str | None,
               out: Path | None, top: int, as_json: bool) -> None:
    from kinsight.engine.zero_shot import zero_shot

    with open_store(store) as opened:
        coll = opened.collection(collection)
        with busy("labelling by prompts", as_json):
            result = zero_shot(coll, labels, space=space, templates=templates,
                               where=SqlWhere(where) if where else None, label_field=label_field)
        if out is not None:
            export_table(read_run_table(coll, result.run_id, "predictions"), out)
    if as_json:
        payload = dataclasses.asdict(result)
        if top:
            payload["predictions"] = payload["predictions"][:top]
        console.print_json(data=payload)
        return
    counts = Counter(p.label for p in result.predictions)
    console.print(f"zero-shot over {len(result.predictions)} items of space {result.space} "
                  f"({len(result.templates)} templates, temperature {result.temperature:g}; "
                  f"run {result.run_id})"
                  + (f": accuracy {result.accuracy:.3f} against {label_field}"
                     if result.accuracy is not None else ""))
    table = Table("label", "items")
    for label in result.labels:
        table.add_row(label, str(counts.get(label, 0)))
    console.print(table)
    least = sorted(result.predictions, key=lambda p: p.probability)[: top or None]
    doubts = Table("id", "label", "probability", title="least certain", title_justify="left")
    for p in least:
        doubts.add_row(p.id, p.label, f"{p.probability:.3f}")
    console.print(doubts)


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
