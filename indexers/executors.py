"""Where the encode stage of the ingest pipeline runs: the ``EncodeExecutor`` interface.

The pipeline hands each batch's inputs to an executor as one ``EncodeJob`` (the chunk texts of
every text space, the decoded pictures of every image space), as a stream of jobs, and gets one
block of vectors per space back for each job, row for row, in the order of the jobs.
``LocalExecutor`` (the default) runs the encoders the pipeline loaded, in this process, one job at
a time. ``ray_executor.RayExecutor`` spreads the jobs over Ray actors, each loading the model from
its path, with a few jobs in flight; the pipeline stays the only writer either way. Each job is
encoded whole, by one encoder call, so the vectors do not depend on the executor (int8 variants
quantise a batch's activations together: cutting a job differently would move its vectors).
"""

from __future__ import annotations

from collections.abc import Collection, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from kinsight.engine import Encoder

__all__ = ["EncodeExecutor", "EncodeJob", "LocalExecutor"]


@dataclass
class EncodeJob:
    """One batch's inputs, by space: ``texts`` (chunk texts, items in order) of the text spaces
    and ``pixels`` (what ``image_ingest.decode_batch`` made of each picture) of the image ones."""

    texts: dict[str, list[str]] = field(default_factory=dict)
    pixels: dict[str, list[Any]] = field(default_factory=dict)


class EncodeExecutor(Protocol):
    """Turns jobs into vectors: ``encode_stream`` yields, for each job in order, the vectors of
    every space of the job, float32 ``(inputs, dim)`` in the order of its inputs (an empty job:
    ``{}``); it may take a few jobs ahead of what it has yielded. ``close`` releases workers (once,
    at the end)."""

    def encode_stream(self, jobs: Iterable[EncodeJob]
                      ) -> Generator[dict[str, np.ndarray], None, None]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Encodes in this process, with the given encoders (space → encoder); ``gpu_jpeg`` names the
    image spaces whose plain JPEGs arrive undecoded, for the GPU's decoder."""

    def __init__(self, encoders: Mapping[str, Encoder], gpu_jpeg: Collection[str] = ()) -> None:
        self.encoders = dict(encoders)
        self.gpu_jpeg = frozenset(gpu_jpeg)

    def encode_stream(self, jobs: Iterable[EncodeJob]
                      ) -> Generator[dict[str, np.ndarray], None, None]:
        for job in jobs:
            yield self.encode(job)

    def encode(self, job: EncodeJob) -> dict[str, np.ndarray]:
        """One job's vectors (see ``EncodeExecutor``)."""
        vectors: dict[str, np.ndarray] = {}
        if job.pixels:
            from .image_ingest import image_vectors  # torch: only for pictures

            for space, values in job.pixels.items():
                vectors[space] = image_vectors(self.encoders[space], values,
                                               gpu_jpeg=space in self.gpu_jpeg)
        for space, texts in job.texts.items():
            vectors[space] = self.encoders[space].encode(texts, role="document")
        return vectors

    def close(self) -> None:
        """Nothing to release: the encoders belong to the caller (and the model cache)."""
