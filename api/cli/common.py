"""What every command shares: the Typer app (whose group reports every error in one line, see
errors.py), the consoles, the common options, opening a store and the choice-option check."""

from __future__ import annotations

import shlex
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from tqdm import tqdm

from kinsight.engine import DATABASE_FILE, Collection, Progress, Store

from .app import app
from .errors import print_error

__all__ = [
    "DEFAULT_STORE",
    "CollectionOpt",
    "JsonOpt",
    "SpaceOpt",
    "StoreOpt",
    "WhereOpt",
    "app",
    "check_store_path",
    "console",
    "err",
    "fail",
    "kinsight_command",
    "one_of",
    "open_store",
    "pick_collection",
    "print_run_hint",
    "progress_bar",
]

console = Console()
err = Console(stderr=True)

StoreOpt = Annotated[Path, typer.Option(
    "--store", envvar="KINSIGHT_STORE", help="Store directory (created on first ingest).")]
CollectionOpt = Annotated[str | None, typer.Option(
    "--collection", "-c", help="Collection name (default: the store's only collection).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
WhereOpt = Annotated[str | None, typer.Option(
    help="SQL WHERE over the fields, e.g. \"section = 'python'\" (trusted local use).")]
SpaceOpt = Annotated[str | None, typer.Option(help="Vector space (default: the only one).")]
DEFAULT_STORE = Path("kinsight-store")


@contextmanager
def open_store(path: Path, *, read_only: bool = False, create: bool = False) -> Iterator[Store]:
    """Open the store at ``--store`` once ``check_store_path`` accepts it.

    Only ``create`` (ingest, serve) makes a new store: any other command given a path without
    one fails saying so, instead of leaving an empty store behind a mistyped path. Errors raised
    inside are reported by the app's one handler (errors.py), after the store is closed.
    """
    check_store_path(path, must_exist=not create)
    with Store(path, read_only=read_only) as store:
        yield store


@contextmanager
def progress_bar(description: str, *, enabled: bool = True, unit: str = "steps"
                 ) -> Iterator[Progress]:
    """A bar on stderr that an engine operation's ``progress`` callback moves (none when not
    ``enabled``, e.g. under ``--json``), counting ``unit``. It appears with the first step, so an
    operation that fails before it starts leaves only its error on the terminal."""
    bars: list[tqdm] = []

    def advance(done: int, total: int, stage: str) -> None:
        if not enabled:
            return
        if not bars:
            bars.append(tqdm(desc=description, total=total, unit=f" {unit}", leave=False))
        bar = bars[0]
        bar.total = total
        bar.set_postfix_str(stage, refresh=False)
        bar.update(done - bar.n)

    try:
        yield advance
    finally:
        for bar in bars:
            bar.close()


def check_store_path(path: Path, *, must_exist: bool) -> None:
    """Fail with the fix when ``--store`` cannot be a store: a file (or a path through one), or,
    with ``must_exist``, a folder that holds none."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        what = "is a file" if existing == path else f"goes through {existing}, which is a file"
        fail(f"--store {path} {what}; a store is a folder (kinsight ingest creates it): give a "
             "folder's path, or move the file away")
    if must_exist and not (path / DATABASE_FILE).is_file():
        fail(f"no kinsight store at {path} (no {DATABASE_FILE} there): give --store, or set "
             f"$KINSIGHT_STORE, to the folder you ingested into, or make one with "
             f"kinsight ingest FILE --store {path}")


def pick_collection(store: Store, name: str | None) -> Collection:
    """The collection ``--collection`` names or, left out, the store's only one; several (or
    none) fail saying which there are."""
    if name is None:
        names = store.list_collections()
        if len(names) != 1:
            which = (f"collections {', '.join(names)}" if names
                     else "no collection yet (kinsight ingest FILE makes one)")
            fail(f"the store {store.path} holds {which}: choose one with --collection NAME")
        name = names[0]
    return store.collection(name)


def kinsight_command(*words: str | Path, store: Path | None = None) -> str:
    """A command line to paste: ``kinsight`` when it is on PATH, else the path this process was
    started as (e.g. .venv/bin/kinsight), then ``words`` and ``--store`` unless it is the default."""
    started_as = sys.argv[0]
    on_path = shutil.which("kinsight") is not None
    program = started_as if Path(started_as).name == "kinsight" and not on_path else "kinsight"
    if store is not None and store != DEFAULT_STORE:
        words = (*words, "--store", store)
    return shlex.join([program, *map(str, words)])


def print_run_hint(run_id: str, seconds: float, collection: str, store: Path) -> None:
    """The line after an analysis: its run id and the command that reads the run back."""
    command = kinsight_command("runs", "show", run_id, "--collection", collection, store=store)
    console.print(f"run {run_id} ({seconds:.1f} s): {command}", highlight=False, soft_wrap=True)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr, on one line, and leave with status 2."""
    print_error(message)
    raise typer.Exit(2)


def one_of(option: str, value: str, choices: tuple[str, ...]) -> Any:
    """``value`` if it is one of ``choices``, else a usage error naming them."""
    if value not in choices:
        raise typer.BadParameter(f"{option} must be one of {', '.join(choices)}, not {value!r}")
    return value
