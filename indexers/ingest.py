"""The ingest pipeline: read → skip unchanged → chunk → encode → write, timing each stage.

Records arrive from a reader (``readers.read_records``) or any iterable of ``Record``/``Problem``.
An ingest builds one text space by default; ``IngestOptions.spaces`` lists several instead, each
from its own fields by its own encoder, and image spaces among them hand the work to
``image_ingest`` (decode in parallel → encode → write), which imports torch only when needed.
Each batch is written in one transaction, so whatever the pipeline reports as written (and passes
to ``on_commit``) survives a crash. Bad records never stop the run: they are collected as problems
with their file, line and fix. Items whose content hash is unchanged are not re-encoded. One
item's text is encoded as at most ``IngestOptions.max_chunks`` chunks, its beginning; the whole
text stays in its fields (so BM25 sees all of it), and the report lists each item cut
(``IngestReport.cut``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from kinsight.engine import DEFAULT_TEXT_ENCODER, Collection, Encoder, Item, Store, load_encoder

from .chunking import DEFAULT_MAX_CHUNKS, Chunk, ChunkedText, Chunker, capped_overlap, words_per_chunk
from .readers import read_records
from .records import Problem, Record

__all__ = ["CutItem", "IngestOptions", "IngestReport", "SpaceSource", "ingest_file",
           "ingest_records", "note_cut", "text_chunker", "text_of", "timed"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpaceSource:
    """One vector space an ingest builds: ``name``, from ``fields`` of each record, by ``encoder``.

    ``kind="text"``: the fields' texts are joined (blank lines between), chunked and encoded.
    ``kind="image"``: the one field holds an image file's path (relative paths are resolved
    against the ingest's image root), which is decoded and encoded.
    """

    name: str
    encoder: str
    fields: tuple[str, ...]
    kind: Literal["text", "image"] = "text"


@dataclass(frozen=True)
class IngestOptions:
    """Where records go and how they become vectors.

    ``text_fields`` are joined (in order, blank lines between) into the text that is encoded into
    ``space`` by ``encoder``: the one text space most ingests build. ``spaces``, when given,
    replaces that by any number of spaces (text and image) built in the same pass.
    ``batch_size`` is the number of records per write transaction. ``max_chunks`` is the most
    chunks of one item's text that are encoded (None: no cap); see ``chunking.DEFAULT_MAX_CHUNKS``.
    ``language`` is that of the text spaces' keyword (BM25) index: a code (``kinsight.engine.
    analysers``), ``multi`` for several, or ``auto``: detected from the texts for a new space,
    unchanged for an existing one. A code that differs from an existing space's rebuilds its index.
    """

    collection: str
    text_fields: tuple[str, ...] = ("text",)
    id_field: str = "id"
    space: str = "text"
    encoder: str = DEFAULT_TEXT_ENCODER
    batch_size: int = 256
    chunk_overlap: int = 32
    spaces: tuple[SpaceSource, ...] = ()
    max_chunks: int | None = DEFAULT_MAX_CHUNKS
    language: str = "auto"

    def sources(self) -> tuple[SpaceSource, ...]:
        """The spaces this ingest builds."""
        return self.spaces or (SpaceSource(self.space, self.encoder, self.text_fields),)

    @property
    def has_images(self) -> bool:
        return any(source.kind == "image" for source in self.sources())


@dataclass(frozen=True)
class CutItem:
    """An item written with only the first ``kept`` of its ``total`` chunks in ``space`` encoded:
    characters ``start`` to ``end`` of its ``length``. Its fields hold the whole text."""

    id: str
    space: str
    kept: int
    total: int
    start: int
    end: int
    length: int

    def __str__(self) -> str:
        return (f"item {self.id!r}: {self.total:,} chunks, kept the first {self.kept:,} "
                f"(characters {self.start:,}-{self.end:,} of {self.length:,}) in space "
                f"{self.space!r}")


@dataclass
class IngestReport:
    """What an ingest did: counts, problems (file, line, fix), the items whose text the chunk
    cap cut, and seconds spent per stage."""

    read: int = 0
    written: int = 0
    unchanged: int = 0
    chunks: int = 0
    problems: list[Problem] = field(default_factory=list)
    cut: list[CutItem] = field(default_factory=list)
    seconds: dict[str, float] = field(
        default_factory=lambda: {"read": 0.0, "diff": 0.0, "encode": 0.0, "write": 0.0})

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    def summary(self) -> str:
        rate = self.written / self.seconds["encode"] if self.seconds["encode"] else 0.0
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        cut = f", {len(self.cut)} cut to their first chunks" if self.cut else ""
        return (f"read {self.read} records: {self.written} written ({self.chunks} chunks), "
                f"{self.unchanged} unchanged, {len(self.problems)} problems{cut}; {stages}; "
                f"{rate:.1f} items/s encoding")


@contextmanager
def timed(report: IngestReport, stage: str) -> Iterator[None]:
    """Add the time spent inside to ``report.seconds[stage]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        report.seconds[stage] = report.seconds.get(stage, 0.0) + time.perf_counter() - start


def ingest_file(store: Store, path: str | Path, options: IngestOptions, *,
                progress: bool = True, on_commit: Callable[[list[str]], None] | None = None
                ) -> IngestReport:
    """Ingest a JSONL, CSV or Parquet file, or a folder of .txt/.md files (of images, when
    ``options`` has an image space: then relative image paths are relative to the list file)."""
    if not options.has_images:
        _prepare_encoders(path, options, progress)
        records = read_records(path, id_field=options.id_field, text_fields=options.text_fields)
        return ingest_records(store, records, options, progress=progress, on_commit=on_commit)
    from .image_ingest import read_image_records

    pictures, image_root = read_image_records(path, options)
    return ingest_records(store, pictures, options, progress=progress, on_commit=on_commit,
                          image_root=image_root)


def _prepare_encoders(path: str | Path, options: IngestOptions, progress: bool) -> None:
    """Choose the fastest CPU variant of each text model on the file's first texts, where this
    machine has none recorded yet (``model_prepare``; once per model and kind of CPU)."""
    from .model_prepare import prepare_if_unrecorded

    for source in options.sources():
        texts = (text_of(r, source.fields) for r in read_records(
            path, id_field=options.id_field, text_fields=source.fields) if isinstance(r, Record))
        prepare_if_unrecorded(source.encoder, texts, progress=progress)


def ingest_records(store: Store, records: Iterable[Record | Problem], options: IngestOptions, *,
                   encoder: Encoder | None = None, progress: bool = True,
                   on_commit: Callable[[list[str]], None] | None = None,
                   save_indexes: bool = True, image_root: Path | None = None) -> IngestReport:
    """Ingest records into ``options.collection`` (created if missing); see the module docstring.

    With ``save_indexes`` (the default for files) the indexes are brought up to date and saved at
    the end; a server ingesting small batches passes False: its indexes catch up on the next
    search and are saved when the store closes. ``encoder`` replaces the one ``options.encoder``
    names (single-space ingests only); ``image_root`` is what relative image paths are relative
    to (default: the working directory).
    """
    if options.has_images or len(options.sources()) > 1:
        from .image_ingest import ingest_spaces

        return ingest_spaces(store, records, options, progress=progress, on_commit=on_commit,
                             save_indexes=save_indexes, image_root=image_root or Path.cwd())
    encoder = encoder or load_encoder(options.encoder)
    collection = store.create_collection(options.collection, exist_ok=True)
    chunker = text_chunker(collection, options.space, encoder, options.text_fields, options)
    report = IngestReport()
    bar = tqdm(desc=f"ingest {options.collection}", unit=" items", disable=not progress,
               dynamic_ncols=True)
    batch: list[Record] = []
    stream = iter(records)
    while True:
        with timed(report, "read"):
            entry = next(stream, None)
        if entry is None:
            break
        if isinstance(entry, Problem):
            report.problems.append(entry)
            log.warning("skipped %s", entry)
            bar.set_postfix(problems=len(report.problems), refresh=False)
            continue
        report.read += 1
        batch.append(entry)
        if len(batch) >= options.batch_size:
            _write_batch(collection, encoder, batch, options, chunker, report, on_commit)
            bar.update(len(batch))
            batch = []
    if batch:
        _write_batch(collection, encoder, batch, options, chunker, report, on_commit)
        bar.update(len(batch))
    bar.close()
    if save_indexes:
        with timed(report, "write"):
            collection.refresh()
    log.info("%s", report.summary())
    return report


def text_chunker(collection: Collection, space: str, encoder: Encoder, fields: Sequence[str],
                 options: IngestOptions) -> Chunker:
    """Create (or check) a text space, and return the chunker its texts go through: the one
    place where the encoder's input length, the overlap and the chunk cap meet."""
    max_words = words_per_chunk(encoder.info.max_tokens)
    chunker = Chunker(max_words, capped_overlap(max_words, options.chunk_overlap),
                      options.max_chunks)  # checked before the space is created
    collection.ensure_space(space, encoder.info, source_fields=fields, chunk_words=max_words,
                            language=options.language)
    return chunker


def note_cut(report: IngestReport, item_id: str, space: str, chunked: ChunkedText) -> None:
    """Add an item whose text the cap cut to ``report.cut``, and log it."""
    if not chunked.cut:
        return
    cut = CutItem(item_id, space, len(chunked.chunks), chunked.total, chunked.chunks[0].start,
                  chunked.chunks[-1].end, chunked.length)
    report.cut.append(cut)
    log.warning("%s; its fields keep the whole text; raise max_chunks to encode more", cut)


def content_hash(record: Record, options: IngestOptions, fingerprint: str, *, cut: bool) -> str:
    """Hash of everything that makes the stored item: fields, text fields, space and model, and
    the chunk cap for an item it cuts."""
    return digest([record.fields, options.text_fields, options.space, fingerprint,
                   options.chunk_overlap], cut_by=options.max_chunks if cut else None)


def digest(parts: list[Any], *, cut_by: int | None = None) -> str:
    """The content hash of what makes an item (an unchanged hash skips re-encoding it).

    ``cut_by`` is the chunk cap when it cut the item's text: only then is the cap part of the
    hash, so raising it re-encodes exactly the items it cut, and every other item keeps the hash
    it had before there was a cap."""
    if cut_by is not None:
        parts = [*parts, {"max_chunks": cut_by}]
    payload = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _write_batch(collection: Collection, encoder: Encoder, batch: Sequence[Record],
                 options: IngestOptions, chunker: Chunker,
                 report: IngestReport, on_commit: Callable[[list[str]], None] | None) -> None:
    with timed(report, "diff"):
        latest = {record.id: record for record in batch}  # a repeated id: the last one wins
        texts = {i: text_of(r, options.text_fields) for i, r in latest.items()}
        hashes = {i: content_hash(r, options, encoder.info.fingerprint, cut=chunker.cuts(texts[i]))
                  for i, r in latest.items()}
        stored = collection.content_hashes(list(latest))
        changed = [r for i, r in latest.items() if stored.get(i) != hashes[i]]
        report.unchanged += len(latest) - len(changed)
        chunked: list[tuple[Record, list[Chunk]]] = []
        for record in changed:
            if text := texts[record.id]:
                split = chunker(text)
                note_cut(report, record.id, options.space, split)
                chunked.append((record, split.chunks))
            else:  # readers never yield such records; records built in code might
                report.problems.append(Problem(
                    record.source, record.line, f"item {record.id!r} has no text in "
                    f"{', '.join(options.text_fields)}", "fill one of the text fields"))
    if not chunked:
        return
    with timed(report, "encode"):
        flat = [c.text for _, chunks in chunked for c in chunks]
        vectors = encoder.encode(flat, role="document")
    items = []
    start = 0
    for record, chunks in chunked:
        item_vectors = vectors[start:start + len(chunks)]
        start += len(chunks)
        items.append(Item(id=record.id, fields=record.fields, content_hash=hashes[record.id],
                          vectors={options.space: item_vectors},
                          spans={options.space: [(c.start, c.end) for c in chunks]}))
    with timed(report, "write"):
        collection.upsert(items)
    report.written += len(items)
    report.chunks += len(flat)
    if on_commit is not None:
        on_commit([item.id for item in items])


def text_of(record: Record, text_fields: Sequence[str]) -> str:
    """The record's text: its non-empty text fields, in order, blank lines between."""
    parts = [str(record.fields[f]).strip() for f in text_fields if record.fields.get(f)]
    return "\n\n".join(p for p in parts if p)
