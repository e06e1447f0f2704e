"""An in-memory copy of a collection's items, for the query path's reads of a few hits' fields
(or, for searches that return none, of whether the hits still exist).

Reading the fields of ten hits from DuckDB costs 3-6 ms whatever the SQL's form (an ``IN`` list on
the id index, a join, rowids), about as long as the FAISS search itself over 33k vectors; taking
the same rows from an Arrow copy costs 0.2 ms. DuckDB has no row cache to turn on, so this is one:
a copy of ``items`` made once the store has served several reads at one generation (a burst of
queries between writes), valid for that generation only, so a write makes it stale at once and no
deleted or changed item can come from it. Large collections are never copied (``MAX_ITEMS``,
``MAX_BYTES``); neither are fields of types whose Python values Arrow and DuckDB might render
differently.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

__all__ = ["ItemCache"]

log = logging.getLogger(__name__)

READS_BEFORE_COPY = 8  # field reads at one generation before a copy is worth its ~100 ms
MAX_ITEMS = 250_000
MAX_BYTES = 256 << 20
# Types whose values come out of Arrow's to_pylist exactly as out of DuckDB's fetchall.
COPYABLE_TYPES = frozenset({"VARCHAR", "BIGINT", "INTEGER", "DOUBLE", "FLOAT", "BOOLEAN", "BLOB",
                            "DATE", "TIMESTAMP", "VARCHAR[]", "DOUBLE[]", "BIGINT[]"})


@dataclass(frozen=True)
class _Copy:
    generation: int
    table: pa.Table  # every column of items but the internal ones; ``id`` first
    rows: dict[str, int]  # id -> row of ``table``


class ItemCache:
    """Serves ``fields_of`` and ``existing`` from a copy of the items when one exists for the
    current generation.

    ``load(max_items)`` reads ``(generation, table)`` in one DuckDB snapshot, so the copy is
    labelled with the generation it holds (``table`` is None when there are more than
    ``max_items`` items); it runs on a background thread, and the reads it overlaps go to DuckDB.
    """

    def __init__(self, load: Callable[[int], tuple[int, pa.Table | None]]) -> None:
        self._load = load
        self._copy: _Copy | None = None
        self._reads = (-1, 0)  # (generation, reads served from DuckDB at it)
        self._loading = False
        self._thread: threading.Thread | None = None
        self._refused_at = -1  # generation at which the items could not be copied (too large)
        self._lock = threading.Lock()

    @property
    def copied_generation(self) -> int | None:
        """The generation the copy holds (None without one)."""
        copy = self._copy
        return None if copy is None else copy.generation

    def fields_of(self, ids: Sequence[str], generation: int, field_types: dict[str, str]
                  ) -> dict[str, dict[str, Any]] | None:
        """The fields of ``ids`` from the copy, or None: the caller reads them from DuckDB."""
        copy = self._current(generation, field_types)
        if copy is None:
            return None
        rows = sorted(copy.rows[i] for i in set(ids) if i in copy.rows)  # in table order
        names = copy.table.column_names
        return {row[names[0]]: {n: row[n] for n in names[1:]}
                # Typed: an empty list of rows (no id found) is otherwise an array of nulls.
                for row in copy.table.take(pa.array(rows, pa.int64())).to_pylist()}

    def existing(self, ids: Sequence[str], generation: int, field_types: dict[str, str]
                 ) -> list[str] | None:
        """Those of ``ids`` that exist (each once), from the copy, or None: the caller asks
        DuckDB. Searches that return no fields still drop the hits a lagging index holds."""
        copy = self._current(generation, field_types)
        return None if copy is None else [i for i in dict.fromkeys(ids) if i in copy.rows]

    def _current(self, generation: int, field_types: dict[str, str]) -> _Copy | None:
        """The copy when it holds ``generation``; else None, counting the read towards one."""
        copy = self._copy
        if copy is not None and copy.generation == generation:
            return copy
        self._count_read(generation, field_types)
        return None

    def _count_read(self, generation: int, field_types: dict[str, str]) -> None:
        with self._lock:
            seen, reads = self._reads
            reads = reads + 1 if seen == generation else 1
            self._reads = (generation, reads)
            if (reads < READS_BEFORE_COPY or self._loading or self._refused_at == generation
                    or not set(field_types.values()) <= COPYABLE_TYPES):
                return
            self._loading = True
            self._thread = threading.Thread(target=self._make_copy, name="kinsight-item-cache",
                                            daemon=True)
            self._thread.start()

    def join(self) -> None:
        """Wait for a copy under way (before the database closes under it)."""
        thread = self._thread
        if thread is not None:
            thread.join()

    def _make_copy(self) -> None:
        try:
            generation, table = self._load(MAX_ITEMS)
            if table is None or table.nbytes > MAX_BYTES:
                self._refused_at = generation
                self._copy = None
                return
            ids = table.column(0).to_pylist()
            self._copy = _Copy(generation, table, {item: n for n, item in enumerate(ids)})
        except Exception as e:  # a cache: the DuckDB path keeps answering whatever went wrong
            self._refused_at = self._reads[0]  # not again at this generation
            log.warning("could not copy items into memory (%s); reading them from DuckDB", e)
        finally:
            self._loading = False
