"""The storage floor: the DuckDB database of a store, and each collection's tables.

Everything above it (indexes, operations, the ``Collection`` facade) reads and writes through
these classes; no SQL on a collection's tables is written anywhere else.
"""

from __future__ import annotations

from .database import DATABASE_FILE, Database
from .field_updates import FieldUpdate
from .side_tables import HeadTable, InteractionTable, RunTables
from .tables import VECTOR_BLOCK, CollectionTables, NewItem, VectorRows
from .tunings import StoredTuning, TuningTable

__all__ = [
    "DATABASE_FILE",
    "VECTOR_BLOCK",
    "CollectionTables",
    "Database",
    "FieldUpdate",
    "HeadTable",
    "InteractionTable",
    "NewItem",
    "RunTables",
    "StoredTuning",
    "TuningTable",
    "VectorRows",
]
