"""The ``ray`` encode executor: the encode stage of an ingest spread over Ray actors.

``RayExecutor`` sits behind the same interface as ``LocalExecutor`` (``executors.py``): the pipeline
streams it one job per batch and gets the vectors back in the order of the jobs, so the driver
(this process) stays the only DuckDB writer and the crash rule is the local one: a batch is
acknowledged only once written, and a rerun re-encodes only what was not committed.

- Each actor loads its encoders itself, from the spaces' specs (``load_encoder``: the model's
  files on that node, and the variant ``kinsight model prepare`` chose there or the one pinned
  here); no loaded model is ever pickled. Before the first job the driver checks that every actor
  loaded the weights the driver has (the fingerprints), so a node with other files is refused.
- Each job goes whole to one actor (the least busy), which encodes it as ``local`` would: the
  same vectors, item for item, whatever the variant.
- At most ``IN_FLIGHT_PER_WORKER`` jobs per actor are out at once (one encoding, one waiting its
  turn); a result is handed on as soon as it and those before it are back. A slow writer fills
  the pipeline's bounded queues, no more results are taken, no more jobs sent, and the workers
  wait: the object store holds a few batches, whatever the input size.
- On a cluster with GPUs each actor takes one (``num_gpus=1``); on CPUs each gets an equal share
  of the cluster's CPUs as its torch / ONNX Runtime threads.
- Actors start on the first job, not when the executor is made: by then ``model prepare`` has
  recorded this machine's variant, so actors and driver run the same one.

Why plain actors and not Ray Data ``map_batches`` with an actor pool: Ray Data runs a pipeline of
its own over a dataset it reads itself, while here the stream is the driver's (records diffed
against the store, chunked by the space's chunker, written in order by the driver, the store's
only writer). Feeding it to Ray Data means one dataset per batch (planning and start-up per job) or
handing it the whole read and moving diffing and chunking off the store they need. What is left
for it to do here, ordered results from a pool of model-holding actors with a bounded window, is
the thirty lines of ``encode_stream``.

Ray is imported only here, when an executor is made; ``bash scripts/setup.sh --ray`` installs it.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Generator, Iterable, Mapping
from typing import Any

import numpy as np

from kinsight.engine import (
    EncoderError,
    EncoderMismatchError,
    InvalidInputError,
    KinsightError,
    load_encoder,
)

from .devices import THREADS_ENV
from .executors import EncodeJob, LocalExecutor
from .model_cache import VARIANT_ENV

__all__ = ["RAY_MISSING", "RayExecutor", "import_ray"]

log = logging.getLogger(__name__)

RAY_MISSING = ("the ray executor (--workers, --ray) needs Ray, which is not installed; run "
               "bash scripts/setup.sh --ray (or pip install 'kinsight[ray]')")
START_SECONDS = 600  # how long actors may take to be placed and load their models
CPUS_PER_WORKER = 4  # on a cluster of CPUs without --workers: one actor per this many CPUs
IN_FLIGHT_PER_WORKER = 2  # one job encoding, the next one waiting in the actor's queue


def import_ray() -> Any:
    """The ``ray`` module; ``EncoderError`` naming the setup step when it is not installed."""
    try:
        import ray
    except ImportError as e:
        raise EncoderError(RAY_MISSING) from e
    return ray


class _EncodeWorker:
    """One Ray actor: ``load`` loads the encoders of ``specs`` (space → spec) in its own process
    (in a method, not ``__init__``, so that a model that cannot load fails as a task, with the
    kinsight error itself for the driver to show), then it encodes jobs as ``LocalExecutor``.
    ``env`` is set first (its threads, a pinned variant): models read it as they load. Image
    spaces take the JPEGs the driver left undecoded: they are decoded on the actor's device."""

    def __init__(self, specs: dict[str, str], env: dict[str, str]) -> None:
        os.environ.update(env)  # this process is the actor's alone
        self.specs = specs
        self.local: LocalExecutor | None = None

    def load(self) -> dict[str, str]:
        """The fingerprint of each space's weights, once loaded."""
        encoders = {space: load_encoder(spec) for space, spec in self.specs.items()}
        images = [space for space, e in encoders.items() if e.info.modality == "image"]
        self.local = LocalExecutor(encoders, gpu_jpeg=images)
        return {space: e.info.fingerprint for space, e in encoders.items()}

    def encode(self, job: EncodeJob) -> dict[str, np.ndarray]:
        if self.local is None:
            raise EncoderError("a Ray worker got a job before loading its models")
        return self.local.encode(job)


class RayExecutor:
    """Encodes on Ray actors, each loading the encoders of ``specs`` (space → encoder spec).

    ``address``: an existing cluster (``ray://HOST:10001``, or ``auto`` on one of its nodes);
    None starts a local Ray of this machine's cores. ``workers``: the actors (default: one per
    GPU, else one per ``CPUS_PER_WORKER`` CPUs). A Ray already initialised in this process (a
    test's, a notebook's) is used as it is and left running; one started here stops on ``close``.
    """

    def __init__(self, specs: Mapping[str, str], *, workers: int | None = None,
                 address: str | None = None) -> None:
        if workers is not None and workers < 1:
            raise InvalidInputError(f"--workers {workers}: give 1 or more Ray workers")
        self.ray = import_ray()
        self.specs = dict(specs)
        self.workers = workers
        self.address = address
        self.actors: list[Any] = []
        self.in_flight = 0  # jobs out at once, once the actors are up
        self._started_ray = False

    def encode_stream(self, jobs: Iterable[EncodeJob]
                      ) -> Generator[dict[str, np.ndarray], None, None]:
        ray = self.ray
        pending: deque[tuple[Any, int] | None] = deque()  # (result, actor) per job; None: empty
        busy = [0] * len(self.actors)  # jobs out per actor (none before the first job)

        def collect() -> dict[str, np.ndarray]:
            head = pending.popleft()
            if head is None:
                return {}
            result, actor = head
            busy[actor] -= 1
            try:
                return ray.get(result)
            except ray.exceptions.RayError as e:
                raise _worker_error(e) from e

        for job in jobs:
            if not job.texts and not job.pixels:
                pending.append(None)
            else:
                if not self.actors:
                    self._start()
                    busy = [0] * len(self.actors)
                actor = min(range(len(self.actors)), key=busy.__getitem__)
                busy[actor] += 1
                pending.append((self.actors[actor].encode.remote(job), actor))
            # Hand on what is back; wait only when the window is full.
            while pending and (len(pending) >= self.in_flight or pending[0] is None
                               or _done(ray, pending[0][0])):
                yield collect()
        while pending:
            yield collect()

    def close(self) -> None:
        """Stop the actors (and the local Ray this executor started)."""
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self._started_ray:
            self.ray.shutdown()
            self._started_ray = False

    def _start(self) -> None:
        ray = self.ray
        since = time.perf_counter()
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise InvalidInputError(f"cannot reach the Ray cluster at {self.address!r} ({e}); "
                                        "check the address (ray status on a node prints it), or "
                                        "use --workers N for a local Ray") from e
            self._started_ray = True
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 1))
        count = self.workers or (gpus or max(1, int(cpus) // CPUS_PER_WORKER))
        if gpus and count > gpus:
            self.close()
            raise InvalidInputError(f"{count} Ray workers asked for, but the cluster has {gpus} "
                                    f"GPU(s), one per worker; give --workers {gpus} or fewer")
        threads = None if gpus else max(1, int(cpus // count))
        placement = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": min(threads or 1,
                                                                                 cpus / count)}
        env = {THREADS_ENV: str(threads)} if threads else {}
        if pinned := os.environ.get(VARIANT_ENV):  # a variant pinned here holds there too
            env[VARIANT_ENV] = pinned
        worker = ray.remote(_EncodeWorker).options(**placement)
        self.actors = [worker.remote(self.specs, env) for _ in range(count)]
        ready, _ = ray.wait([a.load.remote() for a in self.actors], num_returns=count,
                            timeout=START_SECONDS)
        if len(ready) < count:
            self.close()
            raise EncoderError(f"only {len(ready)} of {count} Ray workers started within "
                               f"{START_SECONDS} s (cluster: {cpus:g} CPUs, {gpus} GPUs); give "
                               "fewer --workers, or check ray status")
        try:
            loaded = ray.get(ready)
        except ray.exceptions.RayError as e:
            self.close()
            raise _worker_error(e) from e
        self._check_weights(loaded)
        self.in_flight = IN_FLIGHT_PER_WORKER * count
        log.info("%d Ray workers (%s each) ready in %.1fs", count,
                 "1 GPU" if gpus else f"{threads} CPU threads", time.perf_counter() - since)

    def _check_weights(self, loaded: list[dict[str, str]]) -> None:
        """Every worker must hold the weights this process holds for each space."""
        for space, spec in self.specs.items():
            here = load_encoder(spec).info.fingerprint  # cached: the pipeline's own encoder
            there = {fingerprints[space] for fingerprints in loaded}
            if there != {here}:
                self.close()
                raise EncoderMismatchError(
                    f"space {space!r}: Ray workers loaded {spec} with weights "
                    f"{', '.join(sorted(map(str, there)))}, this process {here}; install the same "
                    "model files on every node")


def _done(ray: Any, result: Any) -> bool:
    ready, _ = ray.wait([result], timeout=0)
    return bool(ready)


def _worker_error(error: Exception) -> Exception:
    """A worker's kinsight error as itself; anything else (a dead node) as an ``EncoderError``
    with the first line of Ray's message (the rest is Ray's traceback, kept in the log)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, KinsightError):
        return cause
    log.debug("Ray worker failure", exc_info=error)
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return EncoderError(f"a Ray worker failed ({type(error).__name__}: {first}); run the command "
                        "again (an ingest keeps what it wrote and does not encode it again)")
