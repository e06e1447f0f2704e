"""Dynamic micro-batching of single searches: concurrent ``POST /collections/{name}/search``
requests on one collection run as one ``Collection.search_batch`` (one encoder batch, one index
call), which is what keeps latency flat when many clients search at once on few cores.

The first request of a collection runs at once, alone: a lone caller waits for nothing. Requests
that arrive while it runs queue up; when it ends, the first of them leads the next batch, which
takes everyone queued meanwhile (at most ``max_batch`` of them). Each caller gets its own answer
or error; ``search_batch`` reruns a failing group one call at a time, so a bad query fails only
itself, with the error the route of one query raises.

Written by hand because no well-kept library coalesces requests of FastAPI's sync routes in
process: batching servers (Ray Serve's ``@serve.batch``, NVIDIA Triton, TorchServe, BentoML's
adaptive batching) are serving stacks of their own, and ``@serve.batch`` batches async methods of
a Ray deployment after a fixed wait, where a lone request here must not wait at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kinsight.engine import Answer, Collection, SearchCall

__all__ = ["SearchBatcher"]


@dataclass(eq=False)
class _Pending:
    """One caller's search, its answer once known, and whether it leads the next batch."""

    call: SearchCall
    ready: threading.Event = field(default_factory=threading.Event)
    answer: Answer | None = None
    failure: Exception | None = None  # raised by more than this query: re-raised in its caller
    leads: bool = False


@dataclass(eq=False)
class _Lane:
    """The searches of one collection: the queued ones, and whether a batch is running."""

    queued: list[_Pending] = field(default_factory=list)
    running: bool = False


class SearchBatcher:
    """Runs concurrent single searches of one collection as batches (one per app, so two apps
    in one process never batch together). ``on_batch`` is called with each batch's calls before
    it runs (the route counts the texts it encodes)."""

    def __init__(self, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.max_batch = max_batch
        self._lock = threading.Lock()
        # Keyed by the Collection object: the store hands out one per name, and a collection
        # dropped and made again is another object, so its searches never join the old one's.
        self._lanes: dict[Collection, _Lane] = {}

    def search(self, collection: Collection, call: SearchCall,
               on_batch: Callable[[Sequence[SearchCall]], None]) -> Answer:
        """The answer of ``call``: its hits, or the ``KinsightError`` it raised."""
        pending = _Pending(call)
        with self._lock:
            lane = self._lanes.setdefault(collection, _Lane())
            lane.queued.append(pending)
            pending.leads = not lane.running
            lane.running = True
        if not pending.leads:
            pending.ready.wait()  # set when the answer is in, or when this caller leads
        if pending.leads:
            self._run_batch(collection, lane, on_batch)
        if pending.failure is not None:
            raise pending.failure
        if pending.answer is None:  # every path above sets one of the two
            raise RuntimeError("a batched search ended with neither an answer nor an error")
        return pending.answer

    def _run_batch(self, collection: Collection, lane: _Lane,
                   on_batch: Callable[[Sequence[SearchCall]], None]) -> None:
        """Run the leader's batch (the leader is first in the queue), hand out the answers and
        pass the lead to the first caller queued meanwhile, if any."""
        with self._lock:
            batch, lane.queued = lane.queued[:self.max_batch], lane.queued[self.max_batch:]
        calls = [pending.call for pending in batch]
        try:
            on_batch(calls)
            answers = collection.search_batch(calls)
        except Exception as failure:
            # Not a query's fault (search_batch answers those): a bug or a fault of the store.
            # Run alone, each call fails or not as it would have without batching.
            if len(batch) == 1:
                batch[0].failure = failure
            else:
                for pending in batch:
                    _run_alone(collection, pending)
        else:
            for pending, answer in zip(batch, answers, strict=True):
                pending.answer = answer
        finally:
            with self._lock:
                if lane.queued:
                    lane.queued[0].leads = True
                    lane.queued[0].ready.set()
                else:
                    lane.running = False
                    del self._lanes[collection]
            for pending in batch:
                pending.ready.set()


def _run_alone(collection: Collection, pending: _Pending) -> None:
    try:
        pending.answer = collection.search_batch([pending.call])[0]
    except Exception as failure:
        pending.failure = failure
