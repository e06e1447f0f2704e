"""One record to ingest, or the problem that keeps it out, made from one raw mapping.

``record_from_mapping`` is the one place that decides whether a row of a file or an item posted
over HTTP can be ingested: an id that is a string or whole number, field names the store accepts,
text fields holding text (at least one of them non-empty). ``ingest_records`` trusts its records,
so every producer of records from outside data goes through here.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from kinsight.engine.errors import InvalidInputError
from kinsight.engine.schema import validate_field_name

__all__ = ["Problem", "Record", "describe_value", "quoted_names", "record_from_mapping"]

_MAX_KEYS_SHOWN = 20
_KINDS = {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number"}


@dataclass(frozen=True)
class Record:
    """One record to ingest: ``fields`` holds every key but the id, as plain Python values.

    Values are str, int, float, bool, None or lists of those; nested objects are JSON strings.
    ``line`` is the 1-based line (JSON Lines, CSV), row (Parquet), or 1 (a file of a folder).
    """

    id: str
    fields: dict[str, Any]
    source: str
    line: int


@dataclass(frozen=True)
class Problem:
    """A record that was skipped: where it is, what is wrong, and how to fix it."""

    source: str
    line: int | None
    message: str
    fix: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.message} — {self.fix}"


class _BadValue(Exception):
    """A value of a type that cannot be used where it is (raised and caught inside this module)."""


def record_from_mapping(
    raw: Mapping[str, Any],
    source: str,
    line: int,
    *,
    id_field: str,
    text_fields: Sequence[str],
) -> Record | Problem:
    """The record for ``raw`` (its ``id_field`` as the id, every other key a field), or the
    problem that keeps it out; ``source`` and ``line`` say where it came from."""
    try:
        record_id = _clean_id(raw.get(id_field))
    except _BadValue as e:
        return Problem(source, line, f"id field {id_field!r} {e}", "use a string or whole number")
    if record_id is None:
        fix = f"give the record an {id_field!r} or pass --id-field NAME; it has keys: {_keys(raw)}"
        return Problem(source, line, f"missing or empty id field {id_field!r}", fix)
    names = [name for name in raw if name != id_field]
    bad_name = _name_problem(names, source, line)
    if bad_name is not None:
        return bad_name
    fields = {name: _plain(raw[name]) for name in names}
    has_text = False
    for name in text_fields:
        try:
            text = _clean_text(raw.get(name))
        except _BadValue as e:
            fix = f"store a string in {name!r} or pass --text-field NAME for a field with text"
            return Problem(source, line, f"text field {name!r} {e}, not text", fix)
        if name in fields:
            fields[name] = text
        has_text = has_text or bool(text and text.strip())
    if text_fields and not has_text:
        fix = f"fill it or pass --text-field NAME; the record has keys: {_keys(raw)}"
        return Problem(source, line, f"no text in {quoted_names(text_fields)} (missing or empty)", fix)
    return Record(id=record_id, fields=fields, source=source, line=line)


def _name_problem(names: Iterable[str], source: str, line: int) -> Problem | None:
    """A problem for the first field name the store would refuse, None when all are fine.

    Checked per record so one bad record is skipped instead of failing the write of its batch.
    """
    seen: dict[str, str] = {}
    for name in names:
        try:
            validate_field_name(name)
        except InvalidInputError as e:
            return Problem(source, line, str(e), "rename the field")
        # DuckDB column names ignore case: "Text" and "text" would be one column.
        if seen.setdefault(name.lower(), name) != name:
            message = f"fields {seen[name.lower()]!r} and {name!r} differ only in case"
            return Problem(source, line, message, "rename one of them")
    return None


def _clean_id(value: Any) -> str | None:
    """The id as a stripped string, None when missing or empty."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    # Parquet files written from pandas hold integer ids as floats when a column has nulls.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _BadValue(f"holds {describe_value(value)}")


def _clean_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return None  # a null that went through pandas
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _BadValue(f"holds {describe_value(value)}")


def _plain(value: Any) -> Any:
    """A value as str, int, float, bool, None or a list of those; objects become JSON strings."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, list | tuple):
        items = [_plain(item) for item in value]
        if any(isinstance(item, list) for item in items):
            return json.dumps(value, sort_keys=True, default=str)
        return items
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")  # binary columns: images, hashes
    return str(value)


def describe_value(value: Any) -> str:
    """The kind of ``value`` and a short repr of it, for messages: "a list ([1, 2])"."""
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"{_KINDS.get(type(value), 'a ' + type(value).__name__)} ({shown})"


def quoted_names(fields: Iterable[str]) -> str:
    """For messages: "field 'text'" or "fields 'title', 'body'"."""
    names = [repr(name) for name in fields]
    return ("field " if len(names) == 1 else "fields ") + ", ".join(names)


def _keys(raw: Mapping[str, Any]) -> str:
    names = [str(name) for name in raw]
    more = len(names) - _MAX_KEYS_SHOWN
    shown = ", ".join(names[:_MAX_KEYS_SHOWN]) or "none"
    return shown + (f" and {more} more" if more > 0 else "")
