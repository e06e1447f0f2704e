"""Tables on a narrow terminal never cut an id: ids are copied from them into --like, --run, SQL."""

from __future__ import annotations

import json

from rich.console import Console
from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.api.reporting import print_hits
from kinsight.engine import Hit

runner = CliRunner()
LONG_ID = "kodi-audiodecoder-openmpt-with-a-very-long-name"


def test_hits_keep_a_long_id_whole_on_a_narrow_terminal():
    console = Console(width=50, record=True)
    hits = [Hit(LONG_ID, 0.9, {"text": "a decoder of tracker music " * 6}), Hit("vim", 0.5, {})]
    print_hits(console, hits, title="search")
    assert LONG_ID in console.export_text()


def test_runs_and_mismatch_tables_keep_ids_whole(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": f"{LONG_ID}-{i}", "text": f"text {i % 3} words",
                                        "label": "a" if i % 2 else "b"}) + "\n"
                            for i in range(30)))
    store = ["--store", str(tmp_path / "store")]
    assert runner.invoke(app, ["ingest", str(docs), "--encoder", "fake:dim=64", *store]).exit_code == 0
    narrow = {"COLUMNS": "50"}
    clustered = runner.invoke(app, ["cluster", "-c", "docs", "-k", "2", "--json", *store])
    assert clustered.exit_code == 0, clustered.output
    run_id = json.loads(clustered.output)["run_id"]
    listed = runner.invoke(app, ["runs", "-c", "docs", *store], env=narrow)
    assert listed.exit_code == 0 and run_id in listed.output, listed.output
    labels = runner.invoke(app, ["mismatch", "labels", "--label-field", "label", "-c", "docs",
                                 *store], env=narrow)
    assert labels.exit_code == 0, labels.output
    shown = [line for line in labels.output.splitlines() if LONG_ID[:20] in line]
    assert shown and all(f"{LONG_ID}-" in line for line in shown)
