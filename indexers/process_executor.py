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

The child is ``python -m kinsight.indexers.process_executor``, a fresh interpreter that imports
only kinsight, talking to the server over a ``multiprocessing`` pipe whose descriptor it is given:
not a ``multiprocessing`` / ``ProcessPoolExecutor`` worker, which is started by re-importing the
server's ``__main__`` (a script that starts a server at import would start another), and whose
queue never tells a worker that its parent died. Over a pipe, either side's death is the other's
end of file: a server killed with ``kill -9`` takes its child with it. POSIX only (``os.nice``,
passing a descriptor); elsewhere the server encodes in its own process.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Generator, Iterable, Mapping
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from kinsight.engine import EncoderMismatchError, WorkerLostError, load_encoder

from .executors import EncodeJob, LocalExecutor

__all__ = ["DEFAULT_NICENESS", "ProcessExecutor", "available"]

# Linux's nice weights make a nice-10 thread worth ~1/10 of a nice-0 one on a busy core: searches
# keep theirs, and an idle core still goes to the encoding whole.
DEFAULT_NICENESS = 10
STOP_SECONDS = 10


def available() -> bool:
    """Whether this platform can run the child (POSIX: ``os.nice`` and inherited descriptors)."""
    return hasattr(os, "nice") and os.name == "posix"


class ProcessExecutor:
    """Encodes in one child process at ``niceness`` (0-19, added to this process's own); one
    job at a time (concurrent ingests take turns)."""

    def __init__(self, niceness: int = DEFAULT_NICENESS) -> None:
        if not 0 <= niceness <= 19:
            raise ValueError(f"niceness {niceness}: give 0 to 19")
        self.niceness = niceness
        self._child: tuple[subprocess.Popen[bytes], Connection] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The child's process id (None before the first job and after ``stop``)."""
        return None if self._child is None else self._child[0].pid

    def for_ingest(self, specs: Mapping[str, str], gpu_jpeg: Iterable[str] = ()
                   ) -> _IngestView:
        """The executor of one ingest whose spaces have encoders ``specs`` (space → spec)."""
        return _IngestView(self, dict(specs), frozenset(gpu_jpeg))

    def run(self, job: EncodeJob, specs: dict[str, str], gpu_jpeg: frozenset[str]
            ) -> dict[str, np.ndarray]:
        """One job's vectors, encoded in the child."""
        vectors: dict[str, np.ndarray] = self._call(("encode", specs, gpu_jpeg, job))
        return vectors

    def fingerprints(self, specs: dict[str, str]) -> dict[str, str]:
        """The fingerprints of the weights the child loaded for ``specs``, by space."""
        fingerprints: dict[str, str] = self._call(("fingerprints", specs))
        return fingerprints

    def stop(self) -> None:
        """End the child (a later job starts a new one)."""
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            process, connection = child
            connection.close()  # its end of file: the child exits
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _call(self, request: tuple[Any, ...]) -> Any:
        with self._lock:
            if self._child is None:
                self._child = self._start()
            process, connection = self._child
            try:
                connection.send(request)
                ok, answer = connection.recv()
            except (EOFError, OSError) as e:
                self._child = None  # the next job starts a new child
                connection.close()
                process.kill()
                process.wait()
                raise WorkerLostError(
                    f"the encoding process ended before it answered (exit status "
                    f"{process.returncode}: killed, out of memory, or it could not start, which "
                    "the server's log says); nothing of this batch was written: send it "
                    "again") from e
        if not ok:
            raise answer
        return answer

    def _start(self) -> tuple[subprocess.Popen[bytes], Connection]:
        ours, theirs = Pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno()), str(self.niceness)],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        finally:
            theirs.close()  # the child's copy is its own: its death is our end of file
        return process, ours


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


def _answer(request: tuple[Any, ...]) -> Any:
    kind, specs, *rest = request
    encoders = {space: load_encoder(spec) for space, spec in specs.items()}  # once: cached
    if kind == "fingerprints":
        return {space: encoder.info.fingerprint for space, encoder in encoders.items()}
    gpu_jpeg, job = rest
    return LocalExecutor(encoders, gpu_jpeg).encode(job)


def _serve(connection: Connection) -> None:
    """The child: answer requests until the server closes its end (or dies)."""
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[bool, Any] = (True, _answer(request))
        except Exception as e:  # the server raises it: an encoder that cannot load, bad input
            reply = (False, e)
        try:
            connection.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError):  # an exception pickle refuses
            connection.send((False, RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}")))


if __name__ == "__main__":
    descriptor, niceness = map(int, sys.argv[1:3])
    if niceness:
        os.nice(niceness)
    _serve(Connection(descriptor))
