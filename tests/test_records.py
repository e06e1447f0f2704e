"""record_from_mapping: one raw mapping to a Record, or the Problem that keeps it out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kinsight.indexers.records import Problem, Record, record_from_mapping

__all__: list[str] = []


def _make(raw: dict[str, Any], text_fields: tuple[str, ...] = ("text",)) -> Record | Problem:
    return record_from_mapping(raw, "src", 7, id_field="id", text_fields=text_fields)


def test_plain_record_keeps_every_field_but_the_id() -> None:
    assert _make({"id": "a", "text": "hello", "n": 2, "ok": False, "none": None}) == Record(
        id="a", fields={"text": "hello", "n": 2, "ok": False, "none": None}, source="src", line=7
    )


def test_int_id_becomes_a_string() -> None:
    record = _make({"id": 42, "text": "x"})
    assert isinstance(record, Record) and record.id == "42"


@pytest.mark.parametrize("bad_id", [True, 1.5, [1], {"a": 1}])
def test_id_of_the_wrong_type_is_a_problem(bad_id: Any) -> None:
    problem = _make({"id": bad_id, "text": "x"})
    assert isinstance(problem, Problem)
    assert (problem.source, problem.line) == ("src", 7)
    assert "id field 'id'" in problem.message and problem.fix == "use a string or whole number"


def test_nested_dict_becomes_a_json_string_and_lists_of_dicts_json_items() -> None:
    record = _make({"id": "a", "text": "x", "meta": {"z": 1, "a": {"b": 2}}, "tags": [{"k": 1}]})
    assert isinstance(record, Record)
    assert record.fields["meta"] == json.dumps({"a": {"b": 2}, "z": 1}, sort_keys=True)
    assert record.fields["tags"] == ['{"k": 1}']


@pytest.mark.parametrize("text", [None, "", "  \n ", float("nan")])
def test_missing_or_blank_text_is_a_problem_naming_the_fields(text: Any) -> None:
    problem = _make({"id": "a", "title": "", "body": text}, text_fields=("title", "body"))
    assert isinstance(problem, Problem)
    assert "no text in fields 'title', 'body' (missing or empty)" in problem.message
    assert "--text-field NAME" in problem.fix and "id, title, body" in problem.fix


def test_text_field_absent_from_the_record_is_a_problem() -> None:
    problem = _make({"id": "a", "other": "x"})
    assert isinstance(problem, Problem) and "no text in field 'text'" in problem.message


def test_one_text_field_with_text_is_enough_and_numbers_become_text() -> None:
    record = _make({"id": "a", "title": 3, "body": None}, text_fields=("title", "body"))
    assert isinstance(record, Record) and record.fields == {"title": "3", "body": None}


def test_text_field_holding_an_object_is_a_problem() -> None:
    problem = _make({"id": "a", "text": {"not": "text"}})
    assert isinstance(problem, Problem)
    assert "text field 'text' holds an object" in problem.message


@pytest.mark.parametrize("name", ["has space", "1st", "_hidden", "_hash", "ID", "é"])
def test_invalid_field_name_is_a_problem_naming_the_field(name: str) -> None:
    problem = _make({"id": "a", "text": "x", name: 1})
    assert isinstance(problem, Problem)
    assert f"invalid field name {name!r}" in problem.message
    assert problem.fix == "rename the field"


def test_the_id_field_itself_is_not_a_field_name() -> None:
    record = record_from_mapping({"Doc ID": "a", "text": "x"}, "src", 1, id_field="Doc ID",
                                 text_fields=("text",))
    assert isinstance(record, Record) and record.fields == {"text": "x"}


def test_field_names_differing_only_in_case_are_a_problem() -> None:
    problem = _make({"id": "a", "text": "x", "Title": "t", "title": "u"})
    assert isinstance(problem, Problem)
    assert problem.message == "fields 'Title' and 'title' differ only in case"
    assert problem.fix == "rename one of them"


def test_the_id_is_checked_before_the_field_names() -> None:
    problem = _make({"text": "x", "bad name": 1})
    assert isinstance(problem, Problem) and "missing or empty id field 'id'" in problem.message
