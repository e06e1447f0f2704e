"""Pictures for the ingest pipeline (``pipeline.py``): reading lists and folders of them, decoding
them on a few threads, and encoding what was decoded.

On CUDA, plain JPEGs are handed over undecoded and decoded on the GPU itself (nvJPEG through
torchvision), while the threads only make their thumbnails; every other picture is decoded and
transformed by PIL and torch on the threads (both release the GIL), ``usable_cores() - 1`` of them
on CUDA, where the CPU only decodes, and two on the CPU, where the model already takes every core.

A picture that cannot be read (missing, empty, not an image, truncated, corrupt, a decompression
bomb) becomes a ``Problem`` naming the file and the reason; its item is left out and the rest go on.
Each item keeps a small WebP thumbnail in the ``thumbnail`` field (BLOB) for reports and pages.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from kinsight.engine import Encoder
from kinsight.engine.errors import InvalidInputError, NotFoundError

from .devices import usable_cores
from .image_encoders import TorchImageEncoder
from .image_files import (
    IMAGE_SUFFIXES,
    THUMBNAIL_FIELD,
    ImageFileError,
    open_image,
    thumbnail_bytes,
)
from .ingest import IngestOptions
from .readers import folder_files, read_records
from .records import Problem, Record

__all__ = ["DECODE_WORKERS_ENV", "THUMBNAIL_FIELD", "Decoded", "PictureDecoder", "image_path",
           "image_vectors", "read_image_records"]

# Decode threads; unset: as below.
DECODE_WORKERS_ENV = "KINSIGHT_DECODE_WORKERS"
# On the CPU the model's threads already use every core: two decode threads keep PIL's C code
# (which releases the GIL) busy without starving it. On CUDA the CPU only decodes.
_CPU_DECODE_THREADS = 2
_CUDA_MAX_THREADS = 16
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
class Decoded:
    """One record's pictures, ready for its image encoders (space → tensor, JPEG bytes or
    image), or the problem that keeps it out."""

    record: Record
    pixels: dict[str, Any] = field(default_factory=dict)
    thumbnail: bytes | None = None
    problem: Problem | None = None


@dataclass(frozen=True)
class _ImageSpace:
    """How one image space wants its pixels: its field, its transform (None: a PIL image for an
    encoder that preprocesses itself), and whether plain JPEGs go to the GPU undecoded."""

    name: str
    field: str
    transform: Any  # Callable[[Image.Image], torch.Tensor] | None
    min_side: int | None
    gpu_jpeg: bool


class PictureDecoder:
    """Decodes the pictures of records for the image spaces (``encoders``: space → its encoder
    and field) on a pool of threads; ``close`` ends the pool."""

    def __init__(self, encoders: dict[str, tuple[Encoder, str]], image_root: Path) -> None:
        self.spaces = [_image_space(name, encoder, source_field)
                       for name, (encoder, source_field) in encoders.items()]
        self.image_root = image_root
        cuda = any(isinstance(e, TorchImageEncoder) and e.device.startswith("cuda")
                   for e, _ in encoders.values())
        self._pool = ThreadPoolExecutor(_decode_threads(cuda), thread_name_prefix="kinsight-decode")

    @property
    def gpu_jpeg(self) -> list[str]:
        """The image spaces whose plain JPEGs are passed on undecoded."""
        return [space.name for space in self.spaces if space.gpu_jpeg]

    def __call__(self, records: Sequence[Record]) -> list[Decoded]:
        return list(self._pool.map(self._decode, records))

    def close(self) -> None:
        self._pool.shutdown()

    def _decode(self, record: Record) -> Decoded:
        decoded = Decoded(record)
        opened: dict[str, Image.Image] = {}
        for space in self.spaces:
            path = image_path(self.image_root, record.fields[space.field])
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
        return decoded


def _image_space(name: str, encoder: Encoder, source_field: str) -> _ImageSpace:
    torch_encoder = encoder if isinstance(encoder, TorchImageEncoder) else None
    return _ImageSpace(name, source_field, torch_encoder.transform if torch_encoder else None,
                       torch_encoder.pixels.size if torch_encoder else None,
                       gpu_jpeg=torch_encoder is not None
                       and _gpu_jpeg_supported(torch_encoder.device))


def _decode_threads(cuda: bool) -> int:
    explicit = os.environ.get(DECODE_WORKERS_ENV, "").strip()
    if explicit and (not explicit.isdigit() or int(explicit) < 1):
        raise InvalidInputError(f"{DECODE_WORKERS_ENV}={explicit!r} must be a whole number "
                                "of at least 1")
    if explicit:
        return int(explicit)
    if cuda:
        return min(_CUDA_MAX_THREADS, max(1, usable_cores() - 1))
    return min(_CPU_DECODE_THREADS, usable_cores())


def image_path(root: Path, value: Any) -> Path:
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


def image_vectors(encoder: Encoder, values: list[Any], *, gpu_jpeg: bool) -> np.ndarray:
    """Vectors of one image space for a batch of decoded items (tensors, JPEG bytes or images;
    ``gpu_jpeg``: plain JPEGs among them arrive as bytes, for the GPU's decoder)."""
    if not isinstance(encoder, TorchImageEncoder):
        return encoder.encode(values, role="document")
    if gpu_jpeg and any(v.dtype == torch.uint8 and v.dim() == 1 for v in values):
        from torchvision.io import ImageReadMode, decode_jpeg

        to_pixels = encoder.pixels.tensor_transform()
        raw = [i for i, v in enumerate(values) if v.dtype == torch.uint8 and v.dim() == 1]
        images = decode_jpeg([values[i] for i in raw], mode=ImageReadMode.RGB,
                             device=encoder.device)
        for i, image in zip(raw, images, strict=True):
            values[i] = to_pixels(image)
        values = [v.to(encoder.device, non_blocking=True) for v in values]
    return encoder.encode_pixels(torch.stack(values))


