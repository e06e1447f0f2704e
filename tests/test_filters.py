from __future__ import annotations

import pytest

from kinsight.engine import FilterError, SqlWhere
from kinsight.engine.filters import compile_filter

FIELDS = {"section": "VARCHAR", "n": "BIGINT", "tags": "VARCHAR[]"}


def ids(collection, where):
    return sorted(collection.ids_matching(where), key=lambda i: int(i[1:]))


def test_values_are_bound_as_parameters_never_spliced():
    compiled = compile_filter({"field": "section", "op": "eq", "value": "x' OR 1=1 --"}, FIELDS)
    assert compiled.sql == '("section" = ?)'
    assert compiled.params == ["x' OR 1=1 --"]


def test_unknown_field_lists_the_known_ones():
    with pytest.raises(FilterError, match=r"fields of this collection: id, n, section, tags"):
        compile_filter({"field": "nope", "value": 1}, FIELDS)


@pytest.mark.parametrize("bad", [
    {"field": "n", "op": "between", "value": 1},
    {"field": "n", "op": "in", "value": []},
    {"field": "n", "op": "gt"},
    {"and": []},
    {"field": "n", "value": 1, "extra": True},
])
def test_malformed_filters_are_refused(bad):
    with pytest.raises(FilterError):
        compile_filter(bad, FIELDS)


def test_structured_filters_select_the_right_items(filled):
    assert ids(filled, {"field": "n", "op": "lt", "value": 3}) == ["d0", "d1", "d2"]
    assert ids(filled, {"and": [{"field": "n", "op": "lt", "value": 6},
                                {"field": "group", "op": "in", "value": ["a", "c"]}]}) \
        == ["d0", "d2", "d3", "d5"]
    assert ids(filled, {"or": [{"field": "id", "value": "d7"},
                               {"not": {"field": "n", "op": "ge", "value": 2}}]}) \
        == ["d0", "d1", "d7"]
    assert len(filled.ids_matching({"field": "text", "op": "contains", "value": "cats"})) == 150


def test_raw_sql_is_one_where_clause_only(filled):
    assert ids(filled, "n BETWEEN 3 AND 5") == ["d3", "d4", "d5"]
    with pytest.raises(FilterError):
        filled.ids_matching(SqlWhere("1=1; DROP TABLE docs.items"))
    with pytest.raises(FilterError):
        filled.ids_matching("no_such_column = 1")
    assert filled.count() == 300


@pytest.mark.parametrize("sql", [
    "id IN (SELECT column0 FROM read_csv('/etc/passwd'))",
    "EXISTS (SELECT * FROM read_text('/etc/hostname'))",
])
def test_filters_cannot_read_files(filled, sql):
    with pytest.raises(FilterError, match=r"disabled|Permission"):
        filled.ids_matching(sql)
