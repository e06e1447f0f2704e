"""``kinsight anomalies``: score items against a reference set, flag those that stand out."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from kinsight.engine import (
    AnomalyOptions,
    AnomalyResult,
    Collection,
    NewVectors,
    ReferenceModel,
    SqlWhere,
    fit_reference,
    read_run_table,
)

from ..reporting import keep_whole
from .common import (
    DEFAULT_STORE,
    CollectionOpt,
    JsonOpt,
    StoreOpt,
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
    from kinsight.indexers.executors import EncodeExecutor

__all__ = ["anomalies_command"]


@app.command("anomalies")
# Of the detectors' own parameters the terminal has the one it always had; the rest are Python's.
@options_command(AnomalyOptions, omit=("aggregate", "n_estimators", "seed", "n_components",
                                       "vector_weight"),
                 rename={"threshold_percentile": "--threshold", "n_neighbors": "--neighbours",
                         "neighbours": "--explain"},
                 defaults={"neighbours": 3})
def anomalies_command(
    options: dict[str, Any],
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    reference_where: Annotated[str | None, typer.Option(
        help="SQL WHERE choosing the reference (normal) items, e.g. \"section = 'python'\". "
             "Default: every item.")] = None,
    reference_collection: Annotated[str | None, typer.Option(
        help="Use every item of another collection (same encoder) as the reference.")] = None,
    target_where: Annotated[str | None, typer.Option(
        help="SQL WHERE choosing the items to score. Default: every item (reference items get "
             "their out-of-sample score).")] = None,
    targets: Annotated[Path | None, typer.Option(
        help="Score new items from a JSONL, CSV or Parquet file instead (encoded, not stored).")
                       ] = None,
    text_field: Annotated[list[str] | None, typer.Option(
        help="With --targets: field(s) holding the text (default: text).")] = None,
    id_field: Annotated[str, typer.Option(help="With --targets: field holding ids.")] = "id",
    detector: Annotated[Path | None, typer.Option(
        help="Reuse a detector saved with --save-detector instead of fitting one.")] = None,
    save_detector: Annotated[Path | None, typer.Option(
        help="Save the fitted detector to this file, to score later batches with --detector.")
                             ] = None,
    out: Annotated[Path | None, typer.Option(
        help="Write every score to a .csv or .parquet file.")] = None,
    top: Annotated[int, typer.Option(min=0, help="Items shown, worst first (0: all).")] = 20,
    workers: WorkersOpt = None,
    ray_address: RayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit a detector on reference items, score the targets, flag those past the threshold.

    Scores are calibrated as percentiles of the reference (each reference item scored without
    itself), so --threshold 95 flags about 5% of items that look like the reference, whatever
    the method. The run is saved in the store: `kinsight report anomalies` turns it into HTML.
    """
    chosen = AnomalyOptions(**options)
    if reference_where is not None and reference_collection is not None:
        fail("give --reference-where or --reference-collection, not both")
    if targets is not None and target_where is not None:
        fail("give --target-where or --targets, not both")
    if (workers or ray_address) and targets is None:
        fail("--workers/--ray encode the new items of --targets FILE; stored items are not "
             "encoded again")
    if detector is not None and (reference_where or reference_collection):
        fail("--detector brings its own reference; leave out --reference-where/-collection")
    check_export_path(out)
    with open_store(store) as opened:
        coll = pick_collection(opened, collection)
        chosen_space = coll.space(chosen.space)
        reference: Any = SqlWhere(reference_where) if reference_where else None
        if reference_collection is not None:
            reference = opened.collection(reference_collection)
        if detector is not None:
            model = ReferenceModel.load(detector, chosen_space)
        else:
            with busy("fitting the detector", as_json):
                model = fit_reference(coll, chosen, reference=reference)
        if save_detector is not None:
            model.save(save_detector)
        target_set: Any = SqlWhere(target_where) if target_where else None
        if targets is not None:
            executor = encode_executor({chosen_space.name: chosen_space.encoder.spec}, workers,
                                       ray_address)
            target_set = _new_items(chosen_space, targets, tuple(text_field or ["text"]), id_field,
                                    executor)
        with busy("scoring", as_json):
            result = coll.anomalies(chosen, targets=target_set, model=model)
        if out is not None:
            export_table(read_run_table(coll, result.run_id, "scores"), out)
        shown = result.scores if top == 0 else result.scores[:top]
        if as_json:
            console.print_json(data={
                "run_id": result.run_id, "method": result.method,
                "threshold_percentile": result.threshold_percentile,
                "threshold": result.threshold, "reference": result.n_reference,
                "targets": len(result.scores), "anomalies": len(result.anomalies),
                "expected_share": result.drift.expected,
                "drift_p_value": result.drift.p_value,
                "scores": [dataclasses.asdict(s) for s in shown]})
            return
        _print(coll, result, shown)
    if save_detector is not None:
        err.print(f"saved detector to {save_detector}")
    if out is not None:
        err.print(f"wrote {len(result.scores)} scores to {out}")


def _new_items(space: Any, path: Path, text_fields: tuple[str, ...], id_field: str,
               executor: EncodeExecutor | None) -> NewVectors:
    from kinsight.indexers import Problem, Record, read_records
    from kinsight.indexers.embed import encode_items

    records: list[Record] = []
    for entry in read_records(path, id_field=id_field, text_fields=text_fields):
        if isinstance(entry, Problem):
            err.print(f"[yellow]skipped[/yellow] {escape(str(entry))}", highlight=False)
        else:
            records.append(entry)
    if not records:
        fail(f"{path} has no usable records with text in {', '.join(text_fields)}")
    texts = ["\n\n".join(str(r.fields[f]).strip() for f in text_fields if r.fields.get(f))
             for r in records]
    return NewVectors(encode_items(space, texts, executor=executor), ids=[r.id for r in records],
                      texts=texts)


def _print(coll: Collection, result: AnomalyResult, shown: list[Any]) -> None:
    fields = coll.fields_of([s.id for s in shown])
    table = Table(title=f"{result.method} anomalies: {len(result.anomalies)} of "
                        f"{len(result.scores)} items past the {result.threshold_percentile:g}th "
                        f"percentile (run {result.run_id})", title_justify="left", expand=True)
    for name, options in (("#", {"justify": "right", "width": 4}), ("id", {"ratio": 2}),
                          ("pct", {"justify": "right", "width": 6}), ("flag", {"width": 4}),
                          ("nearest reference items", {"ratio": 3}),
                          ("unusual words", {"ratio": 2}), ("text", {"ratio": 3})):
        table.add_column(name, overflow="fold", **options)  # type: ignore[arg-type]
    keep_whole(table, 1, [score.id for score in shown])
    for rank, score in enumerate(shown, start=1):
        item = fields.get(score.id, {})
        text = " ".join(str(item.get("title") or item.get("text") or "").split())[:160]
        near = ", ".join(f"{n.id} ({n.similarity:.2f})" for n in score.neighbours)
        table.add_row(str(rank), score.id, f"{score.percentile:.1f}",
                      "[red]yes[/red]" if score.is_anomaly else "", near,
                      ", ".join(score.unusual_words), text)
    console.print(table)
    drift = result.drift
    err.print(f"{drift.flagged} of {drift.items} flagged ({drift.share:.1%}; a batch drawn like "
              f"the reference: {drift.expected:.1%}); binomial p = {drift.p_value:.3g}",
              highlight=False)
