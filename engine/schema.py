"""Names and field types: what may be called what, and how Python values become DuckDB columns."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from .errors import InvalidInputError

__all__ = [
    "FIELD_TYPES",
    "arrow_column",
    "infer_field_type",
    "quote",
    "validate_collection_name",
    "validate_field_name",
    "validate_space_name",
]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# What people name collections (Qdrant and LanceDB take "my-docs" too). A collection is a DuckDB
# schema, always quoted in SQL; the first character keeps names from looking like options or
# relative paths ("-x", ".", "..").
_COLLECTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
# Schemas DuckDB or kinsight use themselves; a collection is a schema, so it may not take these.
_RESERVED_COLLECTIONS = {"main", "kinsight", "information_schema", "pg_catalog", "temp", "system"}
# Columns of the items table that kinsight manages; user fields may not take these names.
RESERVED_FIELDS = {"id", "_hash", "_updated_at"}

# DuckDB column type → (arrow type, Python coercion). Coercion errors name the item and field.
FIELD_TYPES: dict[str, tuple[pa.DataType, Callable[[Any], Any]]] = {
    "VARCHAR": (pa.string(), str),
    "BIGINT": (pa.int64(), lambda v: _bigint(v)),
    "DOUBLE": (pa.float64(), float),
    "BOOLEAN": (pa.bool_(), bool),
    "VARCHAR[]": (pa.list_(pa.string()), lambda v: [str(x) for x in v]),
    "DOUBLE[]": (pa.list_(pa.float64()), lambda v: [float(x) for x in v]),
    "TIMESTAMP": (pa.timestamp("us"), lambda v: v),
    # Binary values such as image thumbnails; a str is taken as its UTF-8 bytes.
    "BLOB": (pa.binary(), lambda v: v.encode("utf-8") if isinstance(v, str) else bytes(v)),
}


_INT64 = (-(2**63), 2**63 - 1)


def _bigint(value: Any) -> int:
    number = int(value)
    if not _INT64[0] <= number <= _INT64[1]:
        raise ValueError("beyond the 64-bit integers a BIGINT field holds")
    return number


def validate_collection_name(name: str) -> str:
    if not isinstance(name, str) or not _COLLECTION.match(name) \
            or name.lower() in _RESERVED_COLLECTIONS:
        raise InvalidInputError(
            f"invalid collection name {name!r}: use 1-63 letters, digits, '-', '_' and '.', "
            f"starting with a letter or digit (e.g. 'my-docs'), and none of "
            f"{sorted(_RESERVED_COLLECTIONS)}"
        )
    return name


def validate_space_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(
            f"invalid vector space name {name!r}: use 1-63 lowercase letters, digits and '_', "
            "starting with a letter (e.g. 'text', 'image')"
        )
    return name


def validate_field_name(name: str) -> str:
    if not isinstance(name, str) or not _FIELD.match(name) or name.lower() in RESERVED_FIELDS:
        raise InvalidInputError(
            f"invalid field name {name!r}: use letters, digits and '_', starting with a letter, "
            f"and none of {sorted(RESERVED_FIELDS)} (rename it in your data)"
        )
    return name


def quote(identifier: str) -> str:
    """Quote a validated identifier for SQL (names are validated first; quoting keeps case)."""
    return '"' + identifier.replace('"', '""') + '"'


def infer_field_type(values: Sequence[Any]) -> str:
    """The DuckDB type for a new field, from the first non-null value seen."""
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool):
            return "BOOLEAN"
        if isinstance(value, bytes | bytearray | memoryview):
            return "BLOB"
        if isinstance(value, int):
            return "BIGINT"
        if isinstance(value, float):
            return "DOUBLE"
        if isinstance(value, list | tuple):
            numeric = all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in value
            )
            return "DOUBLE[]" if value and numeric else "VARCHAR[]"
        return "VARCHAR"
    return "VARCHAR"


def arrow_column(
    field: str, field_type: str, values: Sequence[Any], ids: Sequence[str]
) -> pa.Array:
    """Coerce one field's values to its column type; a value that cannot be says which item."""
    arrow_type, coerce = FIELD_TYPES.get(field_type, (pa.string(), str))
    out: list[Any] = []
    for item_id, value in zip(ids, values, strict=True):
        if value is None:
            out.append(None)
            continue
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        try:
            out.append(coerce(value))
        except (TypeError, ValueError, OverflowError) as e:  # int(1e400) overflows
            raise InvalidInputError(
                f"item {item_id!r}: field {field!r} is {field_type} in this collection but got "
                f"{value!r} ({e}); fix the value or store it under another field name"
            ) from e
    return pa.array(out, type=arrow_type)
