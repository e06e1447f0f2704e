"""Readers: every format, every kind of problem, gzip, and reading on after a bad record."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kinsight.engine.errors import InvalidInputError, NotFoundError
from kinsight.indexers.readers import infer_format, read_records
from kinsight.indexers.records import Problem, Record

__all__: list[str] = []


def _split(items: Iterable[Record | Problem]) -> tuple[list[Record], list[Problem]]:
    records: list[Record] = []
    problems: list[Problem] = []
    for item in items:
        (records if isinstance(item, Record) else problems).append(item)  # type: ignore[arg-type]
    return records, problems


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --- Problem, format inference, option errors ------------------------------------------------


def test_problem_str_names_source_line_message_and_fix() -> None:
    assert str(Problem("a.jsonl", 3, "bad", "fix it")) == "a.jsonl:3: bad — fix it"
    assert str(Problem("a.md", None, "bad", "fix it")) == "a.md: bad — fix it"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.jsonl", "jsonl"),
        ("a.NDJSON", "jsonl"),
        ("a.json", "jsonl"),
        ("a.jsonlines", "jsonl"),
        ("a.jsonl.gz", "jsonl"),
        ("a.csv", "csv"),
        ("a.tsv.gz", "csv"),
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
    ],
)
def test_infer_format_from_suffix(tmp_path: Path, name: str, expected: str) -> None:
    assert infer_format(tmp_path / name) == expected


def test_infer_format_of_a_folder(tmp_path: Path) -> None:
    assert infer_format(tmp_path) == "folder"


@pytest.mark.parametrize("name", ["notes.xlsx", "README", "a.parquet.gz", "a.gz"])
def test_unknown_suffix_is_refused_naming_the_path_and_formats(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    with pytest.raises(InvalidInputError) as caught:
        read_records(path)
    message = str(caught.value)
    assert str(path) in message
    assert ".jsonl" in message and "parquet" in message


def test_missing_path_raises_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"no-such\.jsonl"):
        read_records(tmp_path / "no-such.jsonl")


def test_unknown_format_option_is_refused(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", [{"id": 1, "text": "x"}])
    with pytest.raises(InvalidInputError, match="format must be one of"):
        read_records(path, format="xml")


def test_format_and_path_kind_must_agree(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", [{"id": 1, "text": "x"}])
    with pytest.raises(InvalidInputError, match="needs a folder"):
        read_records(path, format="folder")
    with pytest.raises(InvalidInputError, match="is a folder"):
        read_records(tmp_path, format="jsonl")


def test_explicit_format_overrides_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_text('{"id": "a", "text": "hello"}\n', encoding="utf-8")
    records, problems = _split(read_records(path, format="jsonl"))
    assert [r.id for r in records] == ["a"] and problems == []


# --- JSON Lines -------------------------------------------------------------------------------


def test_jsonl_records_with_plain_values(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "a.jsonl",
        [
            {"id": 7, "text": "hello", "n": 1.5, "ok": True, "none": None, "tags": ["x", 2]},
            {"id": "  b  ", "text": "world", "meta": {"z": 1, "a": {"b": 2}}},
        ],
    )
    items = read_records(path)
    assert iter(items) is items  # a stream, not a list read up front
    records, problems = _split(items)
    assert problems == []
    assert records[0] == Record(
        id="7",
        fields={"text": "hello", "n": 1.5, "ok": True, "none": None, "tags": ["x", 2]},
        source=str(path),
        line=1,
    )
    assert records[1].id == "b"
    assert records[1].fields["meta"] == '{"a": {"b": 2}, "z": 1}'
    assert "id" not in records[1].fields


def test_jsonl_skips_blank_lines_but_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('\n{"id": 1, "text": "a"}\n  \n\n{"id": 2, "text": "b"}\n', encoding="utf-8")
    records, problems = _split(read_records(path))
    assert problems == []
    assert [(r.id, r.line) for r in records] == [("1", 2), ("2", 5)]


def test_jsonl_bad_lines_become_problems_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    lines = [
        b'{"id": 1, "text": "first"}',
        b'{"id": 2, "text": ',  # malformed
        b"[1, 2]",  # not an object
        b'{"id": 3, "text": "caf\xe9"}',  # latin-1, not UTF-8
        b'{"id": 4, "text": "last"}',
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    records, problems = _split(read_records(path))
    assert [(r.id, r.line) for r in records] == [("1", 1), ("4", 5)]
    assert [(p.source, p.line) for p in problems] == [(str(path), 2), (str(path), 3), (str(path), 4)]
    assert "not valid JSON" in problems[0].message and "column" in problems[0].message
    assert "not a JSON object" in problems[1].message and "list" in problems[1].message
    assert "UTF-8" in problems[2].message and "UTF-8" in problems[2].fix


def test_jsonl_missing_or_empty_id_names_the_field_and_the_keys(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "a.jsonl",
        [
            {"doc_id": "a", "text": "x"},
            {"doc_id": "   ", "body": "y", "text": "x"},
            {"id": "wrong-field", "text": "x"},
            {"doc_id": "ok", "text": "x"},
        ],
    )
    records, problems = _split(read_records(path, id_field="doc_id"))
    assert [r.id for r in records] == ["a", "ok"]
    assert [p.line for p in problems] == [2, 3]
    for problem in problems:
        assert "'doc_id'" in problem.message
        assert "--id-field" in problem.fix
    assert "doc_id, body, text" in problems[0].fix
    assert "id, text" in problems[1].fix


@pytest.mark.parametrize("bad_id", [True, [1], {"a": 1}, 1.5])
def test_jsonl_id_of_the_wrong_type_is_a_problem(tmp_path: Path, bad_id: Any) -> None:
    path = _jsonl(tmp_path / "a.jsonl", [{"id": bad_id, "text": "x"}, {"id": 2, "text": "y"}])
    records, problems = _split(read_records(path))
    assert [r.id for r in records] == ["2"]
    assert problems[0].line == 1 and "'id'" in problems[0].message


def test_jsonl_whole_float_id_becomes_an_integer_string(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", [{"id": 12.0, "text": "x"}])
    assert [r.id for r in _split(read_records(path))[0]] == ["12"]


def test_jsonl_text_missing_or_blank_in_every_text_field(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "a.jsonl",
        [
            {"id": 1, "title": "", "body": " \n "},
            {"id": 2, "other": "x"},
            {"id": 3, "title": None, "body": "has text"},
            {"id": 4, "title": "only a title"},
        ],
    )
    records, problems = _split(read_records(path, text_fields=("title", "body")))
    assert [r.id for r in records] == ["3", "4"]
    assert [p.line for p in problems] == [1, 2]
    for problem in problems:
        assert "'title'" in problem.message and "'body'" in problem.message
        assert "--text-field NAME" in problem.fix
    assert "id, other" in problems[1].fix


def test_jsonl_text_field_numbers_become_strings_others_are_problems(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "a.jsonl",
        [
            {"id": 1, "text": 42},
            {"id": 2, "text": ["a", "b"]},
            {"id": 3, "text": {"a": 1}},
            {"id": 4, "text": False},
            {"id": 5, "text": 2.5},
        ],
    )
    records, problems = _split(read_records(path))
    assert [(r.id, r.fields["text"]) for r in records] == [("1", "42"), ("5", "2.5")]
    assert [p.line for p in problems] == [2, 3, 4]
    assert all("text field 'text'" in p.message for p in problems)
    assert "list" in problems[0].message and "object" in problems[1].message


def test_single_string_text_fields_is_one_field_name(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", [{"id": 1, "body": "x"}])
    records, problems = _split(read_records(path, text_fields="body"))
    assert [r.id for r in records] == ["1"] and problems == []


def test_jsonl_with_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": 1, "text": "x"}\n')
    records, problems = _split(read_records(path))
    assert [r.id for r in records] == ["1"] and problems == []


def test_json_array_file_is_refused_with_a_conversion(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"id": 1, "text": "x"}], indent=2), encoding="utf-8")
    with pytest.raises(InvalidInputError, match="JSON array"):
        list(read_records(path))


def test_gzipped_jsonl_reads_like_plain(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write('{"id": 1, "text": "a"}\nnot json\n{"id": 2, "text": "b"}\n')
    records, problems = _split(read_records(path))
    assert [(r.id, r.line, r.source) for r in records] == [("1", 1, str(path)), ("2", 3, str(path))]
    assert [(p.line, p.source) for p in problems] == [(2, str(path))]


def test_truncated_gzip_keeps_the_records_before_the_break(tmp_path: Path) -> None:
    rows = [{"id": i, "text": f"record number {i} " * 20} for i in range(2000)]
    whole = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    records, problems = _split(read_records(path))
    assert 0 < len(records) < 2000
    assert [r.id for r in records] == [str(i) for i in range(len(records))]
    assert len(problems) == 1
    assert problems[0].line == len(records) + 1
    assert "the rest was not read" in problems[0].message


# --- CSV / TSV --------------------------------------------------------------------------------


def test_csv_records_and_physical_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(
        'id,text,price\n1,hello,3\n2,"two\nlines",\n\n3,"x, y",7\n', encoding="utf-8", newline=""
    )
    records, problems = _split(read_records(path))
    assert problems == []
    assert [(r.id, r.line) for r in records] == [("1", 2), ("2", 3), ("3", 6)]
    assert records[0].fields == {"text": "hello", "price": "3"}
    assert records[1].fields == {"text": "two\nlines", "price": None}  # empty cell: missing
    assert records[2].fields["text"] == "x, y"


def test_csv_bad_rows_become_problems_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(
        b"id,text,n\n"
        b",no id,1\n"  # line 2
        b"2,,1\n"  # line 3: empty text
        b"3,a,b,c\n"  # line 4: too many values
        b"4,caf\xe9,1\n"  # line 5: not UTF-8
        b"5,short\n"  # line 6: a missing trailing cell is fine
    )
    records, problems = _split(read_records(path))
    assert [(r.id, r.line, r.fields) for r in records] == [("5", 6, {"text": "short", "n": None})]
    assert [(p.source, p.line) for p in problems] == [(str(path), n) for n in (2, 3, 4, 5)]
    assert "'id'" in problems[0].message and "id, text, n" in problems[0].fix
    assert "'text'" in problems[1].message
    assert "4 values" in problems[2].message and "3 columns" in problems[2].message
    assert "UTF-8" in problems[3].message


def test_tsv_uses_tabs_and_reads_gzip(tmp_path: Path) -> None:
    path = tmp_path / "a.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        handle.write("key\tbody\textra\nk1\thas, commas\t1\n")
    records, problems = _split(read_records(path, id_field="key", text_fields=["body"]))
    assert problems == []
    assert records == [
        Record(id="k1", fields={"body": "has, commas", "extra": "1"}, source=str(path), line=2)
    ]


def test_gzipped_csv(tmp_path: Path) -> None:
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(b"id,text\n1,a\n2,\n3,c\n"))
    records, problems = _split(read_records(path))
    assert [r.id for r in records] == ["1", "3"]
    assert [p.line for p in problems] == [3]


def test_csv_with_byte_order_mark_finds_the_id_column(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"\xef\xbb\xbfid,text\n1,a\n")
    assert [r.id for r in _split(read_records(path))[0]] == ["1"]


def test_csv_field_longer_than_the_csv_module_default(tmp_path: Path) -> None:
    long_text = "word " * 60_000  # 300 kB, over csv's 128 KiB default limit
    path = tmp_path / "a.csv"
    path.write_text(f'id,text\n1,"{long_text}"\n2,b\n', encoding="utf-8")
    records, problems = _split(read_records(path))
    assert problems == []
    assert records[0].fields["text"] == long_text and records[1].id == "2"


def test_csv_without_the_id_column_raises_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("key,text\n1,a\n", encoding="utf-8")
    with pytest.raises(InvalidInputError) as caught:
        read_records(path)  # raised by the call, not on the first next()
    assert "'id'" in str(caught.value) and "key, text" in str(caught.value)


def test_csv_without_any_text_column_raises_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,body\n1,a\n", encoding="utf-8")
    with pytest.raises(InvalidInputError) as caught:
        read_records(path, text_fields=("text", "title"))
    assert "'text', 'title'" in str(caught.value) and "id, body" in str(caught.value)


def test_csv_with_one_of_several_text_columns_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,body\n1,a\n", encoding="utf-8")
    records, _ = _split(read_records(path, text_fields=("text", "body")))
    assert [r.fields for r in records] == [{"body": "a"}]


def test_empty_csv_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"")
    records, problems = _split(read_records(path))
    assert records == [] and len(problems) == 1
    assert problems[0].source == str(path) and "empty" in problems[0].message


# --- Parquet ----------------------------------------------------------------------------------


def test_parquet_records_with_row_numbers_across_batches(tmp_path: Path) -> None:
    count = 2500  # more than two batches of 1024
    table = pa.table(
        {
            "id": pa.array(range(count), type=pa.int64()),
            "text": [f"text {i}" if i != 1500 else None for i in range(count)],
            "score": [i / 2 for i in range(count)],
            "tags": [["a", "b"]] * count,
            "meta": [{"k": i, "name": "n"} for i in range(count)],
            "when": [dt.datetime(2024, 1, 2, 3, 4, 5)] * count,
        }
    )
    path = tmp_path / "a.parquet"
    pq.write_table(table, path, row_group_size=700)
    records, problems = _split(read_records(path))
    assert len(records) == count - 1
    assert [(p.source, p.line) for p in problems] == [(str(path), 1501)]
    assert "'text'" in problems[0].message
    last = records[-1]
    assert (last.id, last.line, last.source) == (str(count - 1), count, str(path))
    assert last.fields == {
        "text": f"text {count - 1}",
        "score": (count - 1) / 2,
        "tags": ["a", "b"],
        "meta": json.dumps({"k": count - 1, "name": "n"}, sort_keys=True),
        "when": "2024-01-02T03:04:05",
    }


def test_parquet_missing_id_value_and_non_text_value(tmp_path: Path) -> None:
    table = pa.table({"id": ["a", None, "c"], "text": ["x", "y", "z"], "n": [1, 2, 3]})
    path = tmp_path / "a.pq"
    pq.write_table(table, path)
    records, problems = _split(read_records(path))
    assert [(r.id, r.line) for r in records] == [("a", 1), ("c", 3)]
    assert [p.line for p in problems] == [2] and "'id'" in problems[0].message


def test_parquet_without_the_id_column_raises_naming_columns(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"doc": ["a"], "text": ["x"]}), path)
    with pytest.raises(InvalidInputError) as caught:
        read_records(path)
    assert "'id'" in str(caught.value) and "doc, text" in str(caught.value)
    with pytest.raises(InvalidInputError, match="no text column"):
        read_records(path, id_field="doc", text_fields=["body"])


def test_file_that_is_not_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    path.write_text("id,text\n1,a\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not a readable Parquet file"):
        read_records(path)


# --- folders of .txt / .md --------------------------------------------------------------------


def _write(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def test_folder_records_sorted_with_relative_ids_and_titles(tmp_path: Path) -> None:
    _write(tmp_path / "guide" / "intro.md", "\n\n## Getting  started \n\nBody text.\n")
    _write(tmp_path / "b.txt", "Plain first line\nsecond\n")
    _write(tmp_path / "a.MD", "---\ntitle: meta\n---\n# Real title\n")
    _write(tmp_path / "guide" / "deep" / "z.txt", "deep")
    _write(tmp_path / "notes.rst", "not read")
    _write(tmp_path / ".hidden.md", "not read")
    _write(tmp_path / ".git" / "x.md", "not read")
    _write(tmp_path / "guide" / ".drafts" / "y.md", "not read")

    records, problems = _split(read_records(tmp_path, id_field="ignored", text_fields=["nope"]))
    assert problems == []
    assert [r.id for r in records] == ["a.MD", "b.txt", "guide/deep/z.txt", "guide/intro.md"]
    intro = records[-1]
    assert intro.fields == {
        "text": "\n\n## Getting  started \n\nBody text.\n",
        "title": "Getting  started",
        "path": "guide/intro.md",
    }
    assert (intro.source, intro.line) == (str(tmp_path / "guide" / "intro.md"), 1)
    assert records[0].fields["title"] == "Real title"
    assert records[1].fields["title"] == "Plain first line"


def test_folder_bad_files_are_problems_and_the_rest_is_read(tmp_path: Path) -> None:
    _write(tmp_path / "a.txt", "fine")
    _write(tmp_path / "b.txt", b"line one\nline two caf\xe9\n")
    _write(tmp_path / "c.md", "  \n")
    _write(tmp_path / "d.md", "also fine")
    records, problems = _split(read_records(tmp_path))
    assert [r.id for r in records] == ["a.txt", "d.md"]
    assert [(p.source, p.line) for p in problems] == [
        (str(tmp_path / "b.txt"), 2),
        (str(tmp_path / "c.md"), None),
    ]
    assert "UTF-8" in problems[0].message
    assert "'text'" in problems[1].message and "empty" in problems[1].message


def test_empty_folder_gives_nothing(tmp_path: Path) -> None:
    assert list(read_records(tmp_path)) == []


def test_parquet_drops_the_pandas_index_columns(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "pandas.parquet"
    pq.write_table(pa.table({"id": ["a"], "text": ["hello"], "__index_level_0__": [7]}), path)
    (record,) = list(read_records(path))
    assert record.fields == {"text": "hello"}
