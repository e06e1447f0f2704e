"""Read records for ingest from JSON Lines, CSV/TSV, Parquet, or a folder of .txt/.md files.

``read_records`` streams: JSON Lines and CSV line by line (gzip-compressed files too, recognised by
their magic bytes), Parquet in batches of rows, folders one file at a time. A bad record never
stops the reading: it comes out as a ``Problem`` (where, what, how to fix) in place of a ``Record``,
and the records after it are still read. A wrong option (a path that does not exist, an unknown
format, an id or text column that no row could have) raises before any record is read.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
import zlib
from collections.abc import Iterator, Sequence
from itertools import zip_longest
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kinsight.engine.errors import InvalidInputError, NotFoundError

from .records import Problem, Record, describe_value, quoted_names, record_from_mapping

__all__ = ["FOLDER_SUFFIXES", "FORMATS", "folder_files", "infer_format", "read_records"]

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "csv", "parquet", "folder")
FOLDER_SUFFIXES = (".txt", ".md")

# Hugging Face `datasets.to_json` and pandas `to_json(lines=True)` both write JSON Lines to
# `.json`, so `.json` is read as JSON Lines; a JSON array is recognised and refused with a fix.
_SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".jsonlines": "jsonl", ".json": "jsonl"}
_SUFFIX_FORMATS |= {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_BATCH_ROWS = 1024
# The csv module refuses fields over 128 KiB by default; long documents are what chunking is for.
_CSV_FIELD_LIMIT = 2**31 - 1
_BROKEN_FIX = "re-create or re-download the file"
_JSONL_FIX = "fix or delete the line; each line must hold one JSON object"
_UTF8_FIX = "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"


def infer_format(path: str | Path) -> str:
    """The format for ``path`` from its suffix (``.gz`` is looked through); a folder is "folder"."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    suffix = _data_suffix(path)
    found = _SUFFIX_FORMATS.get(suffix)
    if found is None or (found == "parquet" and path.suffix.lower() == ".gz"):
        raise InvalidInputError(
            f"{path}: cannot tell the format from the file name; name it with one of "
            f"{', '.join(sorted(_SUFFIX_FORMATS))} (optionally + .gz, not for Parquet), or pass "
            f"format= one of {', '.join(FORMATS)}"
        )
    return found


def _data_suffix(path: Path) -> str:
    """The lower-case suffix that names the format: ``.csv`` for ``data.csv.gz``."""
    name = path.name.lower()
    return Path(name.removesuffix(".gz")).suffix


def read_records(
    path: str | Path,
    *,
    id_field: str = "id",
    text_fields: Sequence[str] = ("text",),
    format: str | None = None,
) -> Iterator[Record | Problem]:
    """Records and problems from ``path``, in file order, streamed.

    ``id_field`` names the key holding each record's id and ``text_fields`` the keys holding its
    text (at least one must be non-empty; none given: no text is needed, as for updating fields
    alone). A single string for ``text_fields`` is one field name.
    In folder mode both are ignored: the id is the file's path relative to the folder and the
    fields are ``text``, ``title`` and ``path``. Raises ``NotFoundError`` for a missing path and
    ``InvalidInputError`` for an unknown format or an id/text column no record has.
    """
    root = Path(path)
    if not root.exists():
        raise NotFoundError(f"{root}: no such file or folder; check the path")
    chosen = infer_format(root) if format is None else format
    if chosen not in FORMATS:
        raise InvalidInputError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if chosen == "folder":
        if not root.is_dir():
            raise InvalidInputError(f"{root} is a file; format='folder' needs a folder")
        return _logged(root, _read_folder(root))
    if root.is_dir():
        raise InvalidInputError(f"{root} is a folder; pass format='folder' or a file path")

    fields = (text_fields,) if isinstance(text_fields, str) else tuple(text_fields)
    if not id_field or not all(fields):
        raise InvalidInputError(
            f"id_field and text_fields must be non-empty names, got {id_field!r} and {fields!r}"
        )
    if chosen == "jsonl":
        return _logged(root, _read_jsonl(root, id_field, fields))
    if chosen == "csv":
        delimiter = "\t" if _data_suffix(root) == ".tsv" else ","
        header = _csv_header(root, delimiter)
        if header is not None:
            _check_columns(root, header, id_field, fields)
        return _logged(root, _read_csv(root, delimiter, id_field, fields))
    try:
        columns = pq.read_schema(root).names
    except (OSError, pa.ArrowException) as e:
        raise InvalidInputError(
            f"{root}: not a readable Parquet file ({e}); check the file or pass the right format="
        ) from e
    _check_columns(root, columns, id_field, fields)
    return _logged(root, _read_parquet(root, id_field, fields))


def _logged(root: Path, items: Iterator[Record | Problem]) -> Iterator[Record | Problem]:
    records = problems = 0
    for item in items:
        if isinstance(item, Record):
            records += 1
        else:
            problems += 1
        yield item
    log.info("read %d records from %s, skipped %d with problems", records, root, problems)


def _check_columns(
    root: Path, columns: Sequence[str], id_field: str, fields: tuple[str, ...]
) -> None:
    found = ", ".join(columns) or "none"
    if id_field not in columns:
        raise InvalidInputError(
            f"{root}: no id column {id_field!r}; columns found: {found}. "
            "Pass --id-field NAME (id_field=) naming the column that holds ids"
        )
    if fields and not any(name in columns for name in fields):
        raise InvalidInputError(
            f"{root}: no text column {quoted_names(fields)}; columns found: {found}. "
            "Pass --text-field NAME (text_fields=) naming the columns that hold text"
        )


def _open_binary(path: Path) -> io.BufferedIOBase:
    with path.open("rb") as probe:
        compressed = probe.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if compressed else path.open("rb")


def _numbered_lines(handle: io.BufferedIOBase, source: str) -> Iterator[tuple[int, bytes] | Problem]:
    """(1-based line number, raw bytes) pairs; a Problem, and the end, where the file breaks."""
    number = 0
    while True:
        try:
            raw = handle.readline()
        except (OSError, EOFError, zlib.error) as e:
            # A truncated or corrupt gzip stream cannot be resumed: keep what came before.
            message = f"the file breaks here ({e}); the rest was not read"
            yield Problem(source, number + 1, message, _BROKEN_FIX)
            return
        if not raw:
            return
        number += 1
        yield number, raw


def _decode(raw: bytes, number: int) -> str:
    # Excel and Windows tools start UTF-8 files with a byte-order mark; json and csv choke on it.
    return raw.decode("utf-8-sig" if number == 1 else "utf-8")


def _read_jsonl(path: Path, id_field: str, fields: tuple[str, ...]) -> Iterator[Record | Problem]:
    source = str(path)
    seen_content = False
    with _open_binary(path) as handle:
        for item in _numbered_lines(handle, source):
            if isinstance(item, Problem):
                yield item
                return
            number, raw = item
            try:
                line = _decode(raw, number)
            except UnicodeDecodeError as e:
                message = f"the line is not valid UTF-8 (byte {e.start + 1})"
                yield Problem(source, number, message, _UTF8_FIX)
                continue
            if not line.strip():
                continue
            if not seen_content and line.lstrip().startswith("["):
                raise InvalidInputError(
                    f"{path} holds a JSON array, not JSON Lines (one object per line); convert "
                    f"it with: jq -c '.[]' {path} > {path.stem}.jsonl"
                )
            seen_content = True
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as e:
                why = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else e
                yield Problem(source, number, f"not valid JSON: {why}", _JSONL_FIX)
                continue
            if not isinstance(obj, dict):
                message = f"the line holds {describe_value(obj)}, not a JSON object"
                yield Problem(source, number, message, _JSONL_FIX)
                continue
            yield record_from_mapping(obj, source, number, id_field=id_field, text_fields=fields)


def _csv_lines(
    handle: io.BufferedIOBase, source: str, bad: set[int], failures: list[Problem]
) -> Iterator[str]:
    """Decoded lines for csv.reader; numbers of non-UTF-8 lines go to ``bad``, breakage to
    ``failures`` (csv.reader only takes strings, so the problems travel on the side)."""
    for item in _numbered_lines(handle, source):
        if isinstance(item, Problem):
            failures.append(item)
            return
        number, raw = item
        try:
            yield _decode(raw, number)
        except UnicodeDecodeError:
            bad.add(number)
            yield raw.decode("utf-8", errors="replace")


def _csv_header(path: Path, delimiter: str) -> list[str] | None:
    """The header row, None for an empty or unreadable file (reading it reports that)."""
    with _open_binary(path) as handle:
        reader = csv.reader(_csv_lines(handle, str(path), set(), []), delimiter=delimiter)
        try:
            return next(reader, None)
        except csv.Error:
            return None


def _read_csv(
    path: Path, delimiter: str, id_field: str, fields: tuple[str, ...]
) -> Iterator[Record | Problem]:
    source = str(path)
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    bad: set[int] = set()
    failures: list[Problem] = []
    with _open_binary(path) as handle:
        reader = csv.reader(_csv_lines(handle, source, bad, failures), delimiter=delimiter)
        try:
            header = next(reader, None)
        except csv.Error as e:
            header = None
            failures.append(Problem(source, 1, f"the header is not valid CSV: {e}", "fix it"))
        if header is None:
            yield from failures or [
                Problem(source, None, "the file is empty", "add a header row and records")
            ]
            return
        end = reader.line_num
        while True:
            start = end + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                end = reader.line_num
                yield Problem(source, start, f"not valid CSV: {e}", "fix the row or delete it")
                continue
            end = reader.line_num
            if any(number in bad for number in range(start, end + 1)):
                yield Problem(source, start, "the row is not valid UTF-8", _UTF8_FIX)
                continue
            if not any(row):
                continue  # blank line
            if len(row) > len(header):
                message = f"the row has {len(row)} values but the header {len(header)} columns"
                yield Problem(source, start, message, f"quote values that contain {delimiter!r}")
                continue
            # A cell left empty is a missing value (as pandas and DuckDB read it), not "".
            raw = {name: value or None for name, value in zip_longest(header, row)}
            yield record_from_mapping(raw, source, start, id_field=id_field, text_fields=fields)
    yield from failures


def _read_parquet(
    path: Path, id_field: str, fields: tuple[str, ...]
) -> Iterator[Record | Problem]:
    source = str(path)
    number = 0
    with pq.ParquetFile(path) as parquet:
        # pandas stores its row index as columns named __index_level_N__: bookkeeping, not data.
        columns = [c for c in parquet.schema_arrow.names if not c.startswith("__index_level_")]
        try:
            for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=columns):
                for row in batch.to_pylist():
                    number += 1
                    yield record_from_mapping(row, source, number, id_field=id_field,
                                              text_fields=fields)
        except (OSError, ValueError, pa.ArrowException) as e:
            # A corrupt row group or a value Python cannot hold: the rows after it are lost.
            message = f"cannot read rows from here ({e}); the rest was not read"
            yield Problem(source, number + 1, message, _BROKEN_FIX)


def folder_files(root: Path, suffixes: Sequence[str] = FOLDER_SUFFIXES) -> list[tuple[Path, str]]:
    """(path, posix path relative to root) of the files with one of ``suffixes`` (lower case),
    anywhere under ``root``, hidden files and folders left out, sorted by relative path."""
    found: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Pruning here keeps the walk out of .git, .venv and the like altogether.
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in suffixes:
                continue
            file = Path(dirpath, name)
            found.append((file, file.relative_to(root).as_posix()))
    return sorted(found, key=lambda pair: pair[1])


def _title(text: str) -> str:
    lines = iter(text.splitlines())
    for line in lines:
        stripped = line.strip()
        if stripped == "---":
            # Markdown front matter (Jekyll, Hugo, MkDocs): the title is the first line after it.
            for closing in lines:
                if closing.strip() == "---":
                    break
            continue
        if stripped:
            return stripped.lstrip("#").strip()
    return ""


def _read_folder(root: Path) -> Iterator[Record | Problem]:
    for file, relative in folder_files(root):
        source = str(file)
        try:
            raw = file.read_bytes()
        except OSError as e:
            yield Problem(source, None, f"cannot read the file: {e}", "check its permissions")
            continue
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            yield Problem(source, line, "the file is not valid UTF-8; it was skipped", _UTF8_FIX)
            continue
        if not text.strip():
            yield Problem(source, None, "no text in field 'text': the file is empty", "delete it")
            continue
        fields = {"text": text, "title": _title(text), "path": relative}
        yield Record(id=relative, fields=fields, source=source, line=1)
