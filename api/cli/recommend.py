"""``kinsight recommend`` (more like these items, or for a user, or for every user in a batch)
and ``kinsight interactions`` (load the views, likes and purchases that user profiles come from)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.parquet as pq
import typer
from rich.markup import escape
from tqdm import tqdm

from kinsight.engine import (
    RECOMMEND_MODES,
    STRATEGIES,
    Collection,
    ProfilePolicy,
    RecommendOptions,
    count_interactions,
    count_users,
    recommend_users,
)

from ..reporting import hit_to_dict, print_hits
from .common import (
    DEFAULT_STORE,
    CollectionOpt,
    JsonOpt,
    StoreOpt,
    WhereOpt,
    app,
    console,
    err,
    fail,
    one_of,
    open_store,
    pick_collection,
)

__all__ = ["ingest_interactions", "recommend_command"]

interactions_app = typer.Typer(help="Load user interactions (views, likes, purchases, "
                                    "dislikes) for per-user recommendations.")
app.add_typer(interactions_app, name="interactions")

INTERACTIONS_PER_TRANSACTION = 50_000
PARQUET_ROW_GROUP = 100_000
BATCH_SCHEMA = pa.schema([("user", pa.string()), ("rank", pa.int32()), ("item", pa.string()),
                          ("score", pa.float32())])


@app.command("recommend")
def recommend_command(
    like: Annotated[list[str] | None, typer.Option(
        "--like", help="An item to find more like; repeat for several. ID:WEIGHT weighs it.")] = None,
    unlike: Annotated[list[str] | None, typer.Option(
        "--unlike", help="An item to steer away from; repeat for several.")] = None,
    user: Annotated[str | None, typer.Option(help="Recommend for this user (from their "
                                                  "interactions; their items are left out).")] = None,
    users: Annotated[str | None, typer.Option(
        help="Batch: 'all' users with interactions, or a file with one user id per line. "
             "Needs --out.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Batch output: .parquet, or .jsonl (one line per user).")] = None,
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    k: Annotated[int, typer.Option("-k", min=1, max=10_000, help="Number of items.")] = 10,
    strategy: Annotated[str, typer.Option(
        help="average_vector (one query from the examples, fastest) | best_score (every "
             "candidate against every example).")] = "average_vector",
    mode: Annotated[str, typer.Option(
        help="hybrid (more like one text item: its vector and its words, fused) | dense "
             "(vectors alone).")] = "hybrid",
    diversity: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="0 = most relevant; higher trades relevance for variety (MMR).")
    ] = 0.0,
    where: WhereOpt = None,
    space: Annotated[list[str] | None, typer.Option(
        help="Vector space (default: the only one); repeat as NAME:WEIGHT to mix spaces.")] = None,
    include_seen: Annotated[bool, typer.Option(
        help="Let a user's own items come back.")] = False,
    half_life: Annotated[float | None, typer.Option(
        help="Days after which an interaction counts half (default 30; 0 = no decay).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recommend items: more like --like items (and unlike --unlike ones), for a --user, or for
    many --users at once into a Parquet/JSONL file (a nightly job)."""
    options = RecommendOptions(
        k=k, strategy=one_of("strategy", strategy, STRATEGIES),
        mode=one_of("mode", mode, RECOMMEND_MODES), diversity=diversity,
        where=where, space=_spaces(space), include_seen=include_seen,
        profile=ProfilePolicy() if half_life is None else ProfilePolicy(
            half_life_days=half_life or None))
    if users is not None:
        if like or unlike or user:
            fail("--users makes a batch for many users; leave out --like, --unlike and --user")
        if out is None:
            fail("--users needs --out FILE (.parquet or .jsonl) for the recommendations")
        with open_store(store, read_only=True) as opened:
            _batch(pick_collection(opened, collection), users, options, out, as_json)
        return
    if not like and user is None:
        fail("give --like ID (repeat for several), --user ID, or --users all --out FILE")
    with open_store(store, read_only=True) as opened:
        hits = pick_collection(opened, collection).recommend(
            [_weighted(x) for x in like or ()], [_weighted(x) for x in unlike or ()], options,
            user=user)
    if as_json:
        console.print_json(data=[hit_to_dict(h) for h in hits])
    else:
        what = f"user {user}" if user else ", ".join(like or ())
        print_hits(console, hits, title=f"recommended for {what} ({strategy}"
                                        f"{f', diversity {diversity}' if diversity else ''})")


def _batch(coll: Collection, users: str, options: RecommendOptions, out: Path,
           as_json: bool) -> None:
    if out.suffix not in (".parquet", ".jsonl"):
        fail(f"--out {out}: use a .parquet or .jsonl file")
    wanted = None if users == "all" else _user_file(Path(users))
    total = len(wanted) if wanted is not None else count_users(coll)
    options = dataclasses.replace(options, return_fields=())
    started = time.perf_counter()
    rows = tqdm(recommend_users(coll, wanted, options), total=total, unit="user",
                desc="recommend", disable=as_json)
    written, empty = _write_batch(out, rows)
    seconds = time.perf_counter() - started
    summary = {"users": written, "without_recommendations": empty, "out": str(out),
               "seconds": round(seconds, 3), "users_per_second": round(written / seconds, 1)}
    if as_json:
        console.print_json(data=summary)
        return
    console.print(f"wrote recommendations for {written} users to {out} in {seconds:.1f} s "
                  f"({written / seconds:,.0f} users/s)")
    if empty:
        err.print(f"[yellow]{empty} users got none[/yellow] (no interactions, only dislikes, or "
                  "everything filtered out)")


def _write_batch(out: Path, rows: Iterator[tuple[str, list[Any]]]) -> tuple[int, int]:
    """Stream to a partial file and rename it at the end, so a crash leaves no half-written
    output; Parquet gets one row per (user, rank), JSONL one line per user."""
    partial = out.with_name(out.name + ".partial")
    written = empty = 0
    sink = _ParquetRows(partial) if out.suffix == ".parquet" else _JsonlRows(partial)
    try:
        for user, hits in rows:
            written += 1
            empty += not hits
            sink.add(user, hits)
    finally:
        sink.close()
    partial.replace(out)
    return written, empty


class _ParquetRows:
    """One row per (user, rank, item, score), written a row group at a time."""

    def __init__(self, path: Path) -> None:
        self.writer = pq.ParquetWriter(path, BATCH_SCHEMA)
        self.columns: dict[str, list[Any]] = {name: [] for name in BATCH_SCHEMA.names}

    def add(self, user: str, hits: list[Any]) -> None:
        self.columns["user"] += [user] * len(hits)
        self.columns["rank"] += range(1, len(hits) + 1)
        self.columns["item"] += [h.id for h in hits]
        self.columns["score"] += [h.score for h in hits]
        if len(self.columns["user"]) >= PARQUET_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.columns["user"]:
            self.writer.write_table(pa.table(self.columns, BATCH_SCHEMA))
            self.columns = {name: [] for name in BATCH_SCHEMA.names}

    def close(self) -> None:
        self._flush()
        self.writer.close()


class _JsonlRows:
    """One line per user: {"user", "items", "scores"}."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def add(self, user: str, hits: list[Any]) -> None:
        self.file.write(json.dumps({"user": user, "items": [h.id for h in hits],
                                    "scores": [round(h.score, 6) for h in hits]}) + "\n")

    def close(self) -> None:
        self.file.close()


@interactions_app.command("ingest")
def ingest_interactions(
    path: Annotated[Path, typer.Argument(help="JSONL, CSV, TSV or Parquet file (optionally .gz) "
                                              "with one interaction per row.")],
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    user_field: Annotated[str, typer.Option(help="Column of the user id.")] = "user",
    item_field: Annotated[str, typer.Option(help="Column of the item id.")] = "item",
    kind_field: Annotated[str, typer.Option(
        help="Column of the kind: view, click, like, add_to_cart, purchase, dislike or your "
             "own (weight 1); missing: view.")] = "kind",
    weight_field: Annotated[str, typer.Option(help="Column of a weight (e.g. a rating); "
                                                   "missing: 1.")] = "weight",
    time_field: Annotated[str, typer.Option(help="Column of the time (ISO 8601 or seconds "
                                                 "since 1970); missing: now.")] = "timestamp",
    as_json: JsonOpt = False,
) -> None:
    """Append interactions from a file; bad rows are reported with file and line and skipped."""
    from kinsight.indexers.interactions import InteractionColumns, read_interactions
    from kinsight.indexers.records import Problem

    columns = InteractionColumns(user_field, item_field, kind_field, weight_field, time_field)
    problems: list[Problem] = []
    written = 0
    with open_store(store) as opened:
        coll = pick_collection(opened, collection)
        batch = []
        for entry in tqdm(read_interactions(path, columns), unit=" rows", desc="interactions",
                          disable=as_json):
            if isinstance(entry, Problem):
                problems.append(entry)
                continue
            batch.append(entry)
            if len(batch) == INTERACTIONS_PER_TRANSACTION:
                written += coll.add_interactions(batch)
                batch = []
        written += coll.add_interactions(batch)
        total = count_interactions(coll)
    if as_json:
        console.print_json(data={"written": written, "total": total, "problems": [
            {"source": p.source, "line": p.line, "message": p.message, "fix": p.fix}
            for p in problems]})
        return
    for problem in problems[:20]:
        err.print(f"[yellow]skipped[/yellow] {escape(str(problem))}", highlight=False)
    console.print(f"added {written} interactions to {coll.name} ({total} in all)"
                  f"{f', skipped {len(problems)} bad rows' if problems else ''}")


def _weighted(value: str) -> str | tuple[str, float]:
    item, _, weight = value.rpartition(":")
    if not item:
        return value
    try:
        return item, float(weight)
    except ValueError:
        return value  # an id with a colon in it


def _spaces(values: list[str] | None) -> str | dict[str, float] | None:
    if not values:
        return None
    if len(values) == 1 and ":" not in values[0]:
        return values[0]
    mix: dict[str, float] = {}
    for value in values:
        name, _, weight = value.partition(":")
        try:
            mix[name] = float(weight or 1.0)
        except ValueError:
            raise typer.BadParameter(f"--space {value!r}: give NAME or NAME:WEIGHT") from None
    return mix


def _user_file(path: Path) -> list[str]:
    if not path.is_file():
        fail(f"--users {path}: no such file; give 'all' or a file with one user id per line")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
