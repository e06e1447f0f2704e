"""``kinsight classify``: a head trained on frozen embeddings and a field (``--train``, of any
``--kind``: logistic probe, k-NN, multilabel, regression), or zero-shot labels from label prompts
(``--zero-shot``); ``kinsight predict``: a head saved by ``--train`` applied to the texts or
pictures of a file."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from kinsight.engine import (
    ClassReport,
    Collection,
    HeadOptions,
    HeadPrediction,
    HeadResult,
    PredictOptions,
    PredictResult,
    ProbeResult,
    SqlWhere,
    VectorSpace,
    ZeroShotOptions,
    read_run_table,
)

from ..reporting import keep_whole, print_warnings
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
    pick_collection,
)
from .executor_options import RayOpt, WorkersOpt, encode_executor
from .option_params import options_command
from .results import busy, check_export_path, export_table

if TYPE_CHECKING:
    import numpy as np

__all__ = ["classify", "predict"]

# Pictures per call of the head (one encoder batch each); texts are encoded all at once.
PREDICT_BATCH = 256


@app.command()
# The heads' options (--zero-shot's are the command's own); the folds' seed stays Python's.
@options_command(HeadOptions, omit=("seed",))
def classify(
    options: dict[str, Any],
    label_field: Annotated[str | None, typer.Option(
        help="Field holding each item's label, list of labels or number (null: unlabelled, to "
             "be predicted). Needed by --train; with --zero-shot, scores the labels against "
             "it.")] = None,
    train: Annotated[bool, typer.Option(
        "--train", help="Train a head (--kind) on the labelled items.")] = False,
    zero_shot_labels: Annotated[str | None, typer.Option(
        "--zero-shot", help="Comma-separated labels: each item gets the closest one, no "
                            "training (e.g. \"cat,dog,car\").")] = None,
    template: Annotated[list[str] | None, typer.Option(
        help="With --zero-shot: a prompt template with {} for the label; repeat for an "
             "ensemble (default: photo/drawing/icon prompts for pictures, the label for text).")
    ] = None,
    text_fields: Annotated[str | None, typer.Option(
        help="Comma-separated free-text fields whose words get a TF-IDF block of their own "
             "beside the source text's (logistic heads; \"\": none). Default: every string "
             "field but the label and source fields whose values average two words or more."
    )] = None,
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    where: WhereOpt = None,
    space: SpaceOpt = None,
    out: Annotated[Path | None, typer.Option(
        help="Write every item's prediction to a .csv or .parquet file.")] = None,
    top: Annotated[int, typer.Option(min=0, help="Disagreements or predictions shown "
                                                 "(0: all).")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Label items: --train a head on the frozen embeddings of labelled items, or label them
    --zero-shot from label names alone.

    --train fits the --kind of head: logistic (the default for a field of text labels: a
    logistic-regression probe), knn (a similarity-weighted vote of the nearest labelled items),
    multilabel (the default for a list field: one-vs-rest logistic regression, labels above a
    threshold chosen by cross-validation) or regression (the default for a numeric field: ridge
    regression). It prints the cross-validated report (accuracy and per-class report; micro/macro
    F1 and per-label report; R² and MAE beside the mean's), predicts the unlabelled items, lists
    labelled items whose stored label the logistic probe strongly doubts (likely mislabels), and
    saves the head with the collection (--save-as; default: the label field) for `kinsight
    predict`. --zero-shot turns each label into prompts, encodes them with the space's text
    encoder and gives each item the softmax over labels. Both are saved as runs in the store.
    """
    if train == (zero_shot_labels is not None):
        fail("pass --train (a probe on --label-field) or --zero-shot LABELS, one of the two")
    check_export_path(out)
    selected = SqlWhere(where) if where else None
    if zero_shot_labels is not None:
        _zero_shot(collection, store, zero_shot_labels.split(","), ZeroShotOptions(
            space=space, templates=template, where=selected, label_field=label_field), out, top,
            as_json)
        return
    if label_field is None:
        fail("--train needs --label-field: the field holding each item's label")
    chosen = HeadOptions(**options, space=space, where=selected, text_fields=None
                         if text_fields is None else [f.strip() for f in text_fields.split(",")
                                                      if f.strip()])
    with open_store(store) as opened:
        coll = pick_collection(opened, collection)
        with busy("training the head", as_json):
            result = coll.train_head(label_field, chosen)
        if out is not None:
            export_table(read_run_table(coll, result.run_id, "predictions"), out)
    if as_json:
        payload = dataclasses.asdict(result)
        if top and isinstance(result, ProbeResult):
            payload["disagreements"] = payload["disagreements"][:top]
        console.print_json(data=payload)
    elif isinstance(result, ProbeResult):
        _print(result, top)
    else:
        _print_head(result, top)
    if out is not None:
        err.print(f"wrote predictions to {out}")


@app.command()
@options_command(PredictOptions)
def predict(
    options: dict[str, Any],
    path: Annotated[Path, typer.Argument(help="JSONL, CSV, TSV or Parquet file, a folder of "
                                              ".txt/.md files, or of pictures.")],
    head: Annotated[str | None, typer.Option(
        help="The saved head (default: the collection's only one).")] = None,
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    space: SpaceOpt = None,
    id_field: Annotated[str, typer.Option(help="Field holding each input's id.")] = "id",
    text_field: Annotated[list[str] | None, typer.Option(
        help="Field(s) to read, joined in order. Default: text.")] = None,
    image_field: Annotated[str | None, typer.Option(
        help="Read pictures: the field of a list file holding each picture's path, relative "
             "to the list file (a folder of pictures needs none).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Write every prediction to a .csv or .parquet file.")] = None,
    workers: WorkersOpt = None,
    ray_address: RayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Label the texts or pictures of a file with a head saved by `classify --train` (or give
    each its number, for a regression head), encoded as the head's space stores items (a long
    text: the mean of its chunks); refused when that space's encoder is not the head's."""
    import pyarrow as pa

    from .embed import read_inputs

    check_export_path(out)
    chosen = PredictOptions(**options, space=space)
    fields = tuple(text_field or ("text",))
    with open_store(store, read_only=True) as opened:
        coll = pick_collection(opened, collection)
        name = head if head is not None else _only_head(coll)
        info = next((h for h in coll.heads() if h.name == name), None)
        inputs = (_records(path, id_field, fields, coll.space(space or info.space).source_fields,
                           info.text_fields)
                  if info is not None and info.text_fields and image_field is None
                  and path.is_file() else read_inputs(path, id_field, fields, image_field))
        with busy(f"labelling with head {name}", as_json):
            ids, results, problems = _predict_inputs(coll, name, inputs, chosen,
                                                     workers, ray_address)
    for problem in problems[:20]:
        err.print(f"[yellow]skipped[/yellow] {escape(problem)}", highlight=False)
    if not results:
        fail(f"{path}: nothing to label ({len(problems)} problems)")
    predictions = [p for result in results for p in result.predictions]
    info = results[0].head
    if out is not None:
        export_table(pa.table({"id": ids, **_columns(info.kind, predictions)}), out)
    if as_json:
        console.print_json(data={"head": info.name, "kind": info.kind, "space": results[0].space,
                                 "predictions": [{"id": i, **dataclasses.asdict(p)}
                                                 for i, p in zip(ids, predictions, strict=True)]})
    else:
        what = ("a number" if info.kind == "regression" else
                f"{len(info.classes)} {'labels' if info.kind == 'multilabel' else 'classes'}")
        console.print(f"{info.kind} head [bold]{info.name}[/bold] ({info.label_field}, {what}, "
                      f"run {info.run_id}) over {len(ids)} inputs, space {results[0].space}")
        columns = _columns(info.kind, predictions)
        table = Table("id", *columns)
        keep_whole(table, 0, ids)
        for row in zip(ids, *columns.values(), strict=True):
            table.add_row(*map(_cell, row))
        console.print(table)
    if out is not None:
        err.print(f"wrote predictions to {out}")


def _records(path: Path, id_field: str, text_fields: tuple[str, ...], sources: Sequence[str],
             keep: Sequence[str]) -> Iterator[tuple[str, Any] | str]:
    """(id, record) per record of a file, or a problem's description: the record's text
    (``text_fields`` joined, as ``kinsight ingest`` joins them) as the space's ``sources`` hold
    it, beside its values of the head's free-text fields ``keep``."""
    from kinsight.indexers.ingest import text_of
    from kinsight.indexers.readers import read_records
    from kinsight.indexers.records import Record

    for entry in read_records(path, id_field=id_field, text_fields=text_fields):
        if not isinstance(entry, Record):
            yield str(entry)
            continue
        yield entry.id, {**{f: entry.fields.get(f) for f in keep}, **dict.fromkeys(sources),
                         (sources or ("text",))[0]: text_of(entry, text_fields)}


def _predict_inputs(coll: Collection, name: str, inputs: Iterable[tuple[str, Any] | str],
                    options: PredictOptions, workers: int | None, ray_address: str | None
                    ) -> tuple[list[str], list[PredictResult], list[str]]:
    """Ids, results and problems of ``inputs``. Texts are encoded together as ingest encodes
    items (chunk means; on Ray with ``--workers``/``--ray``); pictures, in this process, in
    batches of ``PREDICT_BATCH`` so that only one batch of decoded pictures is held at once."""
    from kinsight.indexers.embed import encode_items

    def encode_texts(space: VectorSpace, texts: Sequence[Any]) -> np.ndarray:
        executor = encode_executor({space.name: space.encoder.spec}, workers, ray_address)
        return encode_items(space, texts, executor=executor)

    ids: list[str] = []
    values: list[Any] = []
    results: list[PredictResult] = []
    problems: list[str] = []
    for entry in inputs:
        if isinstance(entry, str):
            problems.append(entry)
            continue
        ids.append(entry[0])
        values.append(entry[1])
        if isinstance(entry[1], str | dict):
            continue
        if workers or ray_address:
            fail("--workers/--ray encode texts; pictures are labelled in this process: "
                 "drop --workers/--ray")
        if len(values) >= PREDICT_BATCH:
            results.append(coll.predict(name, values, options))
            values = []
    if values:
        texts = isinstance(values[0], str | dict)
        results.append(coll.predict(name, values, options, encode=encode_texts if texts else None))
    return ids, results, problems


def _columns(kind: str, predictions: list[HeadPrediction]) -> dict[str, list[Any]]:
    """What a head of ``kind`` predicted, as the columns of a table."""
    if kind == "regression":
        return {"value": [p.value for p in predictions]}
    chosen = {"labels": [p.labels for p in predictions]} if kind == "multilabel" else {}
    return {**chosen, "label": [p.label for p in predictions],
            "probability": [p.probability for p in predictions],
            "top": [list(p.probabilities) for p in predictions],
            "top_probabilities": [list(p.probabilities.values()) for p in predictions]}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def _only_head(collection: Collection) -> str:
    names = [info.name for info in collection.heads()]
    if len(names) != 1:
        fail(f"collection {collection.name!r} has {len(names)} saved heads"
             + (f" ({', '.join(names)}): name one with --head" if names else
                ": train one with `kinsight classify --train --label-field FIELD`"))
    return names[0]


def _zero_shot(collection: str | None, store: Path, labels: list[str], options: ZeroShotOptions,
               out: Path | None, top: int, as_json: bool) -> None:
    with open_store(store) as opened:
        coll = pick_collection(opened, collection)
        with busy("labelling by prompts", as_json):
            result = coll.zero_shot(labels, options)
        if out is not None:
            export_table(read_run_table(coll, result.run_id, "predictions"), out)
    if as_json:
        payload = dataclasses.asdict(result)
        if top and len(result.predictions) > top:
            payload["predictions"] = payload["predictions"][:top]
            err.print(f"the first {top} of {len(result.predictions)} predictions (--top 0 for "
                      "all, or --out FILE)", highlight=False)
        console.print_json(data=payload)
        return
    print_warnings(console, result.warnings)
    counts = Counter(p.label for p in result.predictions)
    console.print(f"zero-shot over {len(result.predictions)} items of space {result.space} "
                  f"({len(result.templates)} templates, temperature {result.temperature:g}; "
                  f"run {result.run_id})"
                  + (f": accuracy {result.accuracy:.3f} against {options.label_field}"
                     if result.accuracy is not None else ""))
    table = Table("label", "items")
    for label in result.labels:
        table.add_row(label, str(counts.get(label, 0)))
    console.print(table)
    least = sorted(result.predictions, key=lambda p: p.probability)[: top or None]
    doubts = Table("id", "label", "probability", title="least certain", title_justify="left")
    keep_whole(doubts, 0, [p.id for p in least])
    for p in least:
        doubts.add_row(p.id, p.label, f"{p.probability:.3f}")
    console.print(doubts)


def _print_head(result: HeadResult, top: int) -> None:
    metrics = ", ".join(f"{name} {value:.3f}" for name, value in result.metrics.items())
    console.print(f"[bold]{result.label_field}[/bold]: {result.kind} head, cross-validated "
                  f"{metrics} over {result.labelled} labelled items, {result.folds} folds (run "
                  f"{result.run_id})")
    console.print(f"features: {'vectors + words' if result.lexical else 'vectors'}; "
                  f"{result.parameter} per fold "
                  f"{', '.join(f'{v:g}' for v in result.fold_parameters)}; {result.fold_groups} "
                  "groups of near-duplicates kept in one fold each")
    _print_summary(result.skipped, result.per_label[: top or None],
                   "label" if result.kind == "multilabel" else "class", len(result.predictions),
                   result.head)


def _print(result: ProbeResult, top: int) -> None:
    console.print(f"[bold]{result.label_field}[/bold]: cross-validated accuracy "
                  f"{result.accuracy:.3f} over {result.labelled} labelled items, "
                  f"{len(result.classes)} classes, {result.folds} folds (run {result.run_id})")
    fields = "".join(f" + {f} words" for f in result.text_fields)
    console.print(f"head: logistic regression on {'vectors + words' if result.lexical else 'vectors'}"
                  f"{fields}, C per fold {', '.join(f'{c:g}' for c in result.fold_regularizations)}"
                  f"; {result.fold_groups} groups of near-duplicates kept in one fold each")
    _print_summary(result.skipped_classes, result.per_class, "class", len(result.predictions),
                   result.head)
    doubts = Table(title=f"{len(result.disagreements)} labels the probe doubts",
                   title_justify="left")
    for column in ("id", "stored", "p(stored)", "suggested", "confidence"):
        doubts.add_column(column)
    keep_whole(doubts, 0, [d.id for d in result.disagreements[: top or None]])
    for d in result.disagreements[: top or None]:
        doubts.add_row(d.id, d.stored_label, f"{d.stored_probability:.3f}", d.suggested_label,
                       f"{d.confidence:.3f}")
    console.print(doubts)


def _print_summary(skipped: dict[str, int], reports: list[ClassReport], what: str,
                   predicted: int, head: str) -> None:
    """What every trained head prints: the labels left out, the out-of-fold report of each
    ``what`` (class or label; none for a regression head) and where the head was saved."""
    if skipped:
        console.print("left out (fewer labelled items than folds): " + ", ".join(
            f"{label} ({n})" for label, n in sorted(skipped.items())))
    if reports:
        table = Table(title=f"per {what} (out of fold)", title_justify="left")
        for column in (what, "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == what else "right")
        for c in reports:
            table.add_row(c.label, f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}",
                          str(c.support))
        console.print(table)
    console.print(f"predicted {predicted} unlabelled items; saved head [bold]{head}[/bold] "
                  f"(apply it: kinsight predict FILE --head {head})")
