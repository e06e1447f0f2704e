"""Changing the fields of stored items in place: new columns, and per-field ``UPDATE`` statements.

An item's fields are columns of ``items``; its vectors live in other tables. Changing fields that
no vector was made from (a price, a tag) must leave the vectors, their seqs and so the FAISS
indexes alone, which ``CollectionTables.replace`` (delete and insert, vectors included) cannot.
These helpers run inside ``CollectionTables``' write transactions, like the rest of its SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from ..errors import InvalidInputError
from ..schema import arrow_column, infer_field_type, quote, validate_field_name

__all__ = ["FieldUpdate", "add_columns", "apply_field_updates"]


@dataclass(frozen=True)
class FieldUpdate:
    """Fields of one stored item to change: ``values`` set (a new name adds a column), ``remove``
    emptied (a field is a column: removing it from an item sets it to NULL there);
    ``content_hash`` replaces the stored hash (None: kept)."""

    id: str
    values: Mapping[str, Any] = field(default_factory=dict)
    remove: Sequence[str] = ()
    content_hash: str | None = None


def add_columns(con: duckdb.DuckDBPyConnection, schema: str, collection: str,
                known: dict[str, str], values: Mapping[str, Sequence[Any]]) -> None:
    """Add a column for each name in ``values`` that ``known`` lacks, typed from its values;
    ``known`` (name → DuckDB type) gains them."""
    by_case = {k.lower(): k for k in known}
    for name, column in values.items():
        if name in known:
            continue
        validate_field_name(name)
        # DuckDB column names ignore case: "Text" would be the column "text".
        if by_case.setdefault(name.lower(), name) != name:
            raise InvalidInputError(
                f"field {name!r} differs from field {by_case[name.lower()]!r} only in case; "
                f"collection {collection!r} cannot hold both: rename one")
        known[name] = infer_field_type(column)
        con.execute(f"ALTER TABLE {schema}.items ADD COLUMN {quote(name)} {known[name]}")


def apply_field_updates(con: duckdb.DuckDBPyConnection, schema: str, collection: str,
                        known: dict[str, str], updates: Sequence[FieldUpdate]) -> None:
    """Apply ``updates`` to ``schema.items`` (every id present) inside ``con``'s transaction: one
    ``UPDATE`` per field set, per field emptied and for the hashes, each joined on id."""
    setting: dict[str, list[tuple[str, Any]]] = {}
    emptying: dict[str, list[str]] = {}
    for update in updates:
        for name, value in update.values.items():
            setting.setdefault(name, []).append((update.id, value))
        for name in update.remove:
            emptying.setdefault(name, []).append(update.id)
    add_columns(con, schema, collection, known,
                {name: [v for _, v in pairs] for name, pairs in setting.items()})
    for name, pairs in setting.items():
        ids = [i for i, _ in pairs]
        _update(con, schema, f"{quote(name)} = u.v", ids,
                arrow_column(name, known[name], [v for _, v in pairs], ids))
    for name, ids in emptying.items():
        if name in known:  # a field no item has is empty everywhere already
            _update(con, schema, f"{quote(name)} = NULL", ids)
    hashed = [u for u in updates if u.content_hash is not None]
    if hashed:
        _update(con, schema, "_hash = u.v", [u.id for u in hashed],
                pa.array([u.content_hash for u in hashed], pa.string()))
    _update(con, schema, "_updated_at = now()", [u.id for u in updates])


def _update(con: duckdb.DuckDBPyConnection, schema: str, assignment: str, ids: list[str],
            values: pa.Array | None = None) -> None:
    columns = {"id": pa.array(ids, pa.string())}
    if values is not None:
        columns["v"] = values
    con.register("_updates", pa.table(columns))
    con.execute(f"UPDATE {schema}.items AS i SET {assignment} FROM _updates u WHERE i.id = u.id")
    con.unregister("_updates")
