"""Ranking metrics against values computed by hand, and the qrels/queries readers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kinsight.engine import evaluation
from kinsight.engine.errors import InvalidInputError, NotFoundError
from kinsight.engine.evaluation import (
    Query,
    evaluate_run,
    load_clicks,
    load_qrels,
    load_queries,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)

# ---------------------------------------------------------------- metrics


def test_perfect_ranking_scores_one() -> None:
    rels = {"a": 1, "b": 1}
    assert ndcg_at_k(["a", "b", "c"], rels) == pytest.approx(1.0)
    assert recall_at_k(["a", "b", "c"], rels) == pytest.approx(1.0)
    assert mrr_at_k(["a", "b", "c"], rels) == pytest.approx(1.0)


def test_relevant_at_rank_two() -> None:
    ranked = ["x", "a", "y"]
    rels = {"a": 1}
    assert ndcg_at_k(ranked, rels) == pytest.approx(1 / math.log2(3))
    assert mrr_at_k(ranked, rels) == pytest.approx(0.5)
    assert recall_at_k(ranked, rels) == pytest.approx(1.0)


def test_relevant_missing_or_beyond_cutoff_scores_zero() -> None:
    rels = {"a": 1}
    assert ndcg_at_k(["x", "y"], rels) == 0.0
    assert mrr_at_k(["x", "y"], rels) == 0.0
    assert recall_at_k(["x", "y"], rels) == 0.0
    # "a" is at rank 3, outside k=2.
    assert ndcg_at_k(["x", "y", "a"], rels, k=2) == 0.0
    assert mrr_at_k(["x", "y", "a"], rels, k=2) == 0.0
    assert recall_at_k(["x", "y", "a"], rels, k=2) == 0.0
    assert ndcg_at_k([], rels) == 0.0


def test_graded_relevance_uses_linear_gain() -> None:
    rels = {"a": 3, "b": 1, "c": 0}
    # Ranking b, c, a: DCG = 1/log2(2) + 0 + 3/log2(4) = 1 + 1.5 = 2.5.
    # Ideal a, b: IDCG = 3/log2(2) + 1/log2(3).
    expected = 2.5 / (3 + 1 / math.log2(3))
    assert ndcg_at_k(["b", "c", "a"], rels) == pytest.approx(expected)
    assert mrr_at_k(["c", "b", "a"], rels) == pytest.approx(0.5)  # grade 0 is not relevant
    assert recall_at_k(["a", "x"], rels, k=2) == pytest.approx(0.5)


def test_ideal_dcg_is_cut_at_k() -> None:
    # Three relevant docs, k=2: the ideal list holds only two, so two hits are perfect.
    rels = {"a": 1, "b": 1, "c": 1}
    assert ndcg_at_k(["a", "b"], rels, k=2) == pytest.approx(1.0)
    assert recall_at_k(["a", "b"], rels, k=2) == pytest.approx(2 / 3)


def test_duplicates_count_once() -> None:
    rels = {"a": 1}
    assert ndcg_at_k(["a", "a", "a"], rels) == pytest.approx(1.0)
    # The duplicate of "x" does not take a rank: "a" is second.
    assert mrr_at_k(["x", "x", "a"], rels) == pytest.approx(0.5)


def test_no_relevant_documents_scores_zero() -> None:
    assert ndcg_at_k(["a"], {}) == 0.0
    assert recall_at_k(["a"], {"a": 0}) == 0.0
    assert mrr_at_k(["a"], {"a": 0}) == 0.0


@pytest.mark.parametrize("k", [0, -1, True, 2.5])
def test_bad_k_is_rejected(k: object) -> None:
    with pytest.raises(InvalidInputError, match="k must be"):
        ndcg_at_k(["a"], {"a": 1}, k=k)  # type: ignore[arg-type]


# ---------------------------------------------------------------- evaluate_run


def test_evaluate_run_averages_and_counts_missing_as_zero() -> None:
    qrels = {
        "q1": {"a": 1},
        "q2": {"b": 1},
        "q3": {"c": 1},  # absent from the run: scores 0
        "q4": {"d": 0},  # no relevant document: not averaged over
    }
    run = {
        "q1": ["a", "x"],
        "q2": ["x", "b"],
        "q4": ["d"],
        "extra": ["a"],  # not judged: ignored
    }
    result = evaluate_run(run, qrels)
    assert list(result) == ["ndcg@10", "recall@10", "recall@100", "mrr@10", "queries"]
    assert result["queries"] == 3.0
    assert result["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert result["mrr@10"] == pytest.approx(1.5 / 3)
    assert result["recall@10"] == pytest.approx(2 / 3)
    assert result["recall@100"] == pytest.approx(2 / 3)


def test_evaluate_run_recall_at_each_cutoff() -> None:
    qrels = {"q": {"a": 1}}
    run = {"q": ["x", "y", "a"]}
    result = evaluate_run(run, qrels, ks=(3, 2))
    assert set(result) == {"ndcg@2", "recall@2", "recall@3", "mrr@2", "queries"}
    assert result["recall@2"] == 0.0
    assert result["recall@3"] == 1.0
    assert result["mrr@2"] == 0.0


def test_evaluate_run_rejects_nothing_to_evaluate() -> None:
    with pytest.raises(InvalidInputError, match="no query"):
        evaluate_run({"q": ["a"]}, {"q": {"a": 0}})
    with pytest.raises(InvalidInputError, match="ks"):
        evaluate_run({"q": ["a"]}, {"q": {"a": 1}}, ks=())


# ---------------------------------------------------------------- files


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_qrels(tmp_path: Path) -> None:
    path = _write(tmp_path, "qrels.tsv",
                  "qid\tdoc_id\trel\nq1\ta\t1\nq1\tb\t2\nq2\tc\t-1\n\nq3\td\t0\n")
    assert load_qrels(path) == {"q1": {"a": 1, "b": 2}, "q2": {"c": 0}, "q3": {"d": 0}}


def test_load_qrels_accepts_crlf(tmp_path: Path) -> None:
    path = tmp_path / "qrels.tsv"
    path.write_bytes(b"qid\tdoc_id\trel\r\nq1\ta\t1\r\n")
    assert load_qrels(path) == {"q1": {"a": 1}}


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("q1\ta\t1\n", 1, "header"),
        ("qid\tdoc_id\trel\nq1\ta\n", 2, "3 tab-separated fields"),
        ("qid\tdoc_id\trel\nq1\ta\t1\nq2\tb\tyes\n", 3, "integer"),
        ("qid\tdoc_id\trel\nq1\t\t1\n", 2, "empty"),
        ("qid\tdoc_id\trel\nq1\ta\t1\nq1\ta\t0\n", 3, "twice"),
    ],
)
def test_load_qrels_malformed_names_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = _write(tmp_path, "qrels.tsv", text)
    with pytest.raises(InvalidInputError, match=message) as info:
        load_qrels(path)
    assert str(path) in str(info.value)
    assert f"line {line}" in str(info.value)


def test_load_qrels_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        load_qrels(_write(tmp_path, "qrels.tsv", ""))


def test_missing_files_raise_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"nope\.tsv"):
        load_qrels(tmp_path / "nope.tsv")
    with pytest.raises(NotFoundError, match=r"nope\.jsonl"):
        load_queries(tmp_path / "nope.jsonl")


def test_load_queries(tmp_path: Path) -> None:
    path = _write(tmp_path, "queries.jsonl",
                  '{"qid": "q1", "text": "chess engine", "lang": "en"}\n\n'
                  '{"qid": "q2", "text": "pdf viewer"}\n')
    assert load_queries(path) == [Query("q1", "chess engine"), Query("q2", "pdf viewer")]


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["q2", "text"]', "JSON object"),
        ('{"qid": "q2"}', "'text'"),
        ('{"qid": 2, "text": "x"}', "'qid'"),
        ('{"qid": "q2", "text": "  "}', "'text'"),
        ('{"qid": "q1", "text": "again"}', "repeats"),
    ],
)
def test_load_queries_malformed_names_file_and_line(
    tmp_path: Path, second_line: str, message: str
) -> None:
    path = _write(tmp_path, "queries.jsonl", '{"qid": "q1", "text": "ok"}\n' + second_line + "\n")
    with pytest.raises(InvalidInputError, match=message) as info:
        load_queries(path)
    assert str(path) in str(info.value)
    assert "line 2" in str(info.value)


def test_public_names() -> None:
    for name in evaluation.__all__:
        assert hasattr(evaluation, name)


def test_clicks_become_one_judged_query_per_distinct_text(tmp_path):
    path = tmp_path / "clicks.jsonl"
    path.write_text('{"query": "PDF viewer", "id": "evince"}\n\n'
                    '{"query": "pdf  viewer ", "id": "okular", "user": "u1"}\n'
                    '{"query": "pdf viewer", "id": "evince"}\n'
                    '{"query": "chess", "id": "stockfish"}\n')
    queries, qrels = load_clicks(path)
    assert queries == [Query("click-1", "PDF viewer"), Query("click-2", "chess")]
    assert qrels == {"click-1": {"evince": 1, "okular": 1}, "click-2": {"stockfish": 1}}
    tsv = tmp_path / "clicks.tsv"
    tsv.write_text("id\tquery\nevince\tPDF viewer\n")
    assert load_clicks(tsv) == ([Query("click-1", "PDF viewer")], {"click-1": {"evince": 1}})


@pytest.mark.parametrize(("name", "content", "message"), [
    ("c.jsonl", '{"query": "x", "id": "a"}\n{"query": "y"}\n', "line 2: a click needs"),
    ("c.jsonl", "", "holds no clicks"),
    ("c.csv", "text,doc\nx,a\n", "columns query and id"),
    ("c.csv", "query,id\nx,\n", "line 2: a click needs"),
])
def test_bad_clicks_name_the_file_line_and_fix(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InvalidInputError, match=message):
        load_clicks(path)
