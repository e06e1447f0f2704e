"""How the command line reports a failure: in one line, never with a traceback.

    KinsightError, or an OSError naming a file   error: what is wrong; how to fix it   status 2
    anything else (a bug, a library's error)     error: unexpected TYPE: message;      status 1
                                                 details in LOG (run with -v to see them here)
    Ctrl-C                                       interrupted                           status 130

Typer's own exits pass through untouched: usage errors (a bad option) keep their short usage
message, ``typer.Exit`` and ``SystemExit`` their status, ``typer.Abort`` its "Aborted!". The traceback
of an unexpected error is appended to the log file (``$KINSIGHT_LOG``, else
``$XDG_STATE_HOME/kinsight/kinsight.log``, ``~/.local/state`` when that is unset), made only when
needed; with ``kinsight -v`` every traceback is printed on stderr too. The handler wraps the whole
app once (``KinsightGroup.invoke``), so ``kinsight`` and ``CliRunner`` report alike and no command
needs its own ``try``.
"""

from __future__ import annotations

import os
import platform
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

__all__ = ["KinsightGroup", "log_path", "plain_flags", "print_error", "reported_errors"]

LOG_LIMIT = 1 << 20  # past this size the log moves to kinsight.log.1 (one old log kept)
MESSAGE_LIMIT = 300  # characters of an unexpected error's message shown in its one line
_ARGV_KEY = "kinsight.argv"
_SECRET_WORDS = ("key", "token", "secret", "password")
_OS_FIXES: tuple[tuple[type[OSError], str], ...] = (
    (FileNotFoundError, "check the path"),
    (IsADirectoryError, "give a file, not a folder"),
    (NotADirectoryError, "a part of the path is a file, not a folder; check the path"),
    (FileExistsError, "something is in the way there; move it or choose another path"),
    (PermissionError, "check its permissions, or choose another path"),
)

_stderr = Console(stderr=True)


class KinsightGroup(TyperGroup):
    """The top-level command group: runs every command inside ``reported_errors``, and shows plain
    flags (--json) in help without Typer's ``<bool>`` value type, since they take no value."""


    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:
        argv = list(args)  # parsing consumes args; the log records the command as typed
        plain_flags(self, self.context_class(self))  # the root group; app.py: its commands
        ctx = super().make_context(info_name, args, parent=parent, **extra)
        ctx.meta[_ARGV_KEY] = argv
        return ctx

    def invoke(self, ctx: Any) -> Any:
        with reported_errors(verbose=bool(ctx.params.get("verbose")),
                             argv=[ctx.info_name or "kinsight", *ctx.meta.get(_ARGV_KEY, [])]):
            return super().invoke(ctx)


def print_error(message: str) -> None:
    """``error: message`` on stderr, on one line whatever the terminal's width, brackets and all
    (``kinsight[text]`` is text here, not rich markup)."""
    _stderr.print(f"[red]error:[/red] {escape(_one_line(message))}", highlight=False,
                  soft_wrap=True)


def plain_flags(command: Any, ctx: Any) -> None:
    """Give every flag of ``command`` and its subcommands (--help included) an empty metavar."""
    for param in [*command.params, command.get_help_option(ctx)]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        plain_flags(sub, ctx)


@contextmanager
def reported_errors(*, verbose: bool = False, argv: Sequence[str] = ()) -> Iterator[None]:
    """Turn any exception raised inside into the line and exit status of the module docstring."""
    try:
        yield
    except (typer.Exit, typer.Abort, typer.TyperException, SystemExit):
        raise  # typer.TyperException: the usage errors, reported by typer with the usage line
    except KeyboardInterrupt:
        _stderr.print("interrupted", highlight=False)
        raise typer.Exit(130) from None
    except BrokenPipeError:
        raise  # stdout closed early (kinsight ... | head): typer exits quietly
    except Exception as e:
        # Imported here, not above: `kinsight --help` must not wait for the engine to load.
        from kinsight.engine import KinsightError

        problem = str(e) if isinstance(e, KinsightError) else (
            _file_problem(e) if isinstance(e, OSError) else None)
        if problem is None:
            _unexpected(e, verbose, argv)
        _show_traceback(e, verbose)
        print_error(problem)
        raise typer.Exit(2) from None


def log_path() -> Path:
    """Where tracebacks of unexpected errors go: ``$KINSIGHT_LOG``, else the XDG state folder
    (a relative ``$XDG_STATE_HOME`` is ignored, as the XDG spec says)."""
    if os.environ.get("KINSIGHT_LOG"):
        return Path(os.environ["KINSIGHT_LOG"]).expanduser()
    state = Path(os.environ.get("XDG_STATE_HOME") or "~/.local/state").expanduser()
    if not state.is_absolute():
        state = Path("~/.local/state").expanduser()
    return state / "kinsight" / "kinsight.log"


def _unexpected(e: Exception, verbose: bool, argv: Sequence[str]) -> NoReturn:
    _show_traceback(e, verbose)
    path = log_path()
    why_not = _append_log(path, _log_entry(e, argv))
    message = _one_line(str(e))
    if len(message) > MESSAGE_LIMIT:
        message = message[:MESSAGE_LIMIT - 1] + "…"
    what = f"unexpected {type(e).__name__}{f': {message}' if message else ''}"
    if why_not is None:
        print_error(f"{what}; details in {path} (run with -v to see them here)")
    else:
        print_error(f"{what}; could not write the details to {path} ({why_not}); run with -v to "
                    "see them here")
    raise typer.Exit(1) from None


def _file_problem(e: OSError) -> str | None:
    """The one line for an OSError about a file the user named; None when it names no file."""
    if e.filename is None:
        return None
    where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 is not None else "")
    reason = e.strerror or type(e).__name__
    fix = next((fix for kind, fix in _OS_FIXES if isinstance(e, kind)),
               "check the path and the disk")
    return f"{where}: {reason[:1].lower()}{reason[1:]}; {fix}"


def _show_traceback(e: BaseException, verbose: bool) -> None:
    if verbose:
        sys.stderr.write("".join(traceback.format_exception(e)))
        sys.stderr.flush()


def _log_entry(e: BaseException, argv: Sequence[str]) -> str:
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (f"--- {stamp} kinsight {_version()}, Python {platform.python_version()}, "
            f"pid {os.getpid()}\ncommand: {' '.join(_redacted(argv))}\n"
            + "".join(traceback.format_exception(e)) + "\n")


def _append_log(path: Path, entry: str) -> str | None:
    """Append ``entry`` to the log; the reason it could not be written, or None."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.stat().st_size > LOG_LIMIT:
            path.replace(path.with_name(path.name + ".1"))
        with path.open("a", encoding="utf-8") as log:
            log.write(entry)
    except OSError as e:
        return (e.strerror or type(e).__name__).lower()
    return None


def _redacted(argv: Sequence[str]) -> list[str]:
    """The command line with the values of secret options (--api-key ...) replaced by ***."""
    shown: list[str] = []
    hide_next = False
    for arg in argv:
        name, eq, _ = arg.partition("=")
        secret = arg.startswith("--") and any(w in name.lower() for w in _SECRET_WORDS)
        if hide_next:
            shown.append("***")
        elif secret and eq:
            shown.append(f"{name}=***")
        else:
            shown.append(arg)
        hide_next = secret and not eq
    return shown


def _one_line(text: str) -> str:
    """Its first paragraph, lines joined: a wrapped library message's tail (DuckDB's "LINE 1:
    ... ^^^" under a SQL error) is for -v and the log."""
    first = text.strip().split("\n\n", 1)[0]
    return " ".join(line.strip() for line in first.splitlines() if line.strip())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kinsight")
    except PackageNotFoundError:
        return "(not installed)"
