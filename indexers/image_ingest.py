"""Ingest of image spaces, beside any number of text spaces: read → skip unchanged → decode → encode
each space → write, timing each stage (``IngestReport.seconds``: read, diff, decode, encode, write).

Decoding runs in a torch ``DataLoader``. On CUDA: worker processes decode while the GPU encodes,
batches come back in pinned memory, the model runs in float16, and plain JPEGs are decoded on the
GPU itself (nvJPEG through torchvision) while the workers only make their thumbnails. On the CPU,
where the model already takes every core, a few threads decode each batch instead.

A picture that cannot be read (missing, empty, not an image, truncated, corrupt, a decompression
bomb) becomes a ``Problem`` naming the file and the reason; its item is left out and the rest go on.
Each item keeps a small WebP thumbnail in the ``thumbnail`` field (BLOB) for reports and pages.
The list of records (not the pictures) is held in memory, so decoding can be spread over workers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from kinsight.engine import Collection, Encoder, Item, Store, load_encoder
from kinsight.engine.errors import InvalidInputError, NotFoundError

from .chunking import Chunker
from .devices import usable_cores
from .image_encoders import TorchImageEncoder
from .image_files import IMAGE_SUFFIXES, ImageFileError, open_image, thumbnail_bytes
from .ingest import (
    IngestOptions,
    IngestReport,
    SpaceSource,
    digest,
    note_cut,
    text_chunker,
    text_of,
    timed,
)
from .readers import folder_files, read_records
from .records import Problem, Record

__all__ = ["DECODE_WORKERS_ENV", "THUMBNAIL_FIELD", "ingest_spaces", "read_image_records"]

log = logging.getLogger(__name__)

THUMBNAIL_FIELD = "thumbnail"
# Decode workers (processes on CUDA, threads on the CPU); unset: as below.
DECODE_WORKERS_ENV = "KINSIGHT_DECODE_WORKERS"
# On the CPU the model's threads already use every core: two decode threads keep PIL's C code
# (which releases the GIL) busy without starving it. On CUDA the CPU only decodes.
_CPU_DECODE_THREADS = 2
_CUDA_MAX_WORKERS = 16
_PREFETCH_BATCHES = 4
_JPEG_MAGIC = b"\xff\xd8\xff"
_EXIF_ORIENTATION = 0x0112


def read_image_records(path: str | Path, options: IngestOptions
                       ) -> tuple[Iterable[Record | Problem], Path]:
    """Records of a folder of pictures (recursive; id and image field = the path relative to it)
    or of a JSONL/CSV/Parquet list (one row per picture), and the folder image paths are relative to.
    """
    root = Path(path)
    if not root.exists():
        raise NotFoundError(f"{root}: no such file or folder; check the path")
    image_field = next(s for s in options.sources() if s.kind == "image").fields[0]
    if root.is_dir():
        return _read_image_folder(root, image_field), root
    return read_records(root, id_field=options.id_field, text_fields=(image_field,)), root.parent


def _read_image_folder(root: Path, image_field: str) -> Iterable[Record]:
    for file, relative in folder_files(root, IMAGE_SUFFIXES):
        yield Record(id=relative, fields={image_field: relative}, source=str(file), line=1)


# -- decoding -------------------------------------------------------------------------------------
@dataclass
class _Decoded:
    """One record's pictures, ready for its image encoders, or the problem that stops it."""

    position: int
    pixels: dict[str, Any] = field(default_factory=dict)  # space → tensor, JPEG bytes or image
    thumbnail: bytes | None = None
    problem: Problem | None = None
    seconds: float = 0.0


@dataclass
class _Batch:
    items: list[_Decoded]

    def pin_memory(self) -> _Batch:
        """Called by the DataLoader (pin_memory=True): page-locked tensors copy to the GPU
        asynchronously, overlapping the copy with the previous batch's compute."""
        for item in self.items:
            item.pixels = {name: value.pin_memory() if isinstance(value, torch.Tensor) else value
                           for name, value in item.pixels.items()}
        return self


def _collate(items: list[_Decoded]) -> _Batch:
    return _Batch(items)


@dataclass(frozen=True)
class _ImageSpace:
    """How one image space wants its pixels: its field, its transform (None: a PIL image for an
    encoder that preprocesses itself), and whether plain JPEGs go to the GPU undecoded."""

    name: str
    field: str
    transform: Callable[[Image.Image], torch.Tensor] | None
    min_side: int | None
    gpu_jpeg: bool


class _DecodeDataset(Dataset[_Decoded]):
    def __init__(self, records: Sequence[Record], spaces: Sequence[_ImageSpace], image_root: Path,
                 threads: int) -> None:
        self.records = records
        self.spaces = spaces
        self.image_root = image_root
        self.threads = threads

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, position: int) -> _Decoded:
        started = time.perf_counter()
        decoded = _Decoded(position)
        record = self.records[position]
        opened: dict[str, Image.Image] = {}
        for space in self.spaces:
            path = _image_path(self.image_root, record.fields[space.field])
            try:
                if space.gpu_jpeg and (raw := _plain_jpeg(path)) is not None:
                    decoded.pixels[space.name] = raw
                    if decoded.thumbnail is None:  # a 1/8-scale decode is enough for 128 px
                        decoded.thumbnail = thumbnail_bytes(open_image(path, min_side=1))
                    continue
                if space.field not in opened:
                    opened[space.field] = open_image(path, min_side=space.min_side)
            except ImageFileError as e:
                decoded.problem = Problem(record.source, record.line,
                                          f"item {record.id!r}: image {path}: {e.reason}", e.fix)
                decoded.pixels = {}
                break
            image = opened[space.field]
            decoded.pixels[space.name] = space.transform(image) if space.transform else image
            if decoded.thumbnail is None:
                decoded.thumbnail = thumbnail_bytes(image)
        decoded.seconds = time.perf_counter() - started
        return decoded

    def __getitems__(self, positions: list[int]) -> list[_Decoded]:
        # The DataLoader's batched fetch: on the CPU path, decode the batch on a few threads.
        if self.threads <= 1:
            return [self[p] for p in positions]
        with ThreadPoolExecutor(self.threads) as pool:
            return list(pool.map(self.__getitem__, positions))


def _image_path(root: Path, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else root / path


def _plain_jpeg(path: Path) -> torch.Tensor | None:
    """The file's bytes for the GPU decoder when it is a JPEG that needs nothing PIL does (no EXIF
    rotation, RGB or grey); None otherwise. Raises ImageFileError like ``open_image``."""
    try:
        data = path.read_bytes()
    except OSError:
        return None  # let open_image say what is wrong
    if not data.startswith(_JPEG_MAGIC):
        return None
    try:
        with Image.open(path) as header:  # reads the header only
            if header.mode not in ("RGB", "L") or header.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                return None
    except Exception:
        return None
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _gpu_jpeg_supported(device: str) -> bool:
    if not device.startswith("cuda"):
        return False
    try:
        from torchvision.io import decode_jpeg

        decode_jpeg(torch.zeros(0, dtype=torch.uint8), device=device)
    except RuntimeError:
        return True  # it ran on the GPU and refused the empty buffer: the GPU decoder exists
    except Exception:
        return False
    return True


def _loader(records: Sequence[Record], spaces: Sequence[_ImageSpace], image_root: Path,
            batch_size: int, cuda: bool) -> DataLoader[_Decoded]:
    explicit = os.environ.get(DECODE_WORKERS_ENV, "").strip()
    if explicit and (not explicit.isdigit()):
        raise InvalidInputError(f"{DECODE_WORKERS_ENV}={explicit!r} must be a whole number")
    if cuda:
        workers = int(explicit) if explicit else min(_CUDA_MAX_WORKERS, max(1, usable_cores() - 1))
        dataset = _DecodeDataset(records, spaces, image_root, threads=1)
        return DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                          collate_fn=_collate, pin_memory=True,
                          prefetch_factor=_PREFETCH_BATCHES if workers else None)
    threads = int(explicit) if explicit else min(_CPU_DECODE_THREADS, usable_cores())
    dataset = _DecodeDataset(records, spaces, image_root, threads=threads)
    return DataLoader(dataset, batch_size=batch_size, num_workers=0, collate_fn=_collate)


def _image_vectors(encoder: Encoder, values: list[Any], space: _ImageSpace) -> np.ndarray:
    """Vectors of one image space for a batch of decoded items (tensors, JPEG bytes or images)."""
    if not isinstance(encoder, TorchImageEncoder):
        return encoder.encode(values, role="document")
    if space.gpu_jpeg and any(v.dtype == torch.uint8 and v.dim() == 1 for v in values):
        from torchvision.io import ImageReadMode, decode_jpeg

        to_pixels = encoder.pixels.tensor_transform()
        raw = [i for i, v in enumerate(values) if v.dtype == torch.uint8 and v.dim() == 1]
        images = decode_jpeg([values[i] for i in raw], mode=ImageReadMode.RGB,
                             device=encoder.device)
        for i, image in zip(raw, images, strict=True):
            values[i] = to_pixels(image)
        values = [v.to(encoder.device, non_blocking=True) for v in values]
    return encoder.encode_pixels(torch.stack(values))


# -- the pipeline ---------------------------------------------------------------------------------
def ingest_spaces(store: Store, records: Iterable[Record | Problem], options: IngestOptions, *,
                  progress: bool = True, on_commit: Callable[[list[str]], None] | None = None,
                  save_indexes: bool = True, image_root: Path) -> IngestReport:
    """Ingest records into every space of ``options.sources()``; see the module docstring."""
    sources = options.sources()
    encoders = {source.name: _encoder_for(source) for source in sources}
    collection = store.create_collection(options.collection, exist_ok=True)
    chunkers: dict[str, Chunker] = {}
    image_spaces: list[_ImageSpace] = []
    for source in sources:
        encoder = encoders[source.name]
        if source.kind == "text":
            chunkers[source.name] = text_chunker(collection, source.name, encoder, source.fields,
                                                 options)
            continue
        collection.ensure_space(source.name, encoder.info, source_fields=source.fields)
        torch_encoder = encoder if isinstance(encoder, TorchImageEncoder) else None
        image_spaces.append(_ImageSpace(
            source.name, source.fields[0],
            torch_encoder.transform if torch_encoder else None,
            torch_encoder.pixels.resize if torch_encoder else None,
            gpu_jpeg=torch_encoder is not None and _gpu_jpeg_supported(torch_encoder.device)))
    cuda = any(isinstance(e, TorchImageEncoder) and e.device.startswith("cuda")
               for e in encoders.values())
    report = IngestReport(seconds={"read": 0.0, "diff": 0.0, "decode": 0.0, "encode": 0.0,
                                   "write": 0.0})
    with timed(report, "read"):
        found: list[Record] = []
        for entry in records:
            if isinstance(entry, Problem):
                report.problems.append(entry)
                log.warning("skipped %s", entry)
            else:
                found.append(entry)
    report.read = len(found)
    with timed(report, "diff"):
        changed, hashes = _changed(collection, found, options, encoders, chunkers, image_root,
                                   report)
    bar = tqdm(total=len(changed), desc=f"ingest {options.collection}", unit=" images",
               disable=not progress, dynamic_ncols=True)
    batches = iter(_loader(changed, image_spaces, image_root, options.batch_size, cuda))
    decode_work = 0.0
    while True:
        with timed(report, "decode"):
            batch = next(batches, None)
        if batch is None:
            break
        decode_work += sum(item.seconds for item in batch.items)
        written = _write_batch(collection, encoders, sources, chunkers, changed, hashes, batch,
                               image_spaces, report)
        if written and on_commit is not None:
            on_commit(written)
        bar.update(len(batch.items))
        bar.set_postfix(problems=len(report.problems), refresh=False)
    bar.close()
    if save_indexes:
        with timed(report, "write"):
            collection.refresh()
    log.info("%s; decoding took %.1fs of worker time", report.summary(), decode_work)
    return report


def _encoder_for(source: SpaceSource) -> Encoder:
    encoder = load_encoder(source.encoder)
    if encoder.info.modality != source.kind:
        raise InvalidInputError(
            f"space {source.name!r} is built from {source.kind}s but {source.encoder} encodes "
            f"{encoder.info.modality}s; pick an {source.kind} encoder (images: efficientnet:lite0 "
            "or open_clip:ARCH@WEIGHTS:image; texts: sentence-transformers:… or "
            "open_clip:ARCH@WEIGHTS:text)")
    for warning in encoder.info.warnings():
        log.warning("space %r: %s", source.name, warning)
    return encoder


def _changed(collection: Collection, records: list[Record], options: IngestOptions,
             encoders: dict[str, Encoder], chunkers: dict[str, Chunker], image_root: Path,
             report: IngestReport) -> tuple[list[Record], dict[str, str]]:
    """The records whose content (fields, spaces, models, image files' size and time, the chunk
    cap where it cuts a text) differs from what is stored; a record whose image file is missing
    becomes a problem here."""
    latest = {record.id: record for record in records}  # a repeated id: the last one wins
    sources = options.sources()
    spaces = [[s.name, s.kind, list(s.fields), encoders[s.name].info.fingerprint] for s in sources]
    hashes: dict[str, str] = {}
    kept: list[Record] = []
    for record in latest.values():
        stats = []
        for source in (s for s in sources if s.kind == "image"):
            value = record.fields.get(source.fields[0])
            path = _image_path(image_root, value) if value else None
            try:
                if path is None:
                    raise FileNotFoundError
                stat = path.stat()
            except OSError:
                report.problems.append(Problem(
                    record.source, record.line, f"item {record.id!r}: image "
                    f"{path or '(no path)'}: no such file", f"check the {source.fields[0]!r} "
                    "field (relative paths are relative to the list file's folder)"))
                break
            stats.append([stat.st_size, stat.st_mtime_ns])
        else:
            cut = any(chunker.cuts(text_of(record, s.fields)) for s in sources
                      if (chunker := chunkers.get(s.name)) is not None)
            hashes[record.id] = digest([record.fields, spaces, stats, options.chunk_overlap],
                                       cut_by=options.max_chunks if cut else None)
            kept.append(record)
    stored = collection.content_hashes(list(hashes))
    changed = [r for r in kept if stored.get(r.id) != hashes[r.id]]
    report.unchanged += len(kept) - len(changed)
    return changed, hashes


def _write_batch(collection: Collection, encoders: dict[str, Encoder],
                 sources: Sequence[SpaceSource], chunkers: dict[str, Chunker],
                 records: Sequence[Record], hashes: dict[str, str], batch: _Batch,
                 image_spaces: Sequence[_ImageSpace], report: IngestReport) -> list[str]:
    good = [item for item in batch.items if item.problem is None]
    for item in batch.items:
        if item.problem is not None:
            report.problems.append(item.problem)
            log.warning("skipped %s", item.problem)
    if not good:
        return []
    chosen = [records[item.position] for item in good]
    vectors: dict[str, dict[str, np.ndarray]] = {record.id: {} for record in chosen}
    spans: dict[str, dict[str, list[tuple[int, int]]]] = {record.id: {} for record in chosen}
    with timed(report, "encode"):
        for space in image_spaces:
            block = _image_vectors(encoders[space.name], [item.pixels[space.name] for item in good],
                                   space)
            for record, vector in zip(chosen, block, strict=True):
                vectors[record.id][space.name] = vector
        for source in (s for s in sources if s.kind == "text"):
            texts = []
            for record in chosen:
                if text := text_of(record, source.fields):
                    split = chunkers[source.name](text)
                    note_cut(report, record.id, source.name, split)
                    texts.append((record, split.chunks))
            flat = [chunk.text for _, chunks in texts for chunk in chunks]
            block = encoders[source.name].encode(flat, role="document")
            report.chunks += len(flat)
            start = 0
            for record, chunks in texts:
                vectors[record.id][source.name] = block[start:start + len(chunks)]
                spans[record.id][source.name] = [(c.start, c.end) for c in chunks]
                start += len(chunks)
    items = [Item(id=record.id, fields={**record.fields, THUMBNAIL_FIELD: item.thumbnail},
                  content_hash=hashes[record.id], vectors=vectors[record.id],
                  spans=spans[record.id]) for record, item in zip(chosen, good, strict=True)]
    with timed(report, "write"):
        collection.upsert(items)
    report.written += len(items)
    return [item.id for item in items]
