"""Dynamic micro-batching of single searches: concurrent ``POST /collections/{name}/search``
requests on one collection run as one ``Collection.search_batch`` (one encoder batch, one index
call), which is what keeps latency flat when many clients search at once on few cores.

The route is async and a waiting caller holds no thread: it awaits a future on the event loop.
The first request of a collection starts that collection's drainer, which runs its search at
once, alone (a lone caller waits for nothing); requests that arrive meanwhile queue up, and the
drainer's next batch takes everyone queued (at most ``max_batch`` of them), until none is left.
Batches run in worker threads of the batcher's own limiter, so searches never queue for a thread
behind sync routes (upserts waiting for the write lock), and any number of callers can wait. Each
caller gets its own answer or error; ``search_batch`` reruns a failing group one call at a time,
so a bad query fails only itself, with the error the route of one query raises.

Written by hand because no well-kept library coalesces requests of a FastAPI route in process:
batching servers (Ray Serve's ``@serve.batch``, NVIDIA Triton, TorchServe, BentoML's adaptive
batching) are serving stacks of their own, and ``@serve.batch`` batches async methods of a Ray
deployment after a fixed wait, where a lone request here must not wait at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio.to_thread
from anyio import CapacityLimiter

from kinsight.engine import Answer, Collection, SearchCall

__all__ = ["SearchBatcher"]

# Collections whose batches may run at once (one batch at a time per collection).
_BATCH_THREADS = 8


@dataclass(eq=False)
class _Pending:
    """One caller's search and the future its answer (or failure) is set on."""

    call: SearchCall
    future: asyncio.Future[Answer]


@dataclass(eq=False)
class _Lane:
    """The searches of one collection waiting for the next batch, and the task running them."""

    queued: list[_Pending] = field(default_factory=list)
    drainer: asyncio.Task[None] | None = None


class SearchBatcher:
    """Runs concurrent single searches of one collection as batches (one per app, so two apps
    in one process never batch together; all its callers run on the app's event loop).
    ``on_batch`` is called with each batch's calls before it runs (the route counts the texts
    it encodes)."""

    def __init__(self, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.max_batch = max_batch
        self._limiter = CapacityLimiter(_BATCH_THREADS)
        # Keyed by the Collection object: the store hands out one per name, and a collection
        # dropped and made again is another object, so its searches never join the old one's.
        self._lanes: dict[Collection, _Lane] = {}

    async def search(self, collection: Collection, call: SearchCall,
                     on_batch: Callable[[Sequence[SearchCall]], None]) -> Answer:
        """The answer of ``call``: its hits, or the ``KinsightError`` it raised; a failure
        that is no query's fault (a bug, a broken store) is raised."""
        pending = _Pending(call, asyncio.get_running_loop().create_future())
        lane = self._lanes.setdefault(collection, _Lane())
        lane.queued.append(pending)
        if lane.drainer is None:
            lane.drainer = asyncio.create_task(self._drain(collection, lane, on_batch),
                                               name=f"search-batches-{collection.name}")
        return await pending.future

    async def _drain(self, collection: Collection, lane: _Lane,
                     on_batch: Callable[[Sequence[SearchCall]], None]) -> None:
        """Run the lane's queue as batches until it is empty, then forget the lane."""
        batch: list[_Pending] = []
        try:
            while lane.queued:
                batch, lane.queued = lane.queued[:self.max_batch], lane.queued[self.max_batch:]
                batch = [pending for pending in batch if not pending.future.done()]  # gone
                if not batch:
                    continue
                outcomes = await anyio.to_thread.run_sync(
                    _run_batch, collection, [pending.call for pending in batch], on_batch,
                    limiter=self._limiter)
                for pending, outcome in zip(batch, outcomes, strict=True):
                    if pending.future.done():  # its caller went away meanwhile
                        continue
                    if isinstance(outcome, _Failure):
                        pending.future.set_exception(outcome.error)
                    else:
                        pending.future.set_result(outcome)
                batch = []
        finally:
            # Cancelled (the loop shuts down): no caller may wait for an answer never set.
            for pending in [*batch, *lane.queued]:
                pending.future.cancel()
            if self._lanes.get(collection) is lane:
                del self._lanes[collection]


@dataclass(frozen=True)
class _Failure:
    """What a call raised that is not a query's fault; re-raised in its caller."""

    error: Exception


def _run_batch(collection: Collection, calls: list[SearchCall],
               on_batch: Callable[[Sequence[SearchCall]], None]) -> list[Answer | _Failure]:
    """The outcome of each call, in a worker thread."""
    try:
        on_batch(calls)
        return list(collection.search_batch(calls))
    except Exception as failure:
        # Not a query's fault (search_batch answers those): a bug or a fault of the store.
        # Run alone, each call fails or not as it would have without batching.
        if len(calls) == 1:
            return [_Failure(failure)]
        return [_run_alone(collection, call) for call in calls]


def _run_alone(collection: Collection, call: SearchCall) -> Answer | _Failure:
    try:
        return collection.search_batch([call])[0]
    except Exception as failure:
        return _Failure(failure)
