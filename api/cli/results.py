"""What the analysis commands share: a spinner while they work, and exporting a run's result table
to CSV or Parquet (every row, for spreadsheets and notebooks)."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pyarrow as pa

from .common import console, fail

__all__ = ["busy", "check_export_path", "export_table"]

EXPORT_SUFFIXES = (".parquet", ".csv")


def check_export_path(path: Path | None) -> None:
    """Refuse an ``--out`` file that cannot be written, before any work is done for it."""
    if path is not None and path.suffix.lower() not in EXPORT_SUFFIXES:
        fail(f"--out {path.name!r}: name the file .csv or .parquet")


def export_table(table: pa.Table, path: Path) -> Path:
    """Write ``table`` by the file's suffix: ``.parquet`` as is, ``.csv`` with list cells (terms,
    neighbours) as JSON text, since CSV has no lists."""
    check_export_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
        return path
    import pyarrow.csv as csv

    for i, column in enumerate(table.columns):
        if pa.types.is_list(column.type):
            as_text = pa.array([None if v is None else json.dumps(v) for v in column.to_pylist()],
                               pa.string())
            table = table.set_column(i, table.column_names[i], as_text)
    csv.write_csv(table, path)
    return path


def busy(what: str, quiet: bool) -> AbstractContextManager[Any]:
    """A spinner on the terminal while work runs; nothing with --json (stdout is the result)."""
    return nullcontext() if quiet else console.status(f"{what}...", spinner="dots")
