"""The ``process`` encode executor: the encode stage in a child process of lower CPU priority.

A server that encodes its upserts in its own process shares the cores with the searches it
answers: each batch of a long ingest keeps every core busy for hundreds of milliseconds, and a
search meanwhile waits its turn for one (`benchmarks/load.py`: a lone search took 2.5x as long
while a client ingested as without). ``ProcessExecutor`` runs the encoders in one child process
started at a higher nice value (``os.nice``): the kernel gives the server's threads a core
whenever they want one, and the encoding what is left, so reads do not wait for writes, and a
write still gets every cycle no search wants.

- The child loads each encoder itself, from its spec (``load_encoder``: the files and variant this
  machine has), never a pickled model; before the first job of an ingest its weights are checked
  against the server's (the fingerprints), so a model changed on disk meanwhile is refused.
- Each job goes whole to the child, which encodes it as ``local`` would
  (``LocalExecutor.encode``): the same vectors, item for item.
- One child serves every ingest (``for_ingest`` gives each pipeline a view whose ``close``
  leaves it running), started on the first job and stopped by ``stop``; a child that dies
  (killed, out of memory) fails the job it had with ``WorkerLostError`` and is started anew for the
  next one. Nothing is written for a failed job: the pipeline's writer only commits vectors it got.

Built on ``concurrent.futures.ProcessPoolExecutor`` with one worker, ``spawn``ed: the server has
threads, which a ``fork`` would copy in whatever state they were.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

import numpy as np

from kinsight.engine import EncoderMismatchError, WorkerLostError, load_encoder

from .executors import EncodeJob, LocalExecutor

__all__ = ["DEFAULT_NICENESS", "ProcessExecutor"]

# Linux's nice weights make a nice-10 thread worth ~1/10 of a nice-0 one on a busy core: searches
# keep theirs, and an idle core still goes to the encoding whole.
DEFAULT_NICENESS = 10
PARENT_CHECK_SECONDS = 1.0
T = TypeVar("T")


class ProcessExecutor:
    """Encodes in one child process at ``niceness`` (0-19, added to this process's own)."""

    def __init__(self, niceness: int = DEFAULT_NICENESS) -> None:
        if not 0 <= niceness <= 19:
            raise ValueError(f"niceness {niceness}: give 0 to 19")
        self.niceness = niceness
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def for_ingest(self, specs: Mapping[str, str], gpu_jpeg: Iterable[str] = ()
                   ) -> _IngestView:
        """The executor of one ingest whose spaces have encoders ``specs`` (space → spec)."""
        return _IngestView(self, dict(specs), frozenset(gpu_jpeg))

    def run(self, job: EncodeJob, specs: dict[str, str], gpu_jpeg: frozenset[str]
            ) -> dict[str, np.ndarray]:
        """One job's vectors, encoded in the child."""
        return self._call(_encode_in_child, specs, gpu_jpeg, job)

    def fingerprints(self, specs: dict[str, str]) -> dict[str, str]:
        """The fingerprints of the weights the child loaded for ``specs``, by space."""
        return self._call(_fingerprints_in_child, specs)

    def stop(self) -> None:
        """End the child (a later job starts a new one)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _call(self, function: Callable[..., T], *args: object) -> T:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_child, initargs=(self.niceness, os.getpid()))
            pool = self._pool
        try:
            return pool.submit(function, *args).result()
        except BrokenProcessPool as e:
            with self._lock:
                if self._pool is pool:
                    self._pool = None  # the next job starts a new child
            raise WorkerLostError("the encoding process ended before it answered (killed, or out "
                               "of memory); nothing of this batch was written: send it "
                               "again") from e


class _IngestView:
    """``ProcessExecutor`` as the ``EncodeExecutor`` of one pipeline."""

    def __init__(self, owner: ProcessExecutor, specs: dict[str, str],
                 gpu_jpeg: frozenset[str]) -> None:
        self.owner, self.specs, self.gpu_jpeg = owner, specs, gpu_jpeg
        self._checked = False

    def encode_stream(self, jobs: Iterable[EncodeJob]
                      ) -> Generator[dict[str, np.ndarray], None, None]:
        for job in jobs:
            if not job.texts and not job.pixels:
                yield {}
                continue
            if not self._checked:
                self._check_weights()
            yield self.owner.run(job, self.specs, self.gpu_jpeg)

    def close(self) -> None:
        """Nothing to release: the child serves the next ingest too (``ProcessExecutor.stop``)."""

    def _check_weights(self) -> None:
        there = self.owner.fingerprints(self.specs)
        for space, spec in self.specs.items():
            here = load_encoder(spec).info.fingerprint  # cached: the pipeline's own encoder
            if there[space] != here:
                raise EncoderMismatchError(
                    f"space {space!r}: the encoding process loaded {spec} with weights "
                    f"{there[space]}, this process has {here}: the model's files changed on "
                    "disk since the server started; restart it")
        self._checked = True


def _start_child(niceness: int, parent: int) -> None:
    if niceness and hasattr(os, "nice"):  # no os.nice on Windows: the child runs as it is
        os.nice(niceness)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True,
                     name="kinsight-parent-watch").start()


def _exit_with(parent: int) -> None:
    """End this child once ``parent`` has: a server killed with SIGKILL cannot stop it, and
    the pool's queue never reports a parent gone (the child holds both of its ends)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def _encode_in_child(specs: dict[str, str], gpu_jpeg: frozenset[str], job: EncodeJob
                     ) -> dict[str, np.ndarray]:
    encoders = {space: load_encoder(spec) for space, spec in specs.items()}  # once: cached
    return LocalExecutor(encoders, gpu_jpeg).encode(job)


def _fingerprints_in_child(specs: dict[str, str]) -> dict[str, str]:
    return {space: load_encoder(spec).info.fingerprint for space, spec in specs.items()}
