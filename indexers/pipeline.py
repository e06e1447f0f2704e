"""The ingest pipeline: read → diff → (decode) → encode → write, the stages overlapping.

Records go through in batches of ``IngestOptions.batch_size``, each stage in its own thread
(``stages.pipelined``) with at most two batches waiting between two stages, so memory is bounded
whatever the input, and DuckDB commits batch n while n+1 is encoded and n+2 read and diffed:

- read: the records (problems among them are kept for the report);
- diff: each record's content hash (``ingest.content_hash``: what its vectors are made from, and
  its other fields) against the stored one. Unchanged records stop here; records whose encoded
  content is unchanged but whose other fields changed become field updates (no encoder runs);
  the rest have their texts chunked;
- decode (image spaces only): their pictures, on a few threads (``image_ingest.PictureDecoder``);
- encode: every space's inputs of the batch as one job, by the executor (``executors``; ``local``
  by default, in this process; ``ray_executor`` spreads the jobs over workers, a few in flight);
- write, in the caller's thread, the only writer: the batch's items with their vectors and its
  field updates, in one transaction; only then is the batch acknowledged
  (``on_commit``), so whatever was acknowledged survives a crash, and a rerun encodes only what
  was not committed.

The two halves can also run apart: ``encoded`` (read to encode) only reads the store, so a server
runs it with no lock held, side by side with other requests' ingests; ``write`` commits its
batches, one writer at a time (the server's write lock). A write that lands between a batch's diff
and its own write (another request upserting the same id, or an earlier batch of one ingest
repeating it) can make the diff's plan for a record wrong: "unchanged" or "fields alone changed"
against a stored item that is no longer the one it saw. So the writer checks the stored hashes of
those records once more and diffs the ones that moved again, encoding them if it must (rare), and
each item ends as the record written last says, its hash describing what is stored.

Each stage's time is added up in ``IngestReport.seconds`` (as the stages overlap, their sum is
more than the time the ingest took, ``IngestReport.wall_seconds``); the encode stage's is the time
it waited for vectors and put the items together, not the time it waited for batches to encode.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from kinsight.engine import Collection, Encoder, FieldUpdate, Item
from kinsight.engine.errors import InvalidInputError

from .chunking import Chunk, Chunker
from .executors import EncodeExecutor, EncodeJob, LocalExecutor
from .image_files import THUMBNAIL_FIELD
from .ingest import (
    CutItem,
    IngestOptions,
    IngestReport,
    SpaceSource,
    content_hash,
    cut_item,
    same_encoding,
    text_chunker,
    text_of,
    timed,
)
from .records import Problem, Record
from .stages import Streamed, pipelined

__all__ = ["Batch", "IngestPipeline", "load_encoders"]

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """One batch on its way through the stages, and what each stage made of it. Only the
    writer touches the report: stages record here, so their threads never share state."""

    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)  # ids
    # The stored hash the diff saw of each record it let through without encoding (unchanged,
    # or fields alone changed): the writer checks it still holds (see the module docstring).
    seen: dict[str, str | None] = field(default_factory=dict)
    changed: list[Record] = field(default_factory=list)  # to encode and write
    hashes: dict[str, str] = field(default_factory=dict)
    updated: list[tuple[Record, str]] = field(default_factory=list)  # fields alone changed
    chunks: dict[str, list[tuple[Record, list[Chunk]]]] = field(default_factory=dict)
    cut: list[CutItem] = field(default_factory=list)
    pixels: dict[str, list[Any]] = field(default_factory=dict)  # image space → one per changed
    thumbnails: dict[str, bytes | None] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)

    def timed(self, stage: str, since: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - since


def load_encoders(options: IngestOptions, encoder: Encoder | None = None) -> dict[str, Encoder]:
    """The encoder of each space ``options`` builds (``encoder`` replaces that of a single-space
    ingest), each checked to encode its space's kind of input."""
    sources = options.sources()
    if encoder is not None and len(sources) == 1:
        return {sources[0].name: encoder}
    from kinsight.engine import load_encoder

    encoders = {}
    for source in sources:
        loaded = encoders[source.name] = load_encoder(source.encoder)
        if loaded.info.modality != source.kind:
            raise InvalidInputError(
                f"space {source.name!r} is built from {source.kind}s but {source.encoder} encodes "
                f"{loaded.info.modality}s; pick an {source.kind} encoder (images: "
                "efficientnet:lite0 or open_clip:ARCH@WEIGHTS:image; texts: "
                "sentence-transformers:… or open_clip:ARCH@WEIGHTS:text)")
        for warning in loaded.info.warnings():
            log.warning("space %r: %s", source.name, warning)
    return encoders


class IngestPipeline:
    """One ingest into ``collection`` (its spaces created or checked here, before any thread
    starts); ``run`` streams records through it. ``executor`` encodes (default: ``local``, with
    ``encoders``); ``image_root`` is what relative picture paths are relative to."""

    def __init__(self, collection: Collection, options: IngestOptions,
                 encoders: Mapping[str, Encoder], *, executor: EncodeExecutor | None = None,
                 image_root: Path | None = None) -> None:
        self.collection = collection
        self.options = options
        self.sources = options.sources()
        self.fingerprints = {name: e.info.fingerprint for name, e in encoders.items()}
        self.chunkers: dict[str, Chunker] = {}
        for source in self.sources:
            encoder = encoders[source.name]
            if source.kind == "text":
                self.chunkers[source.name] = text_chunker(collection, source.name, encoder,
                                                          source.fields, options)
            else:
                collection.ensure_space(source.name, encoder.info, source_fields=source.fields)
        # Fields some space's vectors are made from (this ingest's or another's): never
        # changed in place, only by encoding the item again.
        self.encoded_fields = {f for space in collection.spaces().values()
                               for f in space.source_fields}
        self.image_root = image_root or Path.cwd()
        self.decoder = None
        if options.has_images:
            from .image_ingest import PictureDecoder  # torch: only for pictures

            self.decoder = PictureDecoder(
                {s.name: (encoders[s.name], s.fields[0]) for s in self.sources
                 if s.kind == "image"}, self.image_root)
        # The writer's own encoder, for the few records it must encode itself (the recheck).
        self.local = LocalExecutor(encoders, self.decoder.gpu_jpeg if self.decoder else ())
        self.executor = executor or self.local

    def run(self, records: Iterable[Record | Problem], *, progress: bool = True,
            on_commit: Callable[[list[str]], None] | None = None) -> IngestReport:
        """Ingest ``records``; see the module docstring. Closes the pipeline at the end."""
        batches = self.encoded(records)
        try:
            return self.write(batches, progress=progress, on_commit=on_commit)
        finally:
            batches.close()  # the stages' threads end here, even when a write failed
            self.close()

    def encoded(self, records: Iterable[Record | Problem]) -> Generator[Batch, None, None]:
        """``records`` read, diffed, (decoded) and encoded, each stage in a thread of its own:
        the batches for ``write``, in order. Reads the store, never writes it."""
        steps: list[Callable[[Batch], Batch] | Streamed] = [self._diff]
        if self.decoder is not None:
            steps.append(self._decode)
        steps.append(Streamed(self._encode))
        return pipelined(self._read(records), steps, name="kinsight-ingest")

    def write(self, batches: Iterable[Batch], *, progress: bool = True,
              on_commit: Callable[[list[str]], None] | None = None) -> IngestReport:
        """Commit ``batches`` (from ``encoded``), each in one transaction, in order, and report
        on them. The caller sees to it that nothing else writes the collection meanwhile."""
        started = time.perf_counter()
        report = IngestReport()
        if self.decoder is not None:
            report.seconds = {"read": 0.0, "diff": 0.0, "decode": 0.0, "encode": 0.0,
                              "write": 0.0}
        bar = tqdm(desc=f"ingest {self.options.collection}", unit=" items",
                   disable=not progress, dynamic_ncols=True)
        try:
            for batch in batches:
                self._write(batch, report, on_commit)
                bar.update(len(batch.records))
                bar.set_postfix(problems=len(report.problems), refresh=False)
        finally:
            bar.close()
        report.wall_seconds = time.perf_counter() - started
        return report

    def refresh(self, report: IngestReport) -> None:
        """Bring the collection's indexes up to date and save them (time counted as writing)."""
        since = time.perf_counter()
        with timed(report, "write"):
            self.collection.refresh()
        report.wall_seconds += time.perf_counter() - since

    def close(self) -> None:
        """Release the executor's workers and the picture decoder's threads."""
        self.executor.close()
        if self.decoder is not None:
            self.decoder.close()

    # -- the stages -------------------------------------------------------------------------
    def _read(self, records: Iterable[Record | Problem]) -> Iterator[Batch]:
        batch = Batch()
        stream = iter(records)
        while True:
            since = time.perf_counter()
            entry = next(stream, None)
            batch.timed("read", since)
            if entry is None:
                break
            if isinstance(entry, Problem):
                batch.problems.append(entry)
                continue
            batch.records.append(entry)
            if len(batch.records) >= self.options.batch_size:
                yield batch
                batch = Batch()
        if batch.records or batch.problems:
            yield batch

    def _diff(self, batch: Batch) -> Batch:
        since = time.perf_counter()
        latest = {record.id: record for record in batch.records}  # a repeated id: the last wins
        for record in latest.values():
            hashed = self._hash(record, batch)
            if hashed is not None:
                batch.hashes[record.id] = hashed
        stored = self.collection.content_hashes(list(batch.hashes))
        for item_id, new in batch.hashes.items():
            record = latest[item_id]
            old = stored.get(item_id)
            if old == new:
                batch.unchanged.append(item_id)
                batch.seen[item_id] = old
            elif same_encoding(old, new):
                batch.updated.append((record, new))
                batch.seen[item_id] = old
            else:
                self._chunk(record, batch)
        batch.timed("diff", since)
        return batch

    def _decode(self, batch: Batch) -> Batch:
        if self.decoder is None:  # the step is there only with a decoder
            return batch
        since = time.perf_counter()
        decoded = self.decoder(batch.changed)
        batch.changed = []
        for entry in decoded:
            if entry.problem is not None:
                batch.problems.append(entry.problem)
                continue
            batch.changed.append(entry.record)
            batch.thumbnails[entry.record.id] = entry.thumbnail
            for space, value in entry.pixels.items():
                batch.pixels.setdefault(space, []).append(value)
        kept = {record.id for record in batch.changed}
        batch.chunks = {space: [(r, c) for r, c in pairs if r.id in kept]
                        for space, pairs in batch.chunks.items()}
        batch.timed("decode", since)
        return batch

    def _encode(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        waiting: deque[Batch] = deque()  # handed to the executor, vectors not back yet
        idle = 0.0  # time spent waiting for the next batch, not encoding

        def jobs() -> Iterator[EncodeJob]:
            nonlocal idle
            while True:
                since = time.perf_counter()
                batch = next(batches, None)
                idle += time.perf_counter() - since
                if batch is None:
                    return
                waiting.append(batch)
                yield _job(batch)

        results = self.executor.encode_stream(jobs())
        try:
            while True:
                since, idle_before = time.perf_counter(), idle
                vectors = next(results, None)
                if vectors is None:
                    return
                batch = waiting.popleft()
                self._assemble(batch, vectors)
                batch.timed("encode", since + idle - idle_before)
                yield batch
        finally:
            results.close()  # a stopped run drops the jobs still in flight

    def _assemble(self, batch: Batch, vectors: dict[str, np.ndarray]) -> None:
        """The batch's items, each with its slice of the job's vectors."""
        per_item: dict[str, dict[str, np.ndarray]] = {r.id: {} for r in batch.changed}
        spans: dict[str, dict[str, list[tuple[int, int]]]] = {r.id: {} for r in batch.changed}
        for space, block in vectors.items():
            start = 0
            if space in batch.pixels:
                for record, vector in zip(batch.changed, block, strict=True):
                    per_item[record.id][space] = vector
                continue
            for record, chunks in batch.chunks[space]:
                per_item[record.id][space] = block[start:start + len(chunks)]
                spans[record.id][space] = [(c.start, c.end) for c in chunks]
                start += len(chunks)
        for record in batch.changed:
            fields = dict(record.fields)
            if record.id in batch.thumbnails:
                fields[THUMBNAIL_FIELD] = batch.thumbnails[record.id]
            batch.items.append(Item(id=record.id, fields=fields,
                                    content_hash=batch.hashes[record.id],
                                    vectors=per_item[record.id], spans=spans[record.id]))

    def _write(self, batch: Batch, report: IngestReport,
               on_commit: Callable[[list[str]], None] | None) -> None:
        self._recheck(batch)
        since = time.perf_counter()
        known = self.collection.fields()  # here: the schema is the writer's to read and change
        updates = [self._field_update(record, new, known) for record, new in batch.updated]
        self.collection.upsert(batch.items, field_updates=updates,  # one transaction
                               spaces=[source.name for source in self.sources])
        batch.timed("write", since)
        for problem in batch.problems:
            log.warning("skipped %s", problem)
        for cut in batch.cut:
            log.warning("%s; its fields keep the whole text; raise max_chunks to encode more", cut)
        report.read += len(batch.records)
        report.written += len(batch.items)
        report.updated += len(updates)
        report.unchanged += len(batch.unchanged)
        report.chunks += sum(len(c) for pairs in batch.chunks.values() for _, c in pairs)
        report.problems += batch.problems
        report.cut += batch.cut
        for stage, seconds in batch.seconds.items():
            report.seconds[stage] = report.seconds.get(stage, 0.0) + seconds
        written = [item.id for item in batch.items] + [u.id for u in updates]
        if written and on_commit is not None:
            on_commit(written)

    def _recheck(self, batch: Batch) -> None:
        """Diff again the records the diff let through without encoding whose stored hash has
        moved since (see the module docstring), encoding those that need it, so that the
        batch's write leaves every item as its record says."""
        if not batch.seen:
            return
        stored = self.collection.content_hashes(list(batch.seen))
        moved = {i for i, seen in batch.seen.items() if stored.get(i) != seen}
        if not moved:
            return
        log.info("%d records of the batch were written by another write since they were "
                 "diffed; diffing them again", len(moved))
        latest = {record.id: record for record in batch.records}
        again = self._diff(Batch(records=[latest[i] for i in moved]))
        if self.decoder is not None:
            again = self._decode(again)
        since = time.perf_counter()
        self._assemble(again, self.local.encode(_job(again)))
        again.timed("encode", since)
        batch.unchanged = [i for i in batch.unchanged if i not in moved] + again.unchanged
        batch.updated = [(r, h) for r, h in batch.updated if r.id not in moved] + again.updated
        batch.items += again.items
        batch.problems += again.problems
        batch.cut += again.cut
        for space, pairs in again.chunks.items():
            batch.chunks.setdefault(space, []).extend(pairs)
        for stage, seconds in again.seconds.items():
            batch.seconds[stage] = batch.seconds.get(stage, 0.0) + seconds

    # -- the parts --------------------------------------------------------------------------
    def _hash(self, record: Record, batch: Batch) -> str | None:
        """The record's content hash; None (and a problem) when it has nothing to encode or a
        picture file is missing."""
        encoded: list[Any] = []
        cut = False
        for source in self.sources:
            if source.kind == "image":
                stat = self._picture_stat(record, source, batch)
                if stat is None:
                    return None
                encoded.append([source.name, source.fields, self.fingerprints[source.name],
                                record.fields[source.fields[0]], *stat])
                continue
            text = text_of(record, source.fields)
            encoded.append([source.name, source.fields, self.fingerprints[source.name], text])
            cut = cut or self.chunkers[source.name].cuts(text)
        if all(part[-1] == "" for part in encoded):  # no text in any space (and no picture)
            fields = ", ".join(f for source in self.sources for f in source.fields)
            batch.problems.append(Problem(record.source, record.line, f"item {record.id!r} has "
                                          f"no text in {fields}", "fill one of the text fields"))
            return None
        return content_hash([*encoded, self.options.chunk_overlap], record.fields,
                            cut_by=self.options.max_chunks if cut else None)

    def _picture_stat(self, record: Record, source: SpaceSource, batch: Batch
                      ) -> tuple[int, int] | None:
        from .image_ingest import image_path

        value = record.fields.get(source.fields[0])
        path = image_path(self.image_root, value) if value else None
        try:
            if path is None:
                raise FileNotFoundError
            stat = path.stat()
        except OSError:
            batch.problems.append(Problem(
                record.source, record.line, f"item {record.id!r}: image {path or '(no path)'}: "
                f"no such file", f"check the {source.fields[0]!r} field (relative paths are "
                "relative to the list file's folder)"))
            return None
        return stat.st_size, stat.st_mtime_ns

    def _field_update(self, record: Record, new_hash: str, known: Mapping[str, str]
                      ) -> FieldUpdate:
        """The item's fields become the record's, as an upsert would make them, but in place:
        the fields its vectors are made from (unchanged) and its thumbnail are left alone."""
        values = {k: v for k, v in record.fields.items() if k not in self.encoded_fields}
        gone = [f for f in known if f not in record.fields
                and f not in self.encoded_fields and f != THUMBNAIL_FIELD]
        return FieldUpdate(record.id, values, gone, content_hash=new_hash)

    def _chunk(self, record: Record, batch: Batch) -> None:
        batch.changed.append(record)
        for source in self.sources:
            if source.kind != "text" or not (text := text_of(record, source.fields)):
                continue
            split = self.chunkers[source.name](text)
            if (cut := cut_item(record.id, source.name, split)) is not None:
                batch.cut.append(cut)
            batch.chunks.setdefault(source.name, []).append((record, split.chunks))


def _job(batch: Batch) -> EncodeJob:
    """What the batch's changed records give the encoders: every space's inputs, in order."""
    return EncodeJob(texts={space: [c.text for _, chunks in pairs for c in chunks]
                            for space, pairs in batch.chunks.items() if pairs},
                     pixels=batch.pixels)
