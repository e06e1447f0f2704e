"""Run steps over a stream of batches, each step in a thread of its own, joined by bounded queues.

The ingest pipeline reads and decodes, encodes and writes at once: while batch n is written,
n+1 is encoded and n+2 read. Threads are enough, because the heavy parts release the GIL (torch
and ONNX Runtime kernels, PIL's decoders, DuckDB), and they share the caller's store and models
without pickling anything. The standard library has queues and threads but no pipeline that stops
cleanly, and torch's DataLoader maps a dataset rather than a stream; so this is written here.

``pipelined(source, steps)`` yields ``steps[-1](...steps[0](batch))`` for each batch of
``source``, in order, in the caller's thread, which does the last stage (the writes) itself. At
most ``depth`` batches wait between two stages, so memory stays bounded whatever the input. A step
wrapped in ``Streamed`` maps the stream of batches to the stream of results instead (one result
per batch, in order), so it can work on a few batches at once (encoders on several workers).
An exception in any stage (the source's iteration included) stops every stage and is raised in
the caller, as the stage raised it; the caller's own exception, or its leaving the loop early,
stops them too. Either way every thread has ended when the generator closes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Streamed", "pipelined"]

_POLL_SECONDS = 0.1  # how soon a blocked stage notices that the run stopped


class _End:
    """The source is exhausted."""


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_STOPPED = object()


@dataclass(frozen=True)
class Streamed:
    """A step that takes the iterator of its batches and yields one result per batch, in order;
    it may read a few batches ahead of what it has yielded."""

    step: Callable[[Iterator[Any]], Iterator[Any]]


def pipelined(source: Iterable[Any], steps: Sequence[Callable[[Any], Any] | Streamed], *,
              depth: int = 2, name: str = "kinsight-stage") -> Generator[Any, None, None]:
    """Each batch of ``source`` through ``steps``, every step in its own thread; see the module
    docstring."""
    stop = threading.Event()
    links: list[queue.Queue[Any]] = [queue.Queue(maxsize=depth) for _ in range(len(steps) + 1)]

    def read() -> None:
        try:
            for batch in source:
                if not _put(links[0], batch, stop):
                    return
        except BaseException as e:  # handed to the caller, who raises it
            _put(links[0], _Failed(e), stop)
            return
        _put(links[0], _End(), stop)

    def work(step: Callable[[Any], Any] | Streamed, inbox: queue.Queue[Any],
             outbox: queue.Queue[Any]) -> None:
        ended: list[_End | _Failed] = []

        def batches() -> Iterator[Any]:
            while (batch := _get(inbox, stop)) is not _STOPPED:
                if isinstance(batch, _End | _Failed):
                    ended.append(batch)
                    return
                yield batch

        results = step.step(batches()) if isinstance(step, Streamed) else map(step, batches())
        try:
            for result in results:
                if not _put(outbox, result, stop):
                    return
        except BaseException as e:
            _put(outbox, _Failed(e), stop)
            return
        finally:
            if isinstance(results, Generator):
                results.close()  # a streamed step's own clean-up runs in its thread
        if ended:
            _put(outbox, ended[0], stop)

    threads = [threading.Thread(target=read, name=f"{name}-read", daemon=True)]
    threads += [threading.Thread(target=work, args=(step, links[n], links[n + 1]),
                                 name=f"{name}-{n + 1}", daemon=True)
                for n, step in enumerate(steps)]
    for thread in threads:
        thread.start()
    try:
        while True:
            # Every stage ends by passing on an _End or a _Failed unless the run was stopped,
            # and only this generator stops it: a plain blocking get cannot hang.
            batch = links[-1].get()
            if isinstance(batch, _End):
                return
            if isinstance(batch, _Failed):
                raise batch.error
            yield batch
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def _put(link: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            link.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def _get(link: queue.Queue[Any], stop: threading.Event) -> Any:
    while not stop.is_set():
        try:
            return link.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            continue
    return _STOPPED
