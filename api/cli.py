"""The ``kinsight`` command line: ingest, search, collections, serve, demo, evaluate.

Every command that reads a store takes ``--store`` (default: ``$KINSIGHT_STORE``, then
``./kinsight-store``); every query command has ``--json``. Errors print one line saying what went
wrong and how to fix it, and exit with status 2.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.console import Console
from rich.table import Table

from kinsight.engine import DEFAULT_TEXT_ENCODER, ById, Fusion, KinsightError, Store
from kinsight.engine.search import SearchMode, SearchOptions, search_many

from .reporting import hit_to_dict, print_hits

__all__ = ["app", "main"]

app = typer.Typer(
    name="kinsight",
    help="Embedding search over your documents: ingest files, then search them by meaning, "
         "by keywords (BM25) or both (hybrid), from here, Python or HTTP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
collections_app = typer.Typer(help="List, inspect and drop collections.", no_args_is_help=False)
app.add_typer(collections_app, name="collections")

console = Console()
err = Console(stderr=True)

StoreOpt = Annotated[Path, typer.Option(
    "--store", envvar="KINSIGHT_STORE", help="Store directory (created on first ingest).")]
CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DEFAULT_STORE = Path("kinsight-store")


@contextmanager
def _store(path: Path, *, read_only: bool = False) -> Iterator[Store]:
    """Open the store; any kinsight error becomes one line on stderr and exit status 2."""
    try:
        with Store(path, read_only=read_only) as store:
            yield store
    except KinsightError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(2) from e


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False
           ) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="JSONL, CSV, TSV or Parquet file (optionally .gz), "
                                              "or a folder of .txt/.md files.")],
    collection: CollectionOpt = "docs",
    store: StoreOpt = DEFAULT_STORE,
    id_field: Annotated[str, typer.Option(help="Field holding each item's unique id.")] = "id",
    text_field: Annotated[list[str] | None, typer.Option(
        help="Field(s) to embed; repeat for several (joined in order). Default: text.")] = None,
    encoder: Annotated[str, typer.Option(help="Encoder spec, SCHEME:MODEL.")] = DEFAULT_TEXT_ENCODER,
    space: Annotated[str, typer.Option(help="Name of the vector space to build.")] = "text",
    batch_size: Annotated[int, typer.Option(min=1, help="Records per transaction.")] = 256,
    as_json: JsonOpt = False,
) -> None:
    """Read records, embed their text and store them; re-running skips unchanged items.

    Bad records (malformed lines, missing ids, empty text, bad encodings) are reported with their
    file and line, and everything else is ingested.
    """
    from kinsight.indexers.ingest import IngestOptions, ingest_file

    options = IngestOptions(collection=collection, text_fields=tuple(text_field or ["text"]),
                            id_field=id_field, space=space, encoder=encoder, batch_size=batch_size)
    with _store(store) as opened:
        report = ingest_file(opened, path, options, progress=not as_json)
    if as_json:
        console.print_json(data={
            "read": report.read, "written": report.written, "unchanged": report.unchanged,
            "chunks": report.chunks, "seconds": report.seconds,
            "problems": [{"source": p.source, "line": p.line, "message": p.message, "fix": p.fix}
                         for p in report.problems]})
        return
    for problem in report.problems[:20]:
        err.print(f"[yellow]skipped[/yellow] {problem}", highlight=False)
    if len(report.problems) > 20:
        err.print(f"... and {len(report.problems) - 20} more problems (use --json for all)")
    console.print(report.summary(), highlight=False)


@app.command()
def search(
    text: Annotated[str | None, typer.Argument(help="What to search for.")] = None,
    collection: CollectionOpt = "docs",
    store: StoreOpt = DEFAULT_STORE,
    k: Annotated[int, typer.Option("-k", min=1, max=10_000, help="Number of results.")] = 10,
    mode: Annotated[str, typer.Option(
        help="auto (hybrid for text) | dense | bm25 | hybrid")] = "auto",
    like: Annotated[str | None, typer.Option(help="Search by a stored item's id instead.")] = None,
    where: Annotated[str | None, typer.Option(
        help="SQL WHERE over the fields, e.g. \"section = 'python'\" (trusted local use).")] = None,
    space: Annotated[str | None, typer.Option(help="Vector space (default: the only one).")] = None,
    exact: Annotated[bool, typer.Option(help="Exact search, bypassing approximate indexes.")] = False,
    fusion: Annotated[str, typer.Option(help="Hybrid fusion: rrf | weighted.")] = "rrf",
    aggregate: Annotated[str, typer.Option(
        help="How a long item's chunk scores combine: max (best chunk) | mean.")] = "max",
    queries: Annotated[Path | None, typer.Option(
        help="Batch: JSONL of {\"qid\", \"text\"}; writes one JSON line per query.")] = None,
    out: Annotated[Path | None, typer.Option(help="With --queries: output file (default stdout).")
                   ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Search a collection by text, or by a stored item (--like), or a batch (--queries)."""
    if sum(x is not None for x in (text, like, queries)) != 1:
        err.print("error: give exactly one of TEXT, --like ID or --queries FILE")
        raise typer.Exit(2)
    options = SearchOptions(
        k=k, space=space, mode=_mode(mode), where=where, exact=exact,
        fusion=Fusion(method=_one_of("fusion", fusion, ("rrf", "weighted"))),
        aggregate=_one_of("aggregate", aggregate, ("max", "mean")),
        return_fields=() if queries else None)
    with _store(store, read_only=True) as opened:
        coll = opened.collection(collection)
        if queries is not None:
            _batch_search(coll, queries, options, out)
            return
        hits = search_many(coll, [ById(like) if like else text], options)[0]  # type: ignore[list-item]
    if as_json:
        console.print_json(data=[hit_to_dict(h) for h in hits])
    else:
        print_hits(console, hits, title=f"{mode} search: {like or text}")


def _batch_search(coll: Any, queries: Path, options: SearchOptions, out: Path | None) -> None:
    from kinsight.engine.evaluation import load_queries

    loaded = load_queries(queries)
    stream = open(out, "w", encoding="utf-8") if out else sys.stdout  # noqa: SIM115
    try:
        for start in range(0, len(loaded), 256):
            block = loaded[start:start + 256]
            for query, hits in zip(block, search_many(coll, [q.text for q in block], options),
                                   strict=True):
                stream.write(json.dumps({"qid": query.qid, "ids": [h.id for h in hits],
                                         "scores": [round(h.score, 6) for h in hits]}) + "\n")
    finally:
        if out:
            stream.close()


@collections_app.callback(invoke_without_command=True)
def collections(ctx: typer.Context, store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False
                ) -> None:
    """List the collections of a store with their item counts and vector spaces."""
    if ctx.invoked_subcommand is not None:
        return
    with _store(store, read_only=True) as opened:
        rows = [_describe(opened, name) for name in opened.list_collections()]
    if as_json:
        console.print_json(data=rows)
        return
    table = Table("collection", "items", "spaces", "fields")
    for row in rows:
        table.add_row(row["name"], str(row["count"]),
                      ", ".join(f"{s['name']} ({s['encoder']}, {s['dim']}-d, {s['index']})"
                                for s in row["spaces"]),
                      ", ".join(row["fields"]))
    console.print(table)


@collections_app.command("drop")
def drop(name: str, store: StoreOpt = DEFAULT_STORE,
         yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False
         ) -> None:
    """Delete a collection with all its items, vectors and indexes."""
    if not yes:
        typer.confirm(f"Drop collection {name!r} and all its items?", abort=True)
    with _store(store) as opened:
        opened.drop_collection(name)
    console.print(f"dropped {name}")


def _describe(store: Store, name: str) -> dict[str, Any]:
    coll = store.collection(name)
    return {"name": name, "count": coll.count(), "fields": coll.fields(),
            "spaces": [{"name": s.name, "encoder": s.encoder.spec, "dim": s.dim,
                        "metric": s.metric, "fingerprint": s.encoder.fingerprint,
                        "index": s.index_spec,
                        "source_fields": list(s.source_fields)} for s in coll.spaces().values()]}


@app.command()
def evaluate(
    queries: Annotated[Path, typer.Option(help="JSONL of {\"qid\", \"text\"}.")],
    qrels: Annotated[Path, typer.Option(help="TSV with header qid, doc_id, rel.")],
    collection: CollectionOpt = "docs",
    store: StoreOpt = DEFAULT_STORE,
    modes: Annotated[str, typer.Option(help="Comma-separated modes.")] = "bm25,dense,hybrid",
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N queries only.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """nDCG@10, Recall@10/100 and MRR@10 of each search mode against relevance judgments."""
    from kinsight.engine.evaluation import evaluate_search, load_qrels, load_queries

    with _store(store, read_only=True) as opened:
        results = evaluate_search(opened.collection(collection), load_queries(queries)[:limit],
                                  load_qrels(qrels), [_mode(m) for m in modes.split(",")],
                                  progress=not as_json)
    if as_json:
        console.print_json(data=results)
        return
    table = Table("mode", "nDCG@10", "Recall@10", "Recall@100", "MRR@10", "queries")
    for mode, scores in results.items():
        table.add_row(mode, *(f"{scores[m]:.3f}" for m in ("ndcg@10", "recall@10", "recall@100",
                                                           "mrr@10")), str(int(scores["queries"])))
    console.print(table)


@app.command()
def serve(
    store: StoreOpt = DEFAULT_STORE,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        envvar="KINSIGHT_API_KEY", help="Require this key in the X-API-Key header.")] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs) over a store."""
    import uvicorn

    from .http import Settings, create_app

    settings = Settings(store=str(store), api_key=api_key)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


@app.command()
def demo(
    store: Annotated[Path, typer.Option(help="Where to build the demo store.")] = Path(
        "kinsight-demo"),
    limit: Annotated[int | None, typer.Option(help="Index only the first N documents.")] = None,
) -> None:
    """Index 2,000 real Debian package descriptions with the bundled model, then search them."""
    from .demo import run_demo

    try:
        run_demo(store, console, limit=limit)
    except KinsightError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(2) from e


def _one_of(option: str, value: str, choices: tuple[str, ...]) -> Any:
    """``value`` if it is one of ``choices``, else a usage error naming them."""
    if value not in choices:
        raise typer.BadParameter(f"{option} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _mode(value: str) -> SearchMode:
    return _one_of("mode", value, get_args(SearchMode))  # type: ignore[no-any-return]


def main() -> None:
    app()
