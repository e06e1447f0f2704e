"""Every error kinsight raises on purpose, in one tree.

    KinsightError
    ├── InvalidInputError          bad argument, name, filter or query: the caller must change it
    │   ├── FilterError            a structured filter or raw WHERE clause that cannot be used
    │   ├── DimensionMismatchError a vector whose length is not the space's dimension
    │   └── ImageFileError         a file that cannot be read as a picture (``reason``, ``fix``)
    ├── NotFoundError              a collection, space or item that does not exist
    ├── AlreadyExistsError         creating something that exists already
    ├── EncoderError               an encoder cannot be loaded or used
    │   ├── EncoderMismatchError   a space was built by one model and used with another
    │   └── WorkerLostError        an encoding process ended before it answered: send it again
    ├── StoreLockedError           another process holds the store open for writing
    └── ReadOnlyStoreError         a write on a store opened read-only

Messages say what went wrong, with the names involved, and how to fix it. The HTTP API maps
``InvalidInputError`` to 400/422, ``NotFoundError`` to 404, ``AlreadyExistsError`` and the lock errors
to 409, ``WorkerLostError`` to 503, and everything else to 500 without the message.

DuckDB's and FAISS's own errors become these in ``translated`` and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

__all__ = [
    "AlreadyExistsError",
    "DimensionMismatchError",
    "EncoderError",
    "EncoderMismatchError",
    "FilterError",
    "ImageFileError",
    "InvalidInputError",
    "KinsightError",
    "NotFoundError",
    "ReadOnlyStoreError",
    "StoreLockedError",
    "WorkerLostError",
    "translated",
]


class KinsightError(Exception):
    """Root of every error kinsight raises on purpose."""


class InvalidInputError(KinsightError, ValueError):
    """An argument, name, filter or query the caller must change."""


class FilterError(InvalidInputError):
    """A structured filter or raw SQL WHERE clause that cannot be compiled or is not allowed."""


class DimensionMismatchError(InvalidInputError):
    """A vector whose length differs from the dimension of the space it is used with."""


class ImageFileError(InvalidInputError):
    """Why a file could not be opened as a picture (``reason``) and what to do about it (``fix``)."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(f"{reason} — {fix}")
        self.reason = reason
        self.fix = fix


class NotFoundError(KinsightError, LookupError):
    """A collection, vector space or item that does not exist."""


class AlreadyExistsError(KinsightError):
    """Creating a collection or space that exists already."""


class EncoderError(KinsightError):
    """An encoder that cannot be found, loaded or run."""


class EncoderMismatchError(EncoderError):
    """A space built with one encoder used with another (different spec or weights)."""


class WorkerLostError(EncoderError):
    """An encoding worker (process) ended before it answered, killed or out of memory; nothing
    of its work was written, and the same request can be sent again."""


class StoreLockedError(KinsightError):
    """Another process has the store open for writing (one writer at a time)."""


class ReadOnlyStoreError(KinsightError):
    """A write attempted on a store opened with ``read_only=True``."""


@contextmanager
def translated(what: str, *, caller: type[KinsightError] = KinsightError) -> Iterator[None]:
    """Raise DuckDB's and FAISS's errors inside the block as kinsight errors: ``StoreLockedError``
    for a store another process holds, else ``caller`` (``FilterError`` where the input is the
    caller's to fix), with the message ``what: <the library's message>``."""
    try:
        yield
    except duckdb.IOException as e:
        if "lock" in str(e).lower():
            holder = re.search(r"PID (\d+)", str(e))
            raise StoreLockedError(
                f"{what}: it is open for writing by another process"
                f"{f' (PID {holder.group(1)})' if holder else ''}; one writer at a time: stop "
                "that process, or send your requests to it (e.g. the kinsight server that has "
                "it open)") from e
        raise caller(f"{what}: {e}") from e
    except duckdb.Error as e:
        raise caller(f"{what}: {e}") from e
    except RuntimeError as e:
        if "faiss" not in str(e).lower():  # FAISS's C++ exceptions name their source file
            raise
        raise caller(f"{what}: {e}") from e
