"""No traceback reaches a user from the CLI: every command, given a bad store or a bad collection
name, prints one ``error:`` line without loading a model first; an unexpected error prints one
line naming the log file its traceback went to."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.api.cli.app import full_group
from kinsight.api.cli.errors import _redacted
from kinsight.engine import Store, encoders

runner = CliRunner()

# Minimal arguments that get each command as far as opening the store; {name} is a file made by
# the `files` fixture. Where a command can load a model, the arguments take that path (zero-shot
# labels, label prompts, new targets) so the guard below sees it if it loads one too early.
EXTRA_ARGS: dict[tuple[str, ...], list[str]] = {
    ("align",): ["--from", "image", "--to", "caption", "--name", "x"],
    ("anomalies",): ["--targets", "{docs}"],
    ("classify",): ["--zero-shot", "editor,sound"],
    ("cluster",): ["--label", "text editors"],
    ("collections",): [],
    ("collections", "drop"): ["--yes"],
    ("demo",): [],
    ("embed",): ["{docs}", "--out", "{html}"],
    ("evaluate",): ["--queries", "{queries}", "--qrels", "{qrels}"],
    ("ingest",): ["{docs}", "--encoder", "fake:dim=8"],
    ("interactions", "ingest"): ["{interactions}"],
    ("mismatch", "duplicates"): [],
    ("predict",): ["{docs}"],
    ("mismatch", "labels"): ["--label-field", "section"],
    ("mismatch", "pairs"): ["--a", "text", "--b", "text"],
    ("model", "prepare"): ["{docs}", "--encoder", "fake:dim=8"],
    ("recommend",): ["--like", "vim"],
    ("report", "anomalies"): ["--out", "{html}"],
    ("report", "clusters"): ["--out", "{html}"],
    ("runs",): [],
    ("runs", "show"): ["latest"],
    ("search",): ["text editor"],
    ("serve",): [],
    ("tune",): ["--queries", "{queries}", "--qrels", "{qrels}"],
}
CREATES_STORE = {("ingest",), ("demo",), ("serve",)}  # a missing folder is fine for these
CREATES_COLLECTION = {("ingest",)}  # and an unknown collection for this one
NAME_ARGUMENT = {("collections", "drop")}  # the collection is NAME, not --collection
NO_STORE = {("model", "prepare")}  # reads no store (test_text_variants.py checks its errors)


def cli_commands() -> dict[tuple[str, ...], Any]:
    """Every command a user can run, by its words (``("runs", "show")``), groups that run on
    their own (``kinsight runs``) included."""
    found: dict[tuple[str, ...], Any] = {}

    def walk(command: Any, words: tuple[str, ...]) -> None:
        subcommands = getattr(command, "commands", None)
        if words and (subcommands is None or command.invoke_without_command):
            found[words] = command
        for name, sub in (subcommands or {}).items():
            walk(sub, (*words, name))

    walk(full_group(), ())
    return found


COMMANDS = cli_commands()


def takes_collection(words: tuple[str, ...]) -> bool:
    return words in NAME_ARGUMENT or any("--collection" in getattr(p, "opts", ())
                                         for p in COMMANDS[words].params)


def cases() -> list[Any]:
    found = []
    for words in sorted(set(COMMANDS) - NO_STORE):
        problems = ["store is a file"]
        if words not in CREATES_STORE:
            problems.append("store is missing")
        if takes_collection(words):
            problems.append("invalid collection name")
            if words not in CREATES_COLLECTION:
                problems.append("unknown collection")
        found += [pytest.param(words, p, id=f"{' '.join(words)}: {p}") for p in problems]
    return found


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Input files, and a store holding one collection (docs), made once for the module."""
    root = tmp_path_factory.mktemp("cli-errors")
    docs = root / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(d) for d in [
        {"id": "vim", "text": "a text editor", "section": "editors"},
        {"id": "sox", "text": "sound processing", "section": "sound"}]) + "\n")
    (root / "queries.jsonl").write_text('{"qid": "q1", "text": "editor"}\n')
    (root / "qrels.tsv").write_text("qid\tdoc_id\trel\nq1\tvim\t1\n")
    (root / "interactions.jsonl").write_text('{"user": "u1", "item": "vim"}\n')
    (root / "a-file").write_text("not a store\n")
    store = root / "store"
    made = runner.invoke(app, ["ingest", str(docs), "--encoder", "fake:dim=8", "--store",
                               str(store)])
    assert made.exit_code == 0, made.output
    return {"root": root, "docs": docs, "queries": root / "queries.jsonl",
            "qrels": root / "qrels.tsv", "interactions": root / "interactions.jsonl",
            "html": root / "report.html", "file": root / "a-file", "store": store}


@pytest.fixture
def log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tracebacks go to a file of the test, never to the developer's ~/.local/state."""
    path = tmp_path / "logs" / "kinsight.log"
    monkeypatch.setenv("KINSIGHT_LOG", str(path))
    return path


@pytest.fixture
def models_loaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The encoder specs loaded during the test (each refused, so none takes time)."""
    loaded: list[str] = []

    def refuse() -> dict[str, Any]:
        loaded.append("an encoder")
        raise AssertionError("a model was loaded before the store and names were checked")

    monkeypatch.setattr(encoders, "_cache", {})
    monkeypatch.setattr(encoders, "_factories", refuse)
    return loaded


def assert_one_error_line(result: Any, exit_code: int = 2) -> str:
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.exit_code == exit_code, result.output
    return str(lines[0])


def test_the_table_lists_every_command():
    assert set(COMMANDS) == set(EXTRA_ARGS), "add the new command's minimal arguments to EXTRA_ARGS"


@pytest.mark.parametrize(("words", "problem"), cases())
def test_bad_store_or_collection_is_one_error_line(words, problem, files, log_file,
                                                   models_loaded):
    store = {"store is a file": files["file"],
             "store is missing": files["root"] / "no-store-here"}.get(problem, files["store"])
    name = {"invalid collection name": "no such!", "unknown collection": "missing"}.get(
        problem, "docs")
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in EXTRA_ARGS[words]]
    if words in NAME_ARGUMENT:
        args.insert(0, name)
    elif takes_collection(words):
        args += ["--collection", name]
    line = assert_one_error_line(runner.invoke(app, [*words, *args, "--store", str(store)]))
    expected = {"store is a file": "is a file", "store is missing": "no kinsight store",
                "invalid collection name": "no such!", "unknown collection": "missing"}[problem]
    assert expected in line
    assert models_loaded == []
    assert not log_file.exists()  # expected errors are no news for the log


def test_real_entry_point_prints_one_line(files, log_file):
    kinsight = shutil.which("kinsight", path=str(Path(sys.executable).parent))
    assert kinsight is not None, "install the package (scripts/setup.sh) for its entry point"
    done = subprocess.run([kinsight, "collections", "--store", str(files["file"])],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"error: --store {files['file']} is a file; a store is a folder (kinsight ingest creates "
        "it): give a folder's path, or move the file away"]


def break_listing(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    def broken(self: Store) -> list[str]:
        raise error

    monkeypatch.setattr(Store, "list_collections", broken)


def test_unexpected_error_writes_its_traceback_to_the_log(files, log_file, monkeypatch):
    break_listing(monkeypatch, RuntimeError("boom\nand a second line"))
    result = runner.invoke(app, ["collections", "--store", str(files["store"])])
    line = assert_one_error_line(result, exit_code=1)
    assert line == (f"error: unexpected RuntimeError: boom and a second line; details in "
                    f"{log_file} (run with -v to see them here)")
    logged = log_file.read_text()
    assert f"command: kinsight collections --store {files['store']}" in logged
    assert "Traceback (most recent call last)" in logged
    assert "in broken" in logged and logged.rstrip().endswith("RuntimeError: boom\nand a second line")

    again = runner.invoke(app, ["-v", "collections", "--store", str(files["store"])])
    assert again.exit_code == 1
    assert "Traceback (most recent call last)" in again.stderr and "in broken" in again.stderr
    assert again.stderr.strip().splitlines()[-1] == line
    assert log_file.read_text().count("Traceback") == 2  # appended, not replaced


def test_log_defaults_to_the_xdg_state_folder(files, tmp_path, monkeypatch):
    monkeypatch.delenv("KINSIGHT_LOG", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    break_listing(monkeypatch, KeyError("x"))
    line = assert_one_error_line(runner.invoke(app, ["collections", "--store",
                                                     str(files["store"])]), exit_code=1)
    log = tmp_path / "state" / "kinsight" / "kinsight.log"
    assert line.startswith("error: unexpected KeyError: 'x'; details in") and str(log) in line
    assert "KeyError: 'x'" in log.read_text()


def test_a_log_that_cannot_be_written_is_said_so(files, monkeypatch):
    monkeypatch.setenv("KINSIGHT_LOG", str(files["file"] / "kinsight.log"))  # under a file
    break_listing(monkeypatch, ValueError("bad"))
    line = assert_one_error_line(runner.invoke(app, ["collections", "--store",
                                                     str(files["store"])]), exit_code=1)
    assert line.startswith("error: unexpected ValueError: bad; could not write the details to")
    assert "run with -v to see them here" in line


def test_interrupt_is_one_word_and_status_130(files, log_file, monkeypatch):
    break_listing(monkeypatch, KeyboardInterrupt())
    result = runner.invoke(app, ["collections", "--store", str(files["store"])])
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted" and "Traceback" not in result.output
    assert not log_file.exists()


def test_a_file_the_user_named_is_an_expected_error(files, log_file):
    result = runner.invoke(app, ["evaluate", "--queries", str(files["root"]), "--qrels",
                                 str(files["qrels"]), "--store", str(files["store"])])
    line = assert_one_error_line(result)
    assert str(files["root"]) in line and "give a file, not a folder" in line
    assert not log_file.exists()


def test_usage_errors_keep_typer_usage_message(log_file):
    result = runner.invoke(app, ["search", "--no-such-option"])
    assert result.exit_code == 2
    assert "No such option" in result.output and "Usage:" in result.output
    assert "error: unexpected" not in result.output and "Traceback" not in result.output


def test_error_lines_are_not_read_as_markup_or_wrapped(files, log_file, monkeypatch):
    from kinsight.engine import EncoderError

    break_listing(monkeypatch, EncoderError("install it: pip install 'kinsight[text]' " + "x" * 200))
    line = assert_one_error_line(runner.invoke(app, ["collections", "--store",
                                                     str(files["store"])]))
    assert "'kinsight[text]'" in line and line.endswith("x" * 200)


def test_secrets_are_not_logged():
    assert _redacted(["serve", "--api-key", "s3cret", "--port", "1"]) == [
        "serve", "--api-key", "***", "--port", "1"]
    assert _redacted(["serve", "--api-key=s3cret"]) == ["serve", "--api-key=***"]
