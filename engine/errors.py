"""Every error kinsight raises on purpose, in one tree.

    KinsightError
    ├── InvalidInputError          bad argument, name, filter or query: the caller must change it
    │   ├── FilterError            a structured filter or raw WHERE clause that cannot be used
    │   └── DimensionMismatchError a vector whose length is not the space's dimension
    ├── NotFoundError              a collection, space or item that does not exist
    ├── AlreadyExistsError         creating something that exists already
    ├── EncoderError               an encoder cannot be loaded or used
    │   └── EncoderMismatchError   a space was built by one model and used with another
    ├── StoreLockedError           another process holds the store open for writing
    └── ReadOnlyStoreError         a write on a store opened read-only

Messages say what went wrong, with the names involved, and how to fix it. The HTTP API maps
``InvalidInputError`` to 400/422, ``NotFoundError`` to 404, ``AlreadyExistsError`` and the lock errors
to 409, and everything else to 500 without the message.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "DimensionMismatchError",
    "EncoderError",
    "EncoderMismatchError",
    "FilterError",
    "InvalidInputError",
    "KinsightError",
    "NotFoundError",
    "ReadOnlyStoreError",
    "StoreLockedError",
]


class KinsightError(Exception):
    """Root of every error kinsight raises on purpose."""


class InvalidInputError(KinsightError, ValueError):
    """An argument, name, filter or query the caller must change."""


class FilterError(InvalidInputError):
    """A structured filter or raw SQL WHERE clause that cannot be compiled or is not allowed."""


class DimensionMismatchError(InvalidInputError):
    """A vector whose length differs from the dimension of the space it is used with."""


class NotFoundError(KinsightError, LookupError):
    """A collection, vector space or item that does not exist."""


class AlreadyExistsError(KinsightError):
    """Creating a collection or space that exists already."""


class EncoderError(KinsightError):
    """An encoder that cannot be found, loaded or run."""


class EncoderMismatchError(EncoderError):
    """A space built with one encoder used with another (different spec or weights)."""


class StoreLockedError(KinsightError):
    """Another process has the store open for writing (one writer at a time)."""


class ReadOnlyStoreError(KinsightError):
    """A write attempted on a store opened with ``read_only=True``."""
