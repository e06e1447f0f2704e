"""Filters on item fields, compiled to parameterised SQL over a collection's ``items`` table.

Two forms:

- structured: ``{"field": "section", "op": "eq", "value": "python"}``, combined with
  ``{"and": [...]}``, ``{"or": [...]}`` and ``{"not": ...}``. Field names are checked against the
  collection's columns and values are always bound as parameters, so this form is safe to accept
  from the network (the HTTP API takes only this one).
- raw SQL: ``SqlWhere("n_words > 100 AND section LIKE 'python%'")``, for trusted local use. It must
  parse as the WHERE clause of a single SELECT. Like every query of a store it runs on a database
  that cannot read files, attach databases or load extensions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

import duckdb
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import FilterError, translated
from .schema import quote

__all__ = [
    "And",
    "CompiledFilter",
    "Condition",
    "Filter",
    "FilterInput",
    "Not",
    "Operator",
    "Or",
    "SqlWhere",
    "compile_filter",
    "filter_to_json",
    "parse_filter",
]

Operator = Literal[
    "eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "contains", "is_null", "not_null"
]
_COMPARISONS = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


class Condition(BaseModel):
    """One test on one field, e.g. ``Condition(field="section", op="in", value=["python"])``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"field": "section", "op": "eq", "value": "python"}]})
    field: str
    op: Operator = "eq"
    value: Any = None


class And(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    all_of: list[Filter] = Field(alias="and", min_length=1)


class Or(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    any_of: list[Filter] = Field(alias="or", min_length=1)


class Not(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    negated: Filter = Field(alias="not")


Filter = Union[Condition, And, Or, Not]  # noqa: UP007 (pydantic needs the runtime Union here)
for _model in (And, Or, Not):
    _model.model_rebuild()


@dataclass(frozen=True)
class SqlWhere:
    """Raw SQL for a WHERE clause over the collection's fields. Trusted local use only."""

    sql: str


FilterInput = Union[Filter, SqlWhere, Mapping[str, Any], str, None]  # noqa: UP007


@dataclass(frozen=True)
class CompiledFilter:
    """``sql`` is a boolean SQL expression over the items table; ``params`` bind its ``?``."""

    sql: str
    params: list[Any]


class _FilterParser(BaseModel):
    root: Filter


def parse_filter(value: FilterInput) -> Filter | SqlWhere | None:
    """Accept a filter model, a dict in the structured form, or a string of raw SQL (trusted)."""
    if value is None or isinstance(value, Condition | And | Or | Not | SqlWhere):
        return value
    if isinstance(value, str):
        return SqlWhere(value)
    if isinstance(value, Mapping):
        try:
            return _FilterParser(root=value).root  # type: ignore[arg-type]
        except ValidationError as e:
            raise FilterError(
                f"invalid filter {dict(value)!r}: write {{'field': F, 'op': OP, 'value': V}}, "
                f"or {{'and'|'or': [...]}} or {{'not': ...}} ({e.error_count()} problems: "
                f"{e.errors()[0]['msg']})"
            ) from e
    raise FilterError(f"cannot use {type(value).__name__} as a filter; pass a dict or SqlWhere")


def filter_to_json(value: FilterInput) -> Any:
    """The filter as plain JSON (the structured form as a dict, raw SQL as its text), so a run's
    parameters record which items it looked at in a form a person can read and reuse."""
    parsed = parse_filter(value)
    if parsed is None or isinstance(parsed, SqlWhere):
        return None if parsed is None else parsed.sql
    return parsed.model_dump(by_alias=True)


def compile_filter(value: FilterInput, fields: Mapping[str, str]) -> CompiledFilter | None:
    """Compile a filter against a collection's fields (name → DuckDB type); ``id`` is allowed too."""
    parsed = parse_filter(value)
    if parsed is None:
        return None
    if isinstance(parsed, SqlWhere):
        return _check_raw(parsed)
    params: list[Any] = []
    return CompiledFilter(_compile(parsed, {**fields, "id": "VARCHAR"}, params), params)


def _compile(node: Filter, fields: Mapping[str, str], params: list[Any]) -> str:
    if isinstance(node, And):
        return "(" + " AND ".join(_compile(n, fields, params) for n in node.all_of) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(_compile(n, fields, params) for n in node.any_of) + ")"
    if isinstance(node, Not):
        return "(NOT " + _compile(node.negated, fields, params) + ")"
    if node.field not in fields:
        raise FilterError(
            f"filter names unknown field {node.field!r}; fields of this collection: "
            f"{', '.join(sorted(fields))}"
        )
    column, op, value = quote(node.field), node.op, node.value
    if op in ("is_null", "not_null"):
        return f"({column} IS {'NOT ' if op == 'not_null' else ''}NULL)"
    if value is None:
        raise FilterError(f"filter on {node.field!r} with op {op!r} needs a value "
                          "(use op 'is_null' to test for missing values)")
    if op in ("in", "not_in"):
        if not isinstance(value, list | tuple) or not value:
            raise FilterError(f"op {op!r} on {node.field!r} needs a non-empty list of values")
        params.append(list(value))
        return f"({'NOT ' if op == 'not_in' else ''}list_contains(?, {column}))"
    if op == "contains":
        params.append(value)
        if fields[node.field].endswith("[]"):
            return f"list_contains({column}, ?)"
        return f"contains(CAST({column} AS VARCHAR), CAST(? AS VARCHAR))"
    params.append(value)
    return f"({column} {_COMPARISONS[op]} ?)"


def _check_raw(where: SqlWhere) -> CompiledFilter:
    sql = where.sql.strip()
    if not sql:
        raise FilterError("empty SQL filter; pass None for no filter")
    with translated(f"SQL filter {sql!r} does not parse", caller=FilterError):
        statements = duckdb.extract_statements(f"SELECT 1 FROM (SELECT 1) AS t WHERE ({sql})")
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise FilterError(
            f"SQL filter {sql!r} must be one WHERE condition (no ';', no other statements)")
    return CompiledFilter(f"({sql})", [])
