"""What every command shares: the Typer app (whose group reports every error in one line, see
errors.py), the consoles, the common options, opening a store and the choice-option check."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from kinsight.engine import Store

from .errors import KinsightGroup, print_error

__all__ = [
    "DEFAULT_STORE",
    "CollectionOpt",
    "JsonOpt",
    "SpaceOpt",
    "StoreOpt",
    "WhereOpt",
    "app",
    "console",
    "err",
    "fail",
    "one_of",
    "open_store",
]

app = typer.Typer(
    name="kinsight",
    help="Embedding search, recommendations and data quality over your documents and "
         "pictures: ingest files, then search them (by meaning, keywords or both, by text or "
         "picture), recommend similar items, cluster, score anomalies and mismatches, and write "
         "reports; the same from Python and HTTP (kinsight serve).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=KinsightGroup,
)

console = Console()
err = Console(stderr=True)

StoreOpt = Annotated[Path, typer.Option(
    "--store", envvar="KINSIGHT_STORE", help="Store directory (created on first ingest).")]
CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
WhereOpt = Annotated[str | None, typer.Option(
    help="SQL WHERE over the fields, e.g. \"section = 'python'\" (trusted local use).")]
SpaceOpt = Annotated[str | None, typer.Option(help="Vector space (default: the only one).")]
DEFAULT_STORE = Path("kinsight-store")


@contextmanager
def open_store(path: Path, *, read_only: bool = False) -> Iterator[Store]:
    """Open the store; errors raised inside are reported by the app's one handler (errors.py),
    after the store is closed."""
    with Store(path, read_only=read_only) as store:
        yield store


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr, on one line, and leave with status 2."""
    print_error(message)
    raise typer.Exit(2)


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False
           ) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def one_of(option: str, value: str, choices: tuple[str, ...]) -> Any:
    """``value`` if it is one of ``choices``, else a usage error naming them."""
    if value not in choices:
        raise typer.BadParameter(f"{option} must be one of {', '.join(choices)}, not {value!r}")
    return value
