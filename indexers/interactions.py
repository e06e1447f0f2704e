"""Interactions (user, item, kind, weight, timestamp) read from JSONL, CSV/TSV or Parquet files.

Rows go through the same readers as items (so malformed lines are reported the same way, with
file, line and fix): the user column plays the part of the record key and the item column that of
the required field. Then each row's weight and timestamp are checked here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kinsight.engine import Interaction

from .readers import read_records
from .records import Problem, Record

__all__ = ["InteractionColumns", "read_interactions"]


@dataclass(frozen=True)
class InteractionColumns:
    """Which column holds what; ``kind``, ``weight`` and ``timestamp`` are optional per row
    (a row without them is a ``view`` of weight 1, now)."""

    user: str = "user"
    item: str = "item"
    kind: str = "kind"
    weight: str = "weight"
    timestamp: str = "timestamp"


def read_interactions(path: str | Path, columns: InteractionColumns | None = None
                      ) -> Iterator[Interaction | Problem]:
    """Interactions and the problems of rows that cannot be one, in file order."""
    columns = columns or InteractionColumns()
    for entry in read_records(path, id_field=columns.user, text_fields=(columns.item,)):
        yield entry if isinstance(entry, Problem) else _interaction(entry, columns)


def _interaction(record: Record, columns: InteractionColumns) -> Interaction | Problem:
    fields = record.fields

    def problem(message: str, fix: str) -> Problem:
        return Problem(record.source, record.line, message, fix)

    item = str(fields.get(columns.item)).strip()
    kind = fields.get(columns.kind)
    kind = "view" if kind is None or str(kind).strip() == "" else str(kind).strip()
    raw_weight = fields.get(columns.weight)
    try:
        weight = 1.0 if raw_weight in (None, "") else float(raw_weight)
    except (TypeError, ValueError):
        weight = math.nan
    if not math.isfinite(weight):
        return problem(f"{columns.weight} {raw_weight!r} is not a number",
                       f"give {columns.weight} as a finite number, or leave it out (1)")
    try:
        stamp = _timestamp(fields.get(columns.timestamp))
    except ValueError:
        return problem(f"{columns.timestamp} {fields.get(columns.timestamp)!r} is not a time",
                       "use ISO 8601 (2026-01-31T12:00:00Z) or seconds since 1970")
    return Interaction(record.id, item, kind, weight, stamp)


def _timestamp(value: Any) -> datetime | None:
    """A time from seconds since 1970 or ISO 8601 text (file dates arrive as ISO text)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    text = str(value).strip()
    try:
        return datetime.fromtimestamp(float(text), tz=timezone.utc)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
