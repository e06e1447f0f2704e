"""Service hygiene: request ids in logs, Prometheus metrics, readiness once encoders are warm.

- Every request gets an id: the client's ``X-Request-ID`` when it is a sane one, else a new one;
  it is echoed in the response and put on every log record made while the request runs
  (``RequestIdFilter``, installed by ``kinsight serve``'s log config).
- ``/metrics`` (prometheus-client, one registry per app): requests and latency histograms by route
  template, inputs per encoder batch by route (concurrent searches batched together are one
  batch), and the items and vectors of every space.
- ``/ready`` answers 503 until the encoders of the served spaces are loaded and have encoded once,
  and their indexes are caught up (``warm_up``, run by the lifespan in a thread), so the first
  query is as fast as the hundredth; ``/health`` only says the process answers.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kinsight.engine import Collection, KinsightError, Store, VectorSpace

__all__ = [
    "REQUEST_ID_HEADER",
    "EncodedDep",
    "Readiness",
    "RequestIdFilter",
    "ServiceMetrics",
    "ServiceMiddleware",
    "current_request_id",
    "log_config",
    "warm_up",
]

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is kept when it could not forge log lines or blow up log size.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_request_id: ContextVar[str] = ContextVar("kinsight_request_id", default="-")


def current_request_id() -> str:
    """The id of the request being served ("-" outside one)."""
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record, so a format can show it (``%(request_id)s``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's log config with the request id on every line, kinsight's loggers included."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {**LOGGING_CONFIG, "filters": {
        "request_id": {"()": f"{__name__}.RequestIdFilter"}}}
    config["formatters"] = {
        "default": {**LOGGING_CONFIG["formatters"]["default"],
                    "fmt": "%(levelprefix)s [%(request_id)s] %(name)s: %(message)s"},
        "access": {**LOGGING_CONFIG["formatters"]["access"],
                   "fmt": '%(levelprefix)s [%(request_id)s] %(client_addr)s - '
                          '"%(request_line)s" %(status_code)s'}}
    config["handlers"] = {name: {**handler, "filters": ["request_id"]}
                          for name, handler in LOGGING_CONFIG["handlers"].items()}
    config["loggers"] = {**LOGGING_CONFIG["loggers"],
                         "kinsight": {"handlers": ["default"], "level": "INFO", "propagate": False}}
    return config


class ServiceMetrics:
    """The app's Prometheus metrics, in a registry of its own (two apps never share one)."""

    def __init__(self, store: Callable[[], Store | None]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("kinsight_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("kinsight_request_seconds", "Time to answer a request",
                                 ["method", "route"], registry=self.registry)
        self.encoded = Histogram(
            "kinsight_encode_batch_size", "Inputs sent to the encoder in one batch",
            ["route"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry)
        self.registry.register(_IndexSizes(store))


class _IndexSizes(Collector):
    """Items of each collection and vectors of each space, read when Prometheus scrapes."""

    def __init__(self, store: Callable[[], Store | None]) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        items = GaugeMetricFamily("kinsight_items", "Items of a collection", labels=["collection"])
        vectors = GaugeMetricFamily("kinsight_index_vectors", "Vectors of a space",
                                    labels=["collection", "space"])
        store = self.store()
        for name in store.list_collections() if store is not None else ():
            try:
                collection = self._open(name)
                items.add_metric([name], collection.count())
                for space in collection.spaces():
                    vectors.add_metric([name, space], collection.count_vectors(space))
            except KinsightError:  # dropped while being read: it has no size any more
                continue
        yield items
        yield vectors

    def _open(self, name: str) -> Collection:
        store = self.store()
        if store is None:
            raise KinsightError("the store closed while its metrics were read")
        return store.collection(name)


async def _observe_encoded(request: Request) -> Callable[[int], None]:
    # async: nothing here blocks, and a sync dependency costs a hop to a worker thread.
    metrics: ServiceMetrics = request.app.state.metrics
    route = getattr(request.scope.get("route"), "path", request.url.path)
    return lambda count: metrics.encoded.labels(route).observe(count) if count else None


# Routes that encode call it with the number of inputs they send to the encoder at once.
EncodedDep = Annotated[Callable[[int], None], Depends(_observe_encoded)]


class ServiceMiddleware:
    """Gives each request its id (echoed in ``X-Request-ID``) and counts and times it."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode(), b"").decode(
            "latin-1")
        request_id = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
        token = _request_id.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (REQUEST_ID_HEADER.lower().encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # The route template, not the path: one series per route, whatever the names in it.
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(
                time.perf_counter() - started)
            _request_id.reset(token)


class Readiness:
    """Whether the served spaces are warm, and what warming them found."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.stopping = threading.Event()  # the app is stopping: warm no more spaces
        self.warmed: list[str] = []
        self.failed: list[str] = []

    def response(self) -> JSONResponse:
        body = {"status": "ready" if self.done.is_set() else "warming",
                "warmed": self.warmed, "failed": self.failed}
        return JSONResponse(body, status_code=200 if self.done.is_set() else 503)


def warm_up(store: Store, readiness: Readiness) -> None:
    """Load each space's encoders (its own, and its partner of the other modality, which text
    queries of a picture space use), encode once with each, and catch its indexes up. A space
    that cannot be warmed is listed in ``failed`` (its searches will say why); the rest go on."""
    from PIL import Image

    from kinsight.engine import InvalidInputError

    samples: list[list[Any]] = [["warm up"], [Image.new("RGB", (64, 64))]]
    try:
        for collection, space in _served_spaces(store):
            if readiness.stopping.is_set():
                break
            label = f"{collection.name}/{space.name}"
            try:
                for sample in samples:
                    try:
                        collection.embed(sample, space.name, role="query")
                    except InvalidInputError:  # no encoder of that modality: nothing to warm
                        continue
                with collection.index(space.name).searching():
                    pass
                if space.encoder.modality == "text" and space.source_fields:
                    collection.lexical(space.name).current()
                readiness.warmed.append(label)
            except Exception as e:  # one space's failure must not keep the others cold
                log.warning("could not warm %s: %s", label, e,
                            exc_info=not isinstance(e, KinsightError))
                readiness.failed.append(label)  # the reason goes to the log only
    finally:
        readiness.done.set()
        log.info("ready: %d spaces warm, %d failed", len(readiness.warmed), len(readiness.failed))


def _served_spaces(store: Store) -> list[tuple[Collection, VectorSpace]]:
    """Every space of every collection of ``store``; a store that cannot list them (closed,
    broken) is logged and warms nothing, so that readiness is still set."""
    try:
        spaces = [(collection, space) for collection in map(store.collection,
                                                             store.list_collections())
                  for space in collection.spaces().values()]
    except Exception as e:
        log.warning("could not list the spaces to warm: %s", e,
                    exc_info=not isinstance(e, KinsightError))
        return []
    return spaces
