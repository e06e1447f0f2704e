"""Ingest: what to build (``IngestOptions``), what happened (``IngestReport``), and the entry points.

Records arrive from a reader (``readers.read_records``) or any iterable of ``Record``/``Problem``
and go through one pipeline (``pipeline.py``: read → diff → decode → encode → write, the stages
overlapping, memory bounded). An ingest builds one text space by default; ``IngestOptions.spaces``
lists several instead, each from its own fields by its own encoder, text and image spaces alike
(pictures import torch only when there are some). Each batch is written in one transaction, so
whatever the pipeline reports as written (and passes to ``on_commit``) survives a crash. Bad
records never stop the run: they are collected as problems with their file, line and fix.

An item's content hash (``content_hash``) has two parts: what its vectors are made from (the
encoded text of each space or its picture file, the model, the chunking) and its other fields.
An item whose first part is unchanged is never encoded again: if only its other fields changed,
they are updated in place. One item's text is encoded as at most ``IngestOptions.max_chunks``
chunks, its beginning; the whole text stays in its fields (so BM25 sees all of it), and the report
lists each item cut (``IngestReport.cut``). ``update_fields_only`` changes the fields of items
already stored from a file of records, encoding nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tqdm import tqdm

from kinsight.engine import DEFAULT_TEXT_ENCODER, Collection, Encoder, FieldUpdate, Store
from kinsight.engine.errors import ImageFileError

from .chunking import DEFAULT_MAX_CHUNKS, ChunkedText, Chunker, capped_overlap, words_per_chunk
from .executors import EncodeExecutor
from .readers import read_records
from .records import Problem, Record

if TYPE_CHECKING:
    from .pipeline import IngestPipeline

__all__ = ["CutItem", "IngestOptions", "IngestReport", "SpaceSource", "content_hash", "cut_item",
           "ingest_file", "ingest_records", "open_ingest", "same_encoding", "text_chunker",
           "text_of", "timed", "update_fields_file", "update_fields_only"]

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
    """What an ingest did: counts (``written``: items encoded and written; ``updated``: items
    whose fields alone changed, updated in place), problems (file, line, fix), the items whose
    text the chunk cap cut, the ids a fields-only update did not find, seconds spent per stage
    (the stages overlap) and in all (``wall_seconds``)."""

    read: int = 0
    written: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks: int = 0
    problems: list[Problem] = field(default_factory=list)
    cut: list[CutItem] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(
        default_factory=lambda: {"read": 0.0, "diff": 0.0, "encode": 0.0, "write": 0.0})
    wall_seconds: float = 0.0

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    def summary(self) -> str:
        encoding = self.seconds.get("encode", 0.0)  # none in a fields-only update
        rate = f"; {self.written / encoding:.1f} items/s encoding" if encoding else ""
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        cut = f", {len(self.cut)} cut to their first chunks" if self.cut else ""
        updated = f", {self.updated} fields updated" if self.updated else ""
        missing = f", {len(self.not_found)} not found" if self.not_found else ""
        return (f"read {self.read} records: {self.written} written ({self.chunks} chunks)"
                f"{updated}, {self.unchanged} unchanged{missing}, {len(self.problems)} problems"
                f"{cut}; {stages} ({self.wall_seconds:.1f}s in all){rate}")


@contextmanager
def timed(report: IngestReport, stage: str) -> Iterator[None]:
    """Add the time spent inside to ``report.seconds[stage]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        report.seconds[stage] = report.seconds.get(stage, 0.0) + time.perf_counter() - start


def ingest_file(store: Store, path: str | Path, options: IngestOptions, *,
                progress: bool = True, on_commit: Callable[[list[str]], None] | None = None,
                executor: EncodeExecutor | None = None) -> IngestReport:
    """Ingest a JSONL, CSV or Parquet file, or a folder of .txt/.md files (of images, when
    ``options`` has an image space: then relative image paths are relative to the list file);
    ``executor`` as in ``ingest_records``."""
    if not options.has_images:
        _prepare_encoders(path, options, progress)
        text_fields = tuple(dict.fromkeys(f for s in options.sources() for f in s.fields))
        records = read_records(path, id_field=options.id_field, text_fields=text_fields)
        return ingest_records(store, records, options, progress=progress, on_commit=on_commit,
                              executor=executor)
    from .image_ingest import read_image_records

    _prepare_image_encoders(path, options, progress)
    pictures, image_root = read_image_records(path, options)
    return ingest_records(store, pictures, options, progress=progress, on_commit=on_commit,
                          image_root=image_root, executor=executor)


def _prepare_encoders(path: str | Path, options: IngestOptions, progress: bool) -> None:
    """Choose the fastest CPU variant of each text model on the file's first texts, where this
    machine has none recorded yet (``model_prepare``; once per model and kind of CPU)."""
    from .model_prepare import prepare_if_unrecorded

    for source in options.sources():
        texts = (text_of(r, source.fields) for r in read_records(
            path, id_field=options.id_field, text_fields=source.fields) if isinstance(r, Record))
        prepare_if_unrecorded(source.encoder, texts, progress=progress)


def _prepare_image_encoders(path: str | Path, options: IngestOptions, progress: bool) -> None:
    """Choose the fastest CPU variant of the bundled image model on the first pictures, where
    this machine has none recorded yet (``model_prepare``; once per model and kind of CPU)."""
    from .image_files import open_image
    from .image_ingest import image_path, read_image_records
    from .model_prepare import prepare_image_if_unrecorded

    def pictures(field: str) -> Iterator[Any]:
        records, root = read_image_records(path, options)
        for record in records:
            if isinstance(record, Record) and record.fields.get(field):
                with suppress(ImageFileError):  # ingest reports it, with the others
                    yield open_image(image_path(root, record.fields[field]))

    for source in options.sources():
        if source.kind == "image":
            prepare_image_if_unrecorded(source.encoder, pictures(source.fields[0]),
                                        progress=progress)


def ingest_records(store: Store, records: Iterable[Record | Problem], options: IngestOptions, *,
                   encoder: Encoder | None = None, progress: bool = True,
                   on_commit: Callable[[list[str]], None] | None = None,
                   save_indexes: bool = True, image_root: Path | None = None,
                   executor: EncodeExecutor | None = None) -> IngestReport:
    """Ingest records into ``options.collection`` (created if missing); see the module docstring.

    With ``save_indexes`` (the default for files) the indexes are brought up to date and saved at
    the end; a server ingesting small batches passes False: its indexes catch up on the next
    search and are saved when the store closes. ``encoder`` replaces the one ``options.encoder``
    names (single-space ingests only); ``image_root`` is what relative image paths are relative
    to (default: the working directory); ``executor`` runs the encode stage (default: ``local``,
    in this process).
    """
    pipeline = open_ingest(store, options, encoder=encoder, executor=executor,
                           image_root=image_root)
    report = pipeline.run(records, progress=progress, on_commit=on_commit)
    if save_indexes:
        pipeline.refresh(report)
    log.info("%s", report.summary())
    return report


def open_ingest(store: Store, options: IngestOptions, *, encoder: Encoder | None = None,
                executor: EncodeExecutor | None = None, image_root: Path | None = None
                ) -> IngestPipeline:
    """The pipeline of one ingest (arguments as in ``ingest_records``), its encoders loaded and
    ``options.collection`` and its spaces created or checked: the only schema changes it makes.
    ``ingest_records`` runs it whole; a server runs its halves apart (``encoded`` with no lock
    held, ``write`` under its write lock) and closes it."""
    from .pipeline import IngestPipeline, load_encoders  # it imports this module's options

    encoders = load_encoders(options, encoder)
    collection = store.create_collection(options.collection, exist_ok=True)
    return IngestPipeline(collection, options, encoders, executor=executor,
                          image_root=image_root)


def update_fields_file(store: Store, path: str | Path, options: IngestOptions, *,
                       progress: bool = True) -> IngestReport:
    """``update_fields_only`` with the records of a JSONL, CSV or Parquet file (no text field
    needed: its records may hold just an id and the fields to change)."""
    records = read_records(path, id_field=options.id_field, text_fields=())
    return update_fields_only(store, records, options, progress=progress)


def update_fields_only(store: Store, records: Iterable[Record | Problem], options: IngestOptions,
                       *, progress: bool = True,
                       on_commit: Callable[[list[str]], None] | None = None) -> IngestReport:
    """Set the fields each record has on the stored item of its id, in batches of
    ``options.batch_size`` (one transaction each); nothing is encoded and nothing added.

    Ids not stored are listed in ``IngestReport.not_found``. Fields that a vector space is made
    from are left as they are (changing them needs encoding: ingest without fields-only), and
    named in a warning. A stored item keeps its content hash, so a later ingest of an unchanged
    record does not undo the update."""
    collection = store.collection(options.collection)
    encoded = {f for space in collection.spaces().values() for f in space.source_fields}
    report = IngestReport(seconds={"read": 0.0, "write": 0.0})
    left_out: set[str] = set()
    bar = tqdm(desc=f"update {options.collection}", unit=" items", disable=not progress,
               dynamic_ncols=True)
    started = time.perf_counter()
    stream = iter(records)
    while True:
        with timed(report, "read"):
            batch = list(itertools.islice(stream, options.batch_size))
        if not batch:
            break
        report.problems += [entry for entry in batch if isinstance(entry, Problem)]
        latest = {r.id: r for r in batch if isinstance(r, Record)}  # a repeated id: the last wins
        report.read += len(latest)
        with timed(report, "write"):
            present = set(collection.existing_ids(list(latest)))
            report.not_found += [i for i in latest if i not in present]
            updates = [FieldUpdate(i, {k: v for k, v in r.fields.items() if k not in encoded})
                       for i, r in latest.items() if i in present]
            left_out.update(k for r in latest.values() for k in r.fields if k in encoded)
            report.updated += collection.update_fields(updates)
        if updates and on_commit is not None:
            on_commit([u.id for u in updates])
        bar.update(len(batch))
    bar.close()
    report.wall_seconds = time.perf_counter() - started
    if left_out:
        log.warning("fields %s were left as they are: vector spaces are made from them; "
                    "ingest without fields-only to change them", ", ".join(sorted(left_out)))
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


def cut_item(item_id: str, space: str, chunked: ChunkedText) -> CutItem | None:
    """The report's entry for an item whose text the chunk cap cut; None when it cut nothing."""
    if not chunked.cut:
        return None
    return CutItem(item_id, space, len(chunked.chunks), chunked.total, chunked.chunks[0].start,
                   chunked.chunks[-1].end, chunked.length)


def content_hash(encoded: list[Any], fields: Mapping[str, Any], *, cut_by: int | None = None
                 ) -> str:
    """An item's stored hash, ``ENCODED.FIELDS``: a digest of ``encoded`` (what its vectors are
    made from: each space's input, model and chunking) and one of its ``fields``.

    ``cut_by`` is the chunk cap when it cut the item's text: only then is the cap part of the
    hash, so raising it re-encodes exactly the items it cut, and every other item keeps the hash
    it had before there was a cap."""
    if cut_by is not None:
        encoded = [*encoded, {"max_chunks": cut_by}]
    return f"{_digest(encoded)}.{_digest(fields)}"


def same_encoding(stored: str | None, new: str) -> bool:
    """Whether an item stored with hash ``stored`` has the vectors an item hashed ``new`` would
    get (only its other fields may differ). Hashes of an older kinsight, one part only, never
    match: their items are encoded once more."""
    return stored is not None and "." in stored and stored.split(".")[0] == new.split(".")[0]


def _digest(value: Any) -> str:
    payload = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def text_of(record: Record, text_fields: Sequence[str]) -> str:
    """The record's text: its non-empty text fields, in order, blank lines between."""
    parts = [str(record.fields[f]).strip() for f in text_fields if record.fields.get(f)]
    return "\n\n".join(p for p in parts if p)
