"""The tables beside a collection's items: user interactions, analysis results and saved heads.

``COLLECTION.interactions`` (user_id, item_id, kind, weight, ts) is appended in batches; writing it
leaves the collection's generation, and so its indexes, alone. Result tables of analysis runs are
``COLLECTION.OPERATION_TABLE`` (say ``docs.anomaly_scores``), whose first column is ``run_id`` and
last ``_row`` (the order the operation wrote); a run's row in the catalog lists them.
``COLLECTION.heads`` (name, header JSON, arrays as ``.npz`` bytes, created_at) holds trained heads
by name; saving one replaces the head of that name. Neither table changes the generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from ..schema import quote
from .tables import CollectionTables

__all__ = ["HeadTable", "InteractionTable", "RunTables"]


class InteractionTable:
    """The interactions of users with the items of one collection."""

    def __init__(self, tables: CollectionTables) -> None:
        self.db = tables.db
        self.name = tables.name
        self.table = f"{tables.schema}.interactions"

    def exists(self) -> bool:
        return bool(self.db.scalar(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = "
            "'interactions'", [self.name]))

    def append(self, rows: pa.Table) -> None:
        """Append ``user_id, item_id, kind, weight, ts`` rows in one transaction."""
        with self.db.writing() as con:
            con.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (user_id VARCHAR NOT NULL, "
                        "item_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, weight DOUBLE NOT "
                        "NULL, ts TIMESTAMP NOT NULL)")
            con.register("_new_interactions", rows)
            con.execute(f"INSERT INTO {self.table} SELECT * FROM _new_interactions")
            con.unregister("_new_interactions")

    def count(self) -> int:
        return int(self.db.scalar(f"SELECT count(*) FROM {self.table}")) if self.exists() else 0

    def count_users(self) -> int:
        if not self.exists():
            return 0
        return int(self.db.scalar(f"SELECT count(DISTINCT user_id) FROM {self.table}"))

    def weighted_totals(self, kind_weights: dict[str, float], now: datetime,
                        half_life_seconds: float | None, users: Sequence[str] | None
                        ) -> list[tuple[str, str, float]]:
        """``(user, item, total)`` ordered by user and item: each interaction counts its kind's
        weight (1 for kinds not listed) x its own weight x ``0.5 ** (age / half-life)``."""
        if not self.exists():
            return []
        decay = ("1.0" if half_life_seconds is None else
                 "pow(0.5, greatest(epoch(?::TIMESTAMP) - epoch(ts), 0) / ?)")
        params: list[Any] = [] if half_life_seconds is None else [now, half_life_seconds]
        cur = self.db.cursor()
        cur.register("_kind_weights", pa.table({"kind": list(kind_weights),
                                                "kind_weight": list(kind_weights.values())}))
        sql = (f"SELECT user_id, item_id, sum(coalesce(k.kind_weight, 1.0) * i.weight * {decay})"
               f" FROM {self.table} i LEFT JOIN _kind_weights k USING (kind)")
        if users is not None:
            cur.register("_users", pa.table({"user_id": pa.array(list(users), pa.string())}))
            sql += " WHERE user_id IN (SELECT user_id FROM _users)"
        return cur.execute(sql + " GROUP BY user_id, item_id ORDER BY user_id, item_id",
                           params).fetchall()


class RunTables:
    """The result tables of analysis runs on one collection, and their rows in the catalog."""

    def __init__(self, tables: CollectionTables) -> None:
        self.db = tables.db
        self.name = tables.name
        self.schema = tables.schema

    def qualified(self, table: str) -> str:
        """The SQL name of the result table ``table`` (``OPERATION_NAME``)."""
        return f"{self.schema}.{quote(table)}"

    def save(self, catalog_row: list[Any], tables: dict[str, pa.Table]) -> None:
        """Append every result table and the run's catalog row in one transaction."""
        run_id = catalog_row[0]
        with self.db.writing() as con:
            for name, table in tables.items():
                self._append(con, name, run_id, table)
            self.db.add_run(con, catalog_row)

    def read(self, table: str, run_id: str) -> pa.Table:
        """The rows one run wrote to ``table``, without ``run_id``, in the order written."""
        return self.db.cursor().sql(
            f"SELECT * EXCLUDE (run_id) FROM {self.qualified(table)} WHERE run_id = ? "
            "ORDER BY _row", params=[run_id]).to_arrow_table().drop_columns(["_row"])

    def _append(self, con: duckdb.DuckDBPyConnection, table_name: str, run_id: str,
                table: pa.Table) -> None:
        target = self.qualified(table_name)
        con.register("_run_rows", table.append_column("_row", pa.array(range(table.num_rows),
                                                                       pa.int64())))
        try:
            existing = {r[0] for r in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND "
                "table_name = ?", [self.name, table_name]).fetchall()}
            if not existing:
                con.execute(f"CREATE TABLE {target} AS SELECT ?::VARCHAR AS run_id, * "
                            "FROM _run_rows LIMIT 0", [run_id])
            else:  # columns a later run adds are added to the table
                for name, kind in con.execute("SELECT column_name, column_type FROM "
                                              "(DESCRIBE SELECT * FROM _run_rows)").fetchall():
                    if name not in existing:
                        con.execute(f"ALTER TABLE {target} ADD COLUMN {quote(name)} {kind}")
            con.execute(f"INSERT INTO {target} BY NAME SELECT ?::VARCHAR AS run_id, * "
                        "FROM _run_rows", [run_id])
        finally:
            con.unregister("_run_rows")


class HeadTable:
    """The trained heads of one collection, by name (see ``engine.saved_heads``)."""

    def __init__(self, tables: CollectionTables) -> None:
        self.db = tables.db
        self.name = tables.name
        self.table = f"{tables.schema}.heads"

    def exists(self) -> bool:
        return bool(self.db.scalar(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = "
            "'heads'", [self.name]))

    def save(self, name: str, header: str, arrays: bytes, created_at: datetime) -> None:
        """Write (or replace) the head ``name`` in one transaction."""
        with self.db.writing() as con:
            con.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (name VARCHAR PRIMARY KEY, "
                        "header VARCHAR NOT NULL, arrays BLOB NOT NULL, created_at TIMESTAMP "
                        "NOT NULL)")
            con.execute(f"DELETE FROM {self.table} WHERE name = ?", [name])
            con.execute(f"INSERT INTO {self.table} VALUES (?, ?, ?, ?)",
                        [name, header, arrays, created_at])

    def headers(self) -> list[tuple[str, str, datetime]]:
        """``(name, header, created_at)`` of every head, by name."""
        if not self.exists():
            return []
        return self.db.cursor().execute(
            f"SELECT name, header, created_at FROM {self.table} ORDER BY name").fetchall()

    def arrays(self, name: str) -> bytes | None:
        """The arrays of the head ``name`` (None when there is none)."""
        if not self.exists():
            return None
        rows = self.db.cursor().execute(f"SELECT arrays FROM {self.table} WHERE name = ?",
                                        [name]).fetchall()
        return bytes(rows[0][0]) if rows else None
