"""``kinsight mismatch``: pairs whose two spaces disagree, labels that do not fit their items, and
near-duplicate groups. Each command saves its run and prints the worst first."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from kinsight.engine import (
    DuplicateOptions,
    DuplicatesResult,
    LabelMismatchOptions,
    LabelMismatchResult,
    PairMismatchOptions,
    PairMismatchResult,
    read_run_table,
)

from ..reporting import keep_whole, print_warnings
from .common import (
    DEFAULT_STORE,
    CollectionOpt,
    JsonOpt,
    StoreOpt,
    app,
    console,
    err,
    open_store,
    pick_collection,
    print_run_hint,
)
from .option_params import options_command
from .results import check_export_path, export_table

__all__ = ["duplicates_to_dict", "label_mismatch_to_dict", "mismatch_app", "pair_mismatch_to_dict"]

mismatch_app = typer.Typer(help="What does not agree with its partner: pairs of spaces, labels, "
                                "near-duplicates.", no_args_is_help=True)
app.add_typer(mismatch_app, name="mismatch")

WhereOpt = Annotated[str | None, typer.Option(
    help="SQL WHERE over the fields choosing the items, e.g. \"section = 'net'\" (trusted local use).")]
LimitOpt = Annotated[int, typer.Option(min=1, help="Rows to print (--out writes all).")]
OutOpt = Annotated[Path | None, typer.Option(help="Also write the whole result table to .parquet or .csv.")]


@mismatch_app.command("pairs")
@options_command(PairMismatchOptions, rename={"k": "-k"})
def pairs_command(
    options: dict[str, Any],
    a: Annotated[str, typer.Option("--a", help="One space of each item, e.g. caption.")],
    b: Annotated[str, typer.Option("--b", help="Its partner space, e.g. image (same embedding space).")],
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    where: WhereOpt = None,
    limit: LimitOpt = 20,
    out: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score how badly each item's two spaces fit each other (a caption and its picture, a title and
    its text), worst first.

    The score is the share of impostor pairs (this item with other items' partners) that fit better
    than the true partner: 0 fits far better than any impostor, 0.5 no better than a typical one, 1
    worse than all. The raw cosine is shown too; it is not comparable across items.
    """
    chosen = PairMismatchOptions(**options, where=where)
    check_export_path(out)
    with open_store(store) as opened:
        coll = pick_collection(opened, collection)
        result = coll.pair_mismatch(a, b, chosen)
        _write(out, coll, result.run_id, "pair_mismatch", "scores")
    if as_json:
        console.print_json(data=pair_mismatch_to_dict(result, limit))
        return
    table = Table("id", "score", "cosine", "z", "rank",
                  title=f"{result.a} vs {result.b}: {len(result.pairs)} pairs, worst first")
    keep_whole(table, 0, [p.id for p in result.pairs[:limit]])
    for p in result.pairs[:limit]:
        table.add_row(p.id, f"{p.score:.3f}", f"{p.cosine:.3f}", f"{p.z:.2f}", f"{p.rank:.3f}")
    _finish(table, result, coll.name, store)


@mismatch_app.command("labels")
@options_command(LabelMismatchOptions, rename={"k": "-k"})
def labels_command(
    options: dict[str, Any],
    label_field: Annotated[str, typer.Option(help="The field holding each item's label.")],
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    where: WhereOpt = None,
    limit: LimitOpt = 20,
    out: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find items whose label disagrees with their nearest neighbours' labels and with a
    classifier head's cross-validated prediction (--method), worst first, with the suggested label.

    support is the weight the item's own label gets; flagged items are the --budget most likely
    errors, or (without --budget) those confident learning gives another label.
    """
    chosen = LabelMismatchOptions(**options, where=where)
    check_export_path(out)
    with open_store(store) as opened:
        coll = pick_collection(opened, collection)
        result = coll.label_mismatch(label_field, chosen)
        _write(out, coll, result.run_id, "label_mismatch", "items")
    if as_json:
        console.print_json(data=label_mismatch_to_dict(result, limit))
        return
    table = Table("id", "label", "suggested", "confidence", "support", "flagged",
                  title=f"{result.label_field} ({result.method}"
                        f"{', with words' if result.lexical else ''}): {result.flagged} of "
                        f"{len(result.items)} items flagged "
                        f"({'budget' if result.budget else 'confident learning'}), worst first")
    keep_whole(table, 0, [m.id for m in result.items[:limit]])
    for item in result.items[:limit]:
        table.add_row(item.id, item.label, item.suggested, f"{item.confidence:.2f}",
                      f"{item.support:.2f}", "yes" if item.flagged else "")
    _finish(table, result, coll.name, store)


@mismatch_app.command("duplicates")
@options_command(DuplicateOptions)
def duplicates_command(
    options: dict[str, Any],
    threshold: Annotated[str, typer.Option(
        help="Cosine at or above which two items are near-duplicates, e.g. 0.95, or 'auto' to "
             "choose it from the space's nearest-neighbour similarities.")] = "auto",
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    where: WhereOpt = None,
    limit: LimitOpt = 20,
    out: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Group exact duplicates (same content hash or vector) and near ones (cosine at or above
    --threshold, by default chosen from the data), each with a representative: the member most
    similar to the others.

    --out writes one row per member (group, id, similarity to the representative).
    """
    chosen = DuplicateOptions(**options, threshold=_threshold(threshold), where=where)
    check_export_path(out)
    with open_store(store) as opened:
        coll = pick_collection(opened, collection)
        result = coll.near_duplicates(chosen)
        _write(out, coll, result.run_id, "duplicates", "members")
    if as_json:
        console.print_json(data=duplicates_to_dict(result, limit))
        return
    how = "chosen from the data" if result.auto_threshold else "given"
    table = Table("group", "size", "exact", "mean sim", "min sim", "representative", "others",
                  title=f"{len(result.groups)} groups, {result.duplicates} duplicates among "
                        f"{result.items} items (threshold {result.threshold:.3f}, {how}; "
                        f"{result.linkage} linkage)")
    keep_whole(table, 5, [g.representative for g in result.groups[:limit]])
    for g in result.groups[:limit]:
        table.add_row(str(g.group), str(g.size), "yes" if g.exact else "", f"{g.mean_similarity:.3f}",
                      f"{g.min_similarity:.3f}", g.representative, _others(g.members[1:]))
    _finish(table, result, coll.name, store)


def _threshold(value: str) -> float | Literal["auto"]:
    if value == "auto":
        return "auto"
    try:
        return float(value)
    except ValueError:
        raise typer.BadParameter(f"--threshold must be a cosine such as 0.95 or 'auto', "
                                 f"not {value!r}") from None


def pair_mismatch_to_dict(result: PairMismatchResult, limit: int | None = None) -> dict[str, Any]:
    return {"run_id": result.run_id, "a": result.a, "b": result.b, "method": result.method,
            "impostors": result.impostors, "k": result.k, "items": len(result.pairs),
            "skipped": result.skipped, "warnings": result.warnings, "seconds": result.seconds,
            "pairs": [asdict(p) for p in result.pairs[:limit]]}


def label_mismatch_to_dict(result: LabelMismatchResult, limit: int | None = None) -> dict[str, Any]:
    return {"run_id": result.run_id, "label_field": result.label_field, "space": result.space,
            "method": result.method, "k": result.k, "budget": result.budget,
            "lexical": result.lexical, "fold_groups": result.fold_groups, "items": len(result.items),
            "flagged": result.flagged, "unlabelled": result.unlabelled, "warnings": result.warnings,
            "seconds": result.seconds, "rows": [asdict(i) for i in result.items[:limit]]}


def duplicates_to_dict(result: DuplicatesResult, limit: int | None = None) -> dict[str, Any]:
    return {"run_id": result.run_id, "space": result.space, "threshold": result.threshold,
            "auto_threshold": result.auto_threshold, "linkage": result.linkage,
            "items": result.items, "duplicates": result.duplicates, "warnings": result.warnings,
            "seconds": result.seconds,
            "groups": [{**asdict(g), "members": list(g.members), "similarities": list(g.similarities),
                        "size": g.size} for g in result.groups[:limit]]}


def _others(members: tuple[str, ...], shown: int = 3) -> str:
    more = f" (+{len(members) - shown} more)" if len(members) > shown else ""
    return ", ".join(members[:shown]) + more


def _write(out: Path | None, coll: Any, run_id: str, operation: str, table: str) -> None:
    if out is None:
        return
    rows = read_run_table(coll, run_id, table)
    export_table(rows, out)
    err.print(f"wrote {rows.num_rows} rows of {operation}_{table} to {out}", highlight=False)


def _finish(table: Table, result: PairMismatchResult | LabelMismatchResult | DuplicatesResult,
            collection: str, store: Path) -> None:
    console.print(table)
    print_warnings(console, result.warnings)
    print_run_hint(result.run_id, result.seconds, collection, store)
