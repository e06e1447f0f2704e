"""The tuned search settings of a collection's spaces (``kinsight tune``): ``COLLECTION.tunings``.

One row per space: the encoder fingerprint the settings were fitted for, the fusion (JSON), the
query adapter (a ``(dim, dim)`` float32 matrix as bytes, or NULL), the tune's report (JSON) and
when it was saved. A new tune of a space replaces its row; dropping the collection drops the
table with its schema. Writing leaves the collection's generation, and so its indexes, alone.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from .tables import CollectionTables

__all__ = ["StoredTuning", "TuningTable"]


@dataclass(frozen=True)
class StoredTuning:
    """A space's tuned settings as stored: ``fusion`` holds the fields of ``search.Fusion``;
    ``adapter`` maps a unit query vector ``q (dim,)`` to ``q @ adapter`` (None: no adapter)."""

    space: str
    fingerprint: str
    fusion: dict[str, Any]
    adapter: np.ndarray | None
    report: dict[str, Any]
    created_at: datetime | None = None


class TuningTable:
    """The tuned settings of one collection's spaces, cached once read: tuned searches read them
    on every query, and only this object (one per collection and process) writes them."""

    def __init__(self, tables: CollectionTables) -> None:
        self.db = tables.db
        self.name = tables.name
        self.table = f"{tables.schema}.tunings"
        self._cache: dict[str, StoredTuning | None] = {}
        self._lock = threading.Lock()

    def _exists(self) -> bool:
        return bool(self.db.scalar(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = "
            "'tunings'", [self.name]))

    def read(self, space: str) -> StoredTuning | None:
        """The space's tuned settings, or None where it was never tuned."""
        if space in self._cache:
            return self._cache[space]
        row = None if not self._exists() else self.db.cursor().execute(
            f"SELECT fingerprint, fusion, adapter, dim, report, created_at FROM {self.table} "
            "WHERE space = ?", [space]).fetchone()
        found = None
        if row is not None:
            fingerprint, fusion, adapter, dim, report, created_at = row
            matrix = None if adapter is None else \
                np.frombuffer(adapter, dtype=np.float32).reshape(dim, dim).copy()
            found = StoredTuning(space, fingerprint, json.loads(fusion), matrix,
                                 json.loads(report), created_at)
        with self._lock:
            self._cache[space] = found
        return found

    def save(self, tuning: StoredTuning) -> None:
        """Replace the space's tuned settings in one transaction."""
        adapter = tuning.adapter
        blob = None if adapter is None else np.ascontiguousarray(adapter, np.float32).tobytes()
        with self.db.writing() as con:
            con.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (space VARCHAR NOT NULL, "
                        "fingerprint VARCHAR NOT NULL, fusion VARCHAR NOT NULL, adapter BLOB, "
                        "dim INTEGER, report VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL)")
            con.execute(f"DELETE FROM {self.table} WHERE space = ?", [tuning.space])
            con.execute(f"INSERT INTO {self.table} VALUES (?, ?, ?, ?, ?, ?, now())",
                        [tuning.space, tuning.fingerprint, json.dumps(tuning.fusion), blob,
                         None if adapter is None else adapter.shape[0],
                         json.dumps(tuning.report)])
        with self._lock:
            self._cache.pop(tuning.space, None)
