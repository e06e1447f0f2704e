"""Commands over documents: ``ingest`` files, ``search`` them, ``evaluate`` search quality."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, get_args

import typer
from rich.markup import escape
from rich.table import Table

from kinsight.engine import (
    DEFAULT_TEXT_ENCODER,
    FUSIONS,
    ById,
    Collection,
    EvaluationOptions,
    InvalidInputError,
    SearchMode,
    SearchOptions,
    load_qrels,
    load_queries,
    validate_collection_name,
    validate_space_name,
)
from kinsight.indexers.chunking import DEFAULT_MAX_CHUNKS

from ..reporting import hit_to_dict, print_hits, print_warnings
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
    one_of,
    open_store,
    pick_collection,
    progress_bar,
)
from .executor_options import RayOpt, WorkersOpt, encode_executor

if TYPE_CHECKING:
    from kinsight.indexers.ingest import IngestOptions

__all__ = ["DEFAULT_IMAGE_ENCODER", "evaluate", "ingest", "search"]

DEFAULT_IMAGE_ENCODER = "efficientnet:lite0"


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="JSONL, CSV, TSV or Parquet file (optionally .gz), "
                                              "or a folder of .txt/.md files (of pictures with "
                                              "--image-field).")],
    collection: Annotated[str | None, typer.Option(
        "--collection", "-c", help="Collection to fill. Default: one named after the file "
                                   "(docs.jsonl: docs); with --fields-only the store's only "
                                   "collection.")] = None,
    store: StoreOpt = DEFAULT_STORE,
    id_field: Annotated[str, typer.Option(help="Field holding each item's unique id.")] = "id",
    text_field: Annotated[list[str] | None, typer.Option(
        help="Field(s) to embed; repeat for several (joined in order). Default: text.")] = None,
    encoder: Annotated[str | None, typer.Option(
        help=f"Encoder spec, SCHEME:MODEL. Default: {DEFAULT_TEXT_ENCODER}; with --image-field "
             f"{DEFAULT_IMAGE_ENCODER} (or e.g. open_clip:ViT-B-32@/path/ckpt.pt).")] = None,
    space: Annotated[str | None, typer.Option(
        help="Name of the vector space to build. Default: text (image with --image-field).")] = None,
    image_field: Annotated[str | None, typer.Option(
        help="Ingest pictures: the field holding each picture's path, relative to the list "
             "file (for a folder of pictures: the field to store the relative path in).")] = None,
    caption_field: Annotated[list[str] | None, typer.Option(
        help="With --image-field: also build a text space, named after this field, from it "
             "(repeat to join several).")] = None,
    text_encoder: Annotated[str, typer.Option(
        help="Encoder of the --caption-field space.")] = DEFAULT_TEXT_ENCODER,
    batch_size: Annotated[int, typer.Option(min=1, help="Records per transaction.")] = 256,
    max_chunks: Annotated[int, typer.Option(
        min=1, help="Encode at most N chunks of one item's text, its beginning; the whole text "
                    "stays in its fields for BM25, and items cut are listed.")] = DEFAULT_MAX_CHUNKS,
    language: Annotated[str, typer.Option(
        help="Language of the keyword (BM25) index of the text space(s): a code such as en, de, "
             "ru, ja; multi for several languages; auto detects it from the texts (a new space) "
             "or keeps the one an existing space has. A new code rebuilds the BM25 index.")
    ] = "auto",
    fields_only: Annotated[bool, typer.Option(
        "--fields-only", help="Only update the fields of items already stored, from the "
                              "records of a JSONL, CSV or Parquet file: nothing is encoded, ids "
                              "not stored are listed and not added, and fields a vector space "
                              "is made from are left as they are.")] = False,
    workers: WorkersOpt = None,
    ray_address: RayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Read records, embed their text (or pictures) and store them; re-running skips unchanged
    items, and an item whose embedded text (or picture) is unchanged but whose other fields
    changed has those updated in place, without encoding it again.

    Bad records (malformed lines, missing ids, empty text, bad encodings; missing, empty, corrupt,
    truncated or oversized pictures) are reported with their file and reason, and everything
    else is ingested. Pictures keep a small thumbnail in the 'thumbnail' field.
    """
    from kinsight.indexers.ingest import IngestOptions, SpaceSource, ingest_file

    spaces: tuple[SpaceSource, ...] = ()
    if image_field is not None:
        spaces = (SpaceSource(space or "image", encoder or DEFAULT_IMAGE_ENCODER, (image_field,),
                              "image"),)
        if caption_field:
            spaces += (SpaceSource(caption_field[0], text_encoder, tuple(caption_field)),)
    elif caption_field:
        fail("--caption-field goes with --image-field; for text alone use --text-field")
    if collection is None and fields_only:  # updates an existing collection: the only one
        with open_store(store, read_only=True) as opened:
            collection = pick_collection(opened, None).name
    options = IngestOptions(collection=collection or _collection_named_after(path),
                            text_fields=tuple(text_field or ["text"]),
                            id_field=id_field, space=space or "text",
                            encoder=encoder or DEFAULT_TEXT_ENCODER, batch_size=batch_size,
                            spaces=spaces, max_chunks=max_chunks, language=language)
    _check_before_loading_models(path, options)
    if fields_only and (workers or ray_address):
        fail("--fields-only encodes nothing; drop --workers/--ray")
    if fields_only:
        if path.is_dir():
            fail(f"{path} is a folder; --fields-only reads a JSONL, CSV or Parquet file of "
                 "records (an id and the fields to change)")
        from kinsight.indexers.ingest import update_fields_file

        with open_store(store) as opened:
            report = update_fields_file(opened, path, options, progress=not as_json)
    else:
        executor = encode_executor({s.name: s.encoder for s in options.sources()}, workers,
                                   ray_address)  # before the store opens: Ray may be missing
        with open_store(store, create=True) as opened:
            if collection is None and options.collection not in opened.list_collections():
                err.print(f"ingesting into the new collection {options.collection!r} "
                          "(--collection NAME to choose)", highlight=False)
            report = ingest_file(opened, path, options, progress=not as_json, executor=executor)
    if as_json:
        console.print_json(data={
            "read": report.read, "written": report.written, "updated": report.updated,
            "unchanged": report.unchanged, "not_found": report.not_found,
            "chunks": report.chunks, "seconds": report.seconds,
            "problems": [{"source": p.source, "line": p.line, "message": p.message, "fix": p.fix}
                         for p in report.problems],
            "cut": [asdict(cut) for cut in report.cut]})
        return
    for problem in report.problems[:20]:
        err.print(f"[yellow]skipped[/yellow] {escape(str(problem))}", highlight=False)
    if len(report.problems) > 20:
        err.print(f"... and {len(report.problems) - 20} more problems (use --json for all)")
    for cut in report.cut[:20]:
        err.print(f"[yellow]cut[/yellow] {escape(str(cut))}; raise --max-chunks to index more",
                  highlight=False)
    if len(report.cut) > 20:
        err.print(f"... and {len(report.cut) - 20} more items cut (use --json for all)")
    if report.not_found:
        shown = ", ".join(escape(i) for i in report.not_found[:20])
        more = f" and {len(report.not_found) - 20} more" if len(report.not_found) > 20 else ""
        err.print(f"[yellow]not found[/yellow] {shown}{more}: not added (--fields-only "
                  "updates stored items; ingest without it to add them)", highlight=False)
    console.print(report.summary(), highlight=False)


def _collection_named_after(path: Path) -> str:
    """The collection an ingest without --collection fills: one named after the file
    (docs.jsonl.gz -> docs, a folder by its name)."""
    name = path.name.split(".")[0] if path.is_file() else path.name
    try:
        return validate_collection_name(name)
    except InvalidInputError:
        fail(f"{path}: no collection can be named after this file ({name!r}); give "
             "--collection NAME")


def _check_before_loading_models(path: Path, options: IngestOptions) -> None:
    """The cheap checks the pipeline makes only after loading its encoders (seconds, or a
    download): the names it will create and the file it reads lazily."""
    validate_collection_name(options.collection)
    for source in options.sources():
        validate_space_name(source.name)
    if not path.exists():
        fail(f"{path}: no such file or folder; check the path")
    if not os.access(path, os.R_OK):
        fail(f"{path}: permission denied; make it readable, or give another file")


@app.command()
def search(
    text: Annotated[str | None, typer.Argument(help="What to search for.")] = None,
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    k: Annotated[int, typer.Option("-k", min=1, max=10_000, help="Number of results.")] = 10,
    mode: Annotated[str, typer.Option(
        help="auto (hybrid for text) | dense | bm25 | hybrid")] = "auto",
    like: Annotated[str | None, typer.Option(help="Search by a stored item's id instead.")] = None,
    like_space: Annotated[str | None, typer.Option(
        help="With --like: take the item's vector from this space, e.g. find pictures (--space "
             "image) like an item's caption (--like-space caption); the two must share one "
             "embedding space.")] = None,
    image: Annotated[Path | None, typer.Option(
        help="Search by a picture: items of an image space that look most like it.")] = None,
    where: WhereOpt = None,
    space: SpaceOpt = None,
    exact: Annotated[bool, typer.Option(help="Exact search, bypassing approximate indexes.")] = False,
    fusion: Annotated[str, typer.Option(
        help=f"Hybrid fusion: {' | '.join(FUSIONS)} (the default; README, Search quality)."
    )] = next(iter(FUSIONS)),
    aggregate: Annotated[str, typer.Option(
        help="How a long item's chunk scores combine: max (best chunk) | mean.")] = "max",
    tuned: Annotated[bool, typer.Option(
        help="Use what `kinsight tune` fitted for the space: its fusion (in place of --fusion) "
             "and its query adapter.")] = False,
    queries: Annotated[Path | None, typer.Option(
        help="Batch: JSONL of {\"qid\", \"text\"}; writes one JSON line per query.")] = None,
    out: Annotated[Path | None, typer.Option(help="With --queries: output file (default stdout).")
                   ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Search a collection by text, by a stored item (--like), by a picture (--image), or a
    batch (--queries). Results from a space built on random weights carry a warning.

    Text and pictures cross over where the space's encoder has a partner of the other kind in
    one embedding space (open_clip towers, adapter:NAME:image|text): TEXT on an image space
    finds pictures, --image on a caption space finds captions.
    """
    if sum(x is not None for x in (text, like, image, queries)) != 1:
        fail("give exactly one of TEXT, --like ID, --image PATH or --queries FILE")
    if like_space is not None and like is None:
        fail("--like-space goes with --like ID")
    options = SearchOptions(
        k=k, space=space, mode=_mode(mode), where=where, exact=exact,
        fusion=FUSIONS[one_of("fusion", fusion, tuple(FUSIONS))],
        aggregate=one_of("aggregate", aggregate, ("max", "mean")),
        return_fields=() if queries else None, tuned=tuned)
    with open_store(store, read_only=True) as opened:
        coll = pick_collection(opened, collection)
        if queries is not None:
            _batch_search(coll, queries, options, out)
            return
        if image is not None:
            from kinsight.indexers.image_query import image_space, search_by_image

            searched = image_space(coll, space)
            hits = search_by_image(coll, image, options)
        else:
            searched = coll.space(space)
            query = ById(like, space=like_space) if like else text
            hits = coll.search_many([query], options)[0]  # type: ignore[list-item]
    print_warnings(err, searched.warnings())  # on stderr, so --json stays parseable
    if as_json:
        console.print_json(data=[hit_to_dict(h) for h in hits])
        return
    print_hits(console, hits, title=f"{'dense' if image else mode} search: {like or image or text}")


def _batch_search(coll: Collection, queries: Path, options: SearchOptions, out: Path | None) -> None:
    loaded = load_queries(queries)
    started = time.perf_counter()
    stream = open(out, "w", encoding="utf-8") if out else sys.stdout  # noqa: SIM115
    try:
        with progress_bar("search", unit="queries") as progress:
            for start in range(0, len(loaded), 256):
                block = loaded[start:start + 256]
                for query, hits in zip(block, coll.search_many([q.text for q in block], options),
                                       strict=True):
                    stream.write(json.dumps({"qid": query.qid, "ids": [h.id for h in hits],
                                             "scores": [round(h.score, 6) for h in hits]}) + "\n")
                progress(start + len(block), len(loaded), "")
    finally:
        if out:
            stream.close()
    seconds = time.perf_counter() - started
    err.print(f"searched {len(loaded)} queries in {seconds:.1f} s "
              f"({len(loaded) / max(seconds, 1e-9):.0f} queries/s)"
              + (f"; wrote {out}" if out else ""), highlight=False, soft_wrap=True)


@app.command()
def evaluate(
    queries: Annotated[Path, typer.Option(help="JSONL of {\"qid\", \"text\"}.")],
    qrels: Annotated[Path, typer.Option(help="TSV with header qid, doc_id, rel.")],
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    modes: Annotated[str, typer.Option(help="Comma-separated modes.")] = "bm25,dense,hybrid",
    fusions: Annotated[str, typer.Option(
        help="Comma-separated fusions, each scored in the hybrid and auto modes.")
    ] = ",".join(FUSIONS),
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N queries only.")] = None,
    tuned: Annotated[bool, typer.Option(
        "--tuned", help="Also score the tuned searches that `kinsight tune` saved (rows `tuned` "
        "and `dense, tuned`); judge them on queries the tune did not train on.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """nDCG@10, Recall@10/100 and MRR@10 of each search mode against relevance judgments."""
    chosen = EvaluationOptions(modes=[_mode(m) for m in modes.split(",")],
                               fusions=[one_of("fusion", f, tuple(FUSIONS))
                                        for f in fusions.split(",")], tuned=tuned)
    with open_store(store, read_only=True) as opened, \
            progress_bar("evaluate", enabled=not as_json, unit="queries") as progress:
        results = pick_collection(opened, collection).evaluate_search(
            load_queries(queries)[:limit], load_qrels(qrels), chosen, progress=progress)
    if as_json:
        console.print_json(data=results)
        return
    table = Table("mode", "nDCG@10", "Recall@10", "Recall@100", "MRR@10", "queries")
    for mode, scores in results.items():
        table.add_row(mode, *(f"{scores[m]:.3f}" for m in ("ndcg@10", "recall@10", "recall@100",
                                                           "mrr@10")), str(int(scores["queries"])))
    console.print(table)


def _mode(value: str) -> SearchMode:
    return one_of("mode", value, get_args(SearchMode))  # type: ignore[no-any-return]
