"""Analysis runs: result tables tied to a run id, written whole or not at all."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest

from kinsight.engine import NotFoundError, Store, list_runs, read_run_table, save_run


def test_a_run_is_queryable_with_sql_and_joins_metadata(filled):
    scores = pa.table({"id": ["d3", "d1", "d2"], "score": [0.9, 0.5, 0.1]})
    run = save_run(filled, "anomalies", {"method": "knn", "k": 5}, {"scores": scores},
                   summary={"flagged": 1})
    assert run.run_id.startswith("anomalies-")
    # Read back in the order written, without the run id column.
    back = read_run_table(filled, run.run_id, "scores")
    assert back.column("id").to_pylist() == ["d3", "d1", "d2"]
    assert back.column_names == ["id", "score"]
    joined = filled.store.cursor().execute(
        f"SELECT s.id, i.n FROM {run.table_names['scores']} s JOIN docs.items i USING (id) "
        "WHERE s.run_id = ? AND s.score > 0.4 ORDER BY s.score DESC", [run.run_id]).fetchall()
    assert joined == [("d3", 3), ("d1", 1)]
    [listed] = list_runs(filled, "anomalies")
    assert listed.params == {"method": "knn", "k": 5} and listed.summary == {"flagged": 1}


def test_runs_append_and_a_later_run_may_add_columns(filled):
    first = save_run(filled, "cluster", {}, {"assignments": pa.table({"id": ["d1"], "c": [0]})})
    second = save_run(filled, "cluster", {}, {"assignments": pa.table(
        {"id": ["d1", "d2"], "c": [1, 1], "distance": [0.1, 0.2]})})
    assert read_run_table(filled, first.run_id, "assignments").num_rows == 1
    assert read_run_table(filled, second.run_id, "assignments").column("distance").to_pylist() \
        == [0.1, 0.2]
    assert list_runs(filled)[0].run_id == second.run_id


def test_unknown_runs_and_tables_are_named_in_the_error(filled):
    run = save_run(filled, "cluster", {}, {"assignments": pa.table({"id": ["d1"]})})
    with pytest.raises(NotFoundError, match="no run 'nope'"):
        read_run_table(filled, "nope", "assignments")
    with pytest.raises(NotFoundError, match="has no table 'sizes'; it has assignments"):
        read_run_table(filled, run.run_id, "sizes")


def test_a_failed_run_leaves_nothing(filled):
    save_run(filled, "cluster", {}, {"sizes": pa.table({"size": [3]})})
    # The second table cannot go in (text into an integer column): the first must not either.
    with pytest.raises(Exception):  # noqa: B017 - DuckDB's conversion error
        save_run(filled, "cluster", {}, {"assignments": pa.table({"id": ["d1"]}),
                                         "sizes": pa.table({"size": ["many"]})})
    assert len(list_runs(filled)) == 1
    assert not filled.store.scalar(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'cluster_assignments'")


def test_dropping_a_collection_drops_its_runs(tmp_path):
    with Store(tmp_path / "s") as store:
        coll = store.create_collection("docs")
        save_run(coll, "cluster", {}, {"assignments": pa.table({"id": ["x"]})})
        store.drop_collection("docs")
        coll = store.create_collection("docs")
        assert list_runs(coll) == []


def test_run_times_carry_their_utc_offset(filled):
    saved = save_run(filled, "cluster", {}, {"assignments": pa.table({"id": ["d1"]})})
    [listed] = list_runs(filled)
    for when in (saved.created_at, listed.created_at):
        assert when.utcoffset() == timedelta(0), when
    assert listed.created_at == saved.created_at.replace(microsecond=listed.created_at.microsecond)
