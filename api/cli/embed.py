"""``kinsight embed FILE --out vectors.parquet``: the vectors kinsight would store, to a file.

It reads what ``kinsight ingest`` reads (JSONL, CSV, TSV or Parquet records, a folder of text
files, or pictures: a folder of them, or a list file with ``--image-field``), encodes it as a
space of ``--collection`` stores it (or as a new space of ``--encoder`` would) and writes one row
per item: ``id`` and ``vector`` (float32, fixed length). Bad records are reported and skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from kinsight.engine import DEFAULT_TEXT_ENCODER, Embeddings

from .common import DEFAULT_STORE, StoreOpt, app, console, err, fail, open_store

__all__ = ["embed", "read_inputs"]


@app.command()
def embed(
    path: Annotated[Path, typer.Argument(help="JSONL, CSV, TSV or Parquet file, a folder of "
                                              ".txt/.md files, or of pictures.")],
    out: Annotated[Path, typer.Option(help="Parquet file to write (id, vector).")],
    collection: Annotated[str | None, typer.Option(
        "--collection", "-c", help="Embed as this collection's space stores vectors.")] = None,
    space: Annotated[str | None, typer.Option(
        help="With --collection: the space (default: its only one, or text).")] = None,
    encoder: Annotated[str | None, typer.Option(
        help=f"Instead of --collection: an encoder spec (default {DEFAULT_TEXT_ENCODER}).")
    ] = None,
    store: StoreOpt = DEFAULT_STORE,
    id_field: Annotated[str, typer.Option(help="Field holding each item's id.")] = "id",
    text_field: Annotated[list[str] | None, typer.Option(
        help="Field(s) to embed, joined in order. Default: text.")] = None,
    image_field: Annotated[str | None, typer.Option(
        help="Embed pictures: the field of a list file holding each picture's path, relative "
             "to the list file (a folder of pictures needs none).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Inputs per encoder batch.")] = 256,
) -> None:
    """Write the vectors of a file's texts or pictures to Parquet, without storing anything."""
    if collection is not None and encoder is not None:
        fail("give --collection (and --space) or --encoder, not both")
    if space is not None and collection is None:
        fail("--space goes with --collection")
    records = read_inputs(path, id_field, tuple(text_field or ("text",)), image_field)
    if collection is None:
        spec = encoder or DEFAULT_TEXT_ENCODER
        from kinsight.engine import Store

        with Store(":memory:") as scratch:
            written, problems = _write(out, records, batch_size,
                                       lambda batch: scratch.embed(batch, spec))
    else:
        with open_store(store, read_only=True) as opened:
            target = opened.collection(collection)
            written, problems = _write(out, records, batch_size,
                                       lambda batch: target.embed(batch, space))
    for problem in problems[:20]:
        err.print(f"[yellow]skipped[/yellow] {escape(problem)}", highlight=False)
    if len(problems) > 20:
        err.print(f"... and {len(problems) - 20} more problems")
    console.print(f"wrote {written} vectors to {out}" + (
        f" ({len(problems)} skipped)" if problems else ""), highlight=False)


def read_inputs(path: Path, id_field: str, text_fields: tuple[str, ...], image_field: str | None
                ) -> Iterator[tuple[str, Any] | str]:
    """(id, text or decoded picture) per record of what ``kinsight ingest`` reads, or a problem's
    description: pictures with ``image_field`` or from a folder of them, texts otherwise."""
    from kinsight.indexers.image_files import IMAGE_SUFFIXES

    if image_field is not None or (path.is_dir() and _has_pictures(path, IMAGE_SUFFIXES)):
        return _pictures(path, id_field, image_field)
    return _texts(path, id_field, text_fields)


def _has_pictures(folder: Path, suffixes: Iterable[str]) -> bool:
    return any(p.suffix.lower() in suffixes for p in folder.rglob("*") if p.is_file())


def _texts(path: Path, id_field: str, fields: tuple[str, ...]) -> Iterator[tuple[str, Any] | str]:
    """(id, text) per record, or a problem's description."""
    from kinsight.indexers.ingest import text_of
    from kinsight.indexers.readers import read_records
    from kinsight.indexers.records import Record

    for entry in read_records(path, id_field=id_field, text_fields=fields):
        yield (entry.id, text_of(entry, fields)) if isinstance(entry, Record) else str(entry)


def _pictures(path: Path, id_field: str, image_field: str | None
              ) -> Iterator[tuple[str, Any] | str]:
    """(id, decoded picture) per picture of a folder or list file, or a problem's description."""
    from kinsight.indexers.image_files import IMAGE_SUFFIXES, ImageFileError, open_image
    from kinsight.indexers.readers import folder_files, read_records
    from kinsight.indexers.records import Record

    if path.is_dir():
        listed: Iterable[tuple[str, Path] | str] = (
            (relative, file) for file, relative in folder_files(path, IMAGE_SUFFIXES))
    else:
        field = image_field or "image"
        listed = ((e.id, path.parent / str(e.fields[field])) if isinstance(e, Record) else str(e)
                  for e in read_records(path, id_field=id_field, text_fields=(field,)))
    for entry in listed:
        if isinstance(entry, str):
            yield entry
            continue
        item_id, file = entry
        try:
            yield item_id, open_image(file)
        except ImageFileError as e:
            yield f"{file}: {e.reason}; {e.fix}"


def _write(out: Path, records: Iterable[tuple[str, Any] | str], batch_size: int,
           encode: Any) -> tuple[int, list[str]]:
    """Encode ``records`` in batches and stream them to ``out``; (rows written, problems)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    problems: list[str] = []
    writer: pq.ParquetWriter | None = None
    written = 0
    batch: list[tuple[str, Any]] = []

    def flush() -> None:
        nonlocal writer, written
        embeddings: Embeddings = encode([value for _, value in batch])
        dim = embeddings.vectors.shape[1]
        vectors = pa.FixedSizeListArray.from_arrays(
            pa.array(embeddings.vectors.reshape(-1), type=pa.float32()), dim)
        table = pa.table({"id": [item_id for item_id, _ in batch], "vector": vectors})
        if writer is None:
            metadata = {"encoder": embeddings.encoder.spec,
                        "fingerprint": embeddings.encoder.fingerprint, "metric": embeddings.metric}
            writer = pq.ParquetWriter(out, table.schema.with_metadata(metadata))
        writer.write_table(table)
        written += len(batch)
        batch.clear()

    try:
        for record in records:
            if isinstance(record, str):
                problems.append(record)
                continue
            batch.append(record)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        fail(f"{out}: nothing to embed in the input ({len(problems)} problems); nothing written")
    return written, problems
