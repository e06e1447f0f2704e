"""The ``kinsight`` Typer app, loading each command's module only when that command runs.

A command module imports the engine (DuckDB, NumPy, FAISS: seconds on a small machine), which
``kinsight --help`` and a mistyped command do not need; so this module imports nothing of
kinsight but the error handler, lists the commands from ``COMMANDS`` with their one-line
summaries (tests/test_cli_defaults.py checks that each begins the command's own help), and imports a
command's module when it is invoked or asked for its own help. Click's ``LazyGroup`` recipe
does the same; Typer has no hook for it, hence the group below.
"""

from __future__ import annotations

import importlib
import logging
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from .errors import KinsightGroup, plain_flags

__all__ = ["COMMANDS", "app", "full_group"]

# Every top-level command: the module that registers it, and its summary in `kinsight --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("documents", "Read records, embed their text (or pictures) and store them; "
                            "re-running skips unchanged items."),
    "search": ("documents", "Search a collection by text, by a stored item (--like), by a "
                            "picture (--image), or a batch (--queries)."),
    "evaluate": ("documents", "nDCG@10, Recall@10/100 and MRR@10 of each search mode against "
                              "relevance judgments."),
    "embed": ("embed", "Write the vectors of a file's texts or pictures to Parquet, without "
                       "storing anything."),
    "recommend": ("recommend", "Recommend items: more like --like items (and unlike --unlike "
                               "ones), for a --user, or for many --users at once."),
    "interactions": ("recommend", "Load user interactions (views, likes, purchases, dislikes) "
                                  "for per-user recommendations."),
    "cluster": ("clusters", "Cluster a collection's items and name each cluster by its most "
                            "distinctive words."),
    "anomalies": ("anomalies", "Fit a detector on reference items, score the targets, flag "
                               "those past the threshold."),
    "classify": ("classify", "Label items: --train a head on the frozen embeddings of labelled "
                             "items, or label them --zero-shot from label names alone."),
    "predict": ("classify", "Label the texts or pictures of a file with a head saved by "
                            "`classify --train`."),
    "mismatch": ("mismatch", "What does not agree with its partner: pairs of spaces, labels, "
                             "near-duplicates."),
    "tune": ("tune", "Fit search to relevance judgments: the hybrid fusion and a query "
                     "adapter of the dense space, saved with the space for `search --tuned`."),
    "align": ("align", "Train an adapter on the items that have vectors in both spaces (a "
                       "picture and its caption), save it."),
    "runs": ("runs", "Analysis runs of a collection. With no command: list them, newest first."),
    "report": ("report", "Write an HTML report of an analysis run: one file that opens "
                         "anywhere, offline."),
    "collections": ("collections", "List, inspect and drop collections."),
    "model": ("models", "Prepare the text models: export their fast CPU variants and time them "
                        "on this machine."),
    "serve": ("serving", "Serve the HTTP API and the search web page (at /; OpenAPI docs at "
                         "/docs) over a store."),
    "demo": ("serving", "Index 2,000 real Debian package descriptions with the bundled model, "
                        "then search them."),
}


class LazyGroup(KinsightGroup):
    """Lists ``COMMANDS`` without importing them; imports one when it is resolved to run."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The command if it is loaded, else a stand-in with its summary: what the command list
        of ``kinsight --help`` needs (``resolve_command`` loads the real one to run it)."""
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name][1])
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] in COMMANDS and args[0] not in self.commands:
            self._load(args[0])
        return super().resolve_command(ctx, args)

    def _load(self, cmd_name: str) -> None:
        importlib.import_module(f"{__package__}.{COMMANDS[cmd_name][0]}")
        built = typer.main.get_command(app)
        command = built.commands[cmd_name]  # type: ignore[attr-defined]
        plain_flags(command, command.context_class(command))
        self.commands[cmd_name] = command


def full_group() -> Any:
    """The click group with every command loaded (what the lazy one builds piece by piece): for
    tools that walk all commands, such as the tests of their errors."""
    for module, _ in COMMANDS.values():
        importlib.import_module(f"{__package__}.{module}")
    return typer.main.get_command(app)


app = typer.Typer(
    name="kinsight",
    help="Embedding search, recommendations and data quality over your documents and "
         "pictures: ingest files, then search them (by meaning, keywords or both, by text or "
         "picture), recommend similar items, cluster, score anomalies and mismatches, and write "
         "reports; the same from Python and HTTP (kinsight serve).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=LazyGroup,
    rich_markup_mode="markdown",  # docstrings reflow to the terminal instead of breaking lines
)


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False
           ) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
