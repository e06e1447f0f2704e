"""What a newcomer's commands rely on: an ingest named after its file, the store's only
collection as the default of every other command, hints that run as printed, and a demo re-run
that does not re-measure."""

from __future__ import annotations

import json
import shlex

from rich.console import Console
from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.api.demo import QUALITY_CACHE, run_demo

runner = CliRunner()
FAKE = ["--encoder", "fake:dim=64"]
DOCS = [{"id": f"doc{i}", "text": f"{word} tools for the terminal number {i}"}
        for i, word in enumerate(["audio", "video", "text", "network", "image", "mail"] * 3)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_ingest_names_the_collection_after_its_file_and_commands_default_to_it(tmp_path):
    store = str(tmp_path / "store")
    notes = write_jsonl(tmp_path / "notes.jsonl", DOCS[:9])
    first = runner.invoke(app, ["ingest", str(notes), *FAKE, "--store", store])
    assert first.exit_code == 0, first.output
    assert "new collection 'notes'" in first.output
    write_jsonl(notes, DOCS)  # the same file grown: the same collection, nothing announced
    second = runner.invoke(app, ["ingest", str(notes), *FAKE, "--store", store])
    assert second.exit_code == 0 and "new collection" not in second.output, second.output
    listed = json.loads(runner.invoke(app, ["collections", "--store", store, "--json"]).stdout)
    assert [c["name"] for c in listed] == ["notes"]
    hits = json.loads(runner.invoke(app, ["search", "mail", "--store", store, "--json"]).stdout)
    assert {h["id"] for h in hits} & {"doc5", "doc11", "doc17"}


def test_a_store_of_several_collections_asks_which_naming_them(tmp_path):
    store = str(tmp_path / "store")
    for name in ("alpha", "beta"):
        path = write_jsonl(tmp_path / f"{name}.jsonl", DOCS)
        assert runner.invoke(app, ["ingest", str(path), *FAKE, "--store", store]).exit_code == 0
    result = runner.invoke(app, ["search", "mail", "--store", store])
    assert result.exit_code == 2
    assert "alpha, beta" in result.output and "--collection NAME" in result.output
    assert "Traceback" not in result.output


def test_an_analysis_prints_a_runs_show_hint_that_works_as_printed(tmp_path):
    store = str(tmp_path / "my store")
    path = write_jsonl(tmp_path / "tools.jsonl", DOCS)
    assert runner.invoke(app, ["ingest", str(path), *FAKE, "--store", store]).exit_code == 0
    result = runner.invoke(app, ["cluster", "-k", "3", "--store", store])
    assert result.exit_code == 0, result.output
    hint = next(line for line in result.output.splitlines() if "runs show" in line)
    words = shlex.split(hint.split(": ", 1)[1])
    assert words[0] == "kinsight" and "--collection" in words and store in words
    shown = runner.invoke(app, words[1:])
    assert shown.exit_code == 0, shown.output
    assert "cluster" in shown.output


def test_a_demo_rerun_reuses_its_quality_figures_until_the_collection_changes(tmp_path):
    store = tmp_path / "demo"
    console = Console(record=True, width=200)
    run_demo(store, console, limit=30)
    cached = json.loads((store / QUALITY_CACHE).read_text())
    run_demo(store, console, limit=30)
    second = console.export_text()
    assert "measured earlier" in second
    assert json.loads((store / QUALITY_CACHE).read_text()) == cached
    run_demo(store, console, limit=35)  # five more items: a new generation, measured again
    assert json.loads((store / QUALITY_CACHE).read_text()) != cached


def test_help_shows_no_value_type_on_plain_flags_and_reflows_docstrings():
    for command in (["--help"], ["search", "--help"], ["runs", "show", "--help"]):
        result = runner.invoke(app, command, env={"COLUMNS": "200"})
        assert result.exit_code == 0
        assert "<bool>" not in result.output, command
    anomalies = runner.invoke(app, ["anomalies", "--help"], env={"COLUMNS": "200"}).output
    # one paragraph of the docstring on one line at 200 columns: no line break mid-sentence
    assert "scored without itself), so --threshold 95" in anomalies


def test_the_lazy_command_list_is_every_command_with_the_start_of_its_own_help():
    from kinsight.api.cli.app import COMMANDS, full_group

    commands = full_group().commands
    assert set(commands) == set(COMMANDS)
    for name, (_, summary) in COMMANDS.items():
        own = " ".join((commands[name].help or "").split("\n\n")[0].split())
        assert own.startswith(summary.rstrip(".")), (name, own)


def test_help_lists_the_commands_without_importing_the_engine():
    import subprocess
    import sys

    code = ("import sys; from kinsight.api.cli import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('engine' if 'kinsight.engine' in sys.modules else 'no engine')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"COLUMNS": "100", "PATH": ""}, check=True)
    assert "mismatch" in done.stdout and done.stdout.strip().endswith("no engine")
