"""What the analysis commands share: a spinner while they work, and exporting a run's result table
to CSV or Parquet (every row, for spreadsheets and notebooks)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kinsight.engine import InvalidInputError

from .common import console

__all__ = ["busy", "export_table"]


def export_table(table: pa.Table, path: Path) -> Path:
    """Write ``table`` by the file's suffix: ``.parquet`` as is, ``.csv`` with list columns
    joined by spaces (CSV has no lists)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif suffix == ".csv":
        import pyarrow.csv as csv

        flat = table
        for i, column in enumerate(table.columns):
            if pa.types.is_list(column.type):
                joined = pc.binary_join(pc.cast(column, pa.list_(pa.string())), " ")
                flat = flat.set_column(i, table.field(i).name, joined)
        csv.write_csv(flat, path)
    else:
        raise InvalidInputError(f"cannot export to {path.name!r}: name the file .csv or .parquet")
    return path


def busy(what: str, quiet: bool) -> AbstractContextManager[Any]:
    """A spinner on the terminal while work runs; nothing with --json (stdout is the result)."""
    return nullcontext() if quiet else console.status(f"{what}...", spinner="dots")
