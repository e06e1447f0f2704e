"""The kinsight command line, end to end on small files (fake encoder; one real-model test)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.api.demo import demo_data

runner = CliRunner()
FAKE = ["--encoder", "fake:dim=256"]  # wide enough that hashed words rarely collide

DOCS = [
    {"id": "vim", "text": "Vi IMproved, a highly configurable text editor", "section": "editors"},
    {"id": "emacs", "text": "GNU Emacs, the extensible self-documenting text editor",
     "section": "editors"},
    {"id": "mpg123", "text": "console MPEG audio player for mp3 files", "section": "sound"},
    {"id": "sox", "text": "Swiss army knife of sound processing audio files", "section": "sound"},
]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "docs.jsonl"
    lines = [json.dumps(d) for d in DOCS]
    lines.insert(2, "{not json")
    lines.append(json.dumps({"text": "no id here"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def invoke(*args: str, store) -> object:
    return runner.invoke(app, [*args, "--store", str(store)])


def test_ingest_reports_problems_and_skips_unchanged(corpus, tmp_path):
    store = tmp_path / "store"
    result = invoke("ingest", str(corpus), *FAKE, "--json", store=store)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["written"] == 4
    assert [p["line"] for p in report["problems"]] == [3, 6]
    assert all(p["source"].endswith("docs.jsonl") for p in report["problems"])
    again = json.loads(invoke("ingest", str(corpus), *FAKE, "--json", store=store).stdout)
    assert again["written"] == 0 and again["unchanged"] == 4


def test_search_modes_filters_and_like(corpus, tmp_path):
    store = tmp_path / "store"
    invoke("ingest", str(corpus), *FAKE, store=store)
    for mode in ("dense", "bm25", "hybrid"):
        result = invoke("search", "audio player mp3", "--mode", mode, "-k", "2", "--json",
                        store=store)
        assert result.exit_code == 0, result.output
        hits = json.loads(result.stdout)
        assert hits[0]["id"] == "mpg123", (mode, hits)
        assert hits[0]["fields"]["section"] == "sound"
    filtered = json.loads(invoke("search", "text editor", "--where", "section = 'sound'",
                                 "--json", store=store).stdout)
    assert {h["id"] for h in filtered} <= {"mpg123", "sox"}
    similar = json.loads(invoke("search", "--like", "vim", "--mode", "dense", "-k", "1", "--json",
                                store=store).stdout)
    assert similar[0]["id"] == "emacs"


def test_batch_queries_write_one_line_per_query(corpus, tmp_path):
    store = tmp_path / "store"
    invoke("ingest", str(corpus), *FAKE, store=store)
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"qid": "q1", "text": "text editor"}\n{"qid": "q2", "text": "sound"}\n')
    out = tmp_path / "run.jsonl"
    result = invoke("search", "--queries", str(queries), "--out", str(out), "-k", "3", store=store)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["qid"] for line in lines] == ["q1", "q2"]
    assert len(lines[0]["ids"]) == 3 and len(lines[0]["scores"]) == 3
    assert lines[0]["ids"][0] in {"vim", "emacs"}
    assert "searched 2 queries in" in result.stderr and f"wrote {out}" in result.stderr
    to_stdout = invoke("search", "--queries", str(queries), "-k", "3", store=store)
    assert [json.loads(line)["qid"] for line in to_stdout.stdout.splitlines()] == ["q1", "q2"]


def test_collections_and_evaluate(corpus, tmp_path):
    store = tmp_path / "store"
    invoke("ingest", str(corpus), *FAKE, "--collection", "pkgs", store=store)
    listed = json.loads(invoke("collections", "--json", store=store).stdout)
    assert listed[0]["name"] == "pkgs" and listed[0]["count"] == 4
    assert listed[0]["spaces"][0]["encoder"] == "fake:dim=256"
    assert listed[0]["spaces"][0]["index"] == "Flat"
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"qid": "q1", "text": "mp3 audio player"}\n')
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("qid\tdoc_id\trel\nq1\tmpg123\t1\n")
    result = invoke("evaluate", "--collection", "pkgs", "--queries", str(queries), "--qrels",
                    str(qrels), "--json", store=store)
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert set(scores) == {"bm25", "dense", "hybrid:zscore", "hybrid:minmax", "hybrid:rrf"}
    assert scores["bm25"]["mrr@10"] == 1.0


def test_errors_are_one_line_with_exit_status_2(corpus, tmp_path):
    store = tmp_path / "store"
    invoke("ingest", str(corpus), *FAKE, store=store)
    missing = invoke("search", "x", "--collection", "nope", store=store)
    assert missing.exit_code == 2
    assert "no collection 'nope'" in missing.output and "Traceback" not in missing.output
    assert invoke("search", store=store).exit_code == 2
    bad_sql = invoke("search", "x", "--where", "1=1; DROP TABLE x", store=store)
    assert bad_sql.exit_code == 2 and "SQL filter '1=1; DROP TABLE x'" in bad_sql.output
    assert len(bad_sql.stderr.splitlines()) == 1  # DuckDB's "LINE 1: ... ^" tail is for -v
    other_model = invoke("ingest", str(corpus), "--encoder", "fake:dim=16", store=store)
    assert other_model.exit_code == 2 and "fake:dim=256" in other_model.output


def test_help_explains_commands():
    result = runner.invoke(app, ["--help"])
    for command in ("ingest", "search", "collections", "serve", "demo", "evaluate"):
        assert command in result.output
    assert "--queries" in runner.invoke(app, ["search", "--help"]).output


def test_real_model_finds_packages_by_description(tmp_path):
    """Integration: the bundled MiniLM, through the CLI, on real Debian descriptions."""
    sample = pq.read_table(demo_data() / "debian_sample.parquet").slice(0, 60)
    path = tmp_path / "sample.parquet"
    pq.write_table(sample, path)
    store = tmp_path / "store"
    result = invoke("ingest", str(path), "--collection", "debian", "--json", store=store)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["written"] == 60
    rows = sample.to_pylist()
    found = 0
    for row in rows[:10]:
        hits = json.loads(invoke("search", row["title"], "--collection", "debian", "--mode",
                                 "dense", "-k", "3", "--json", store=store).stdout)
        found += row["id"] in [h["id"] for h in hits]
    assert found >= 8  # the dense model finds most packages from their one-line summary


def test_skipped_lines_keep_text_in_square_brackets(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "fine"}) + "\n"
                    + json.dumps({"id": "b", "text": "odd", "x[bold]": 2}) + "\n")
    result = invoke("ingest", str(path), "--collection", "docs", *FAKE, store=tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert "'x[bold]'" in result.output  # not swallowed as console markup
