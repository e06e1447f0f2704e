"""CLI options derived from the engine's options dataclasses: ``--min-cluster-size`` and its help
and bounds come from ``ClusterOptions.min_cluster_size``, written once in the engine.

A command declares what the terminal needs in its own shape (``--where`` as SQL text, ``-k`` that
takes a number or ``auto``, a file of prompts); ``options_command`` adds one option for every
other field of the dataclass and hands their values to the command as ``options``. Where the
terminal has its own name for an option (``--threshold`` for ``threshold_percentile``) or its own
default, ``rename`` and ``defaults`` say so.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

from kinsight.engine import option_default, within_bounds

__all__ = ["options_command"]

Command = TypeVar("Command", bound=Callable[..., Any])


def options_command(
    options: type, *, omit: Collection[str] = (), rename: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Callable[[Command], Command]:
    """Add to the decorated command one option per field of the dataclass ``options`` that the
    command neither declares itself nor ``omit``s; the command gets their values as a dict in
    its parameter ``options``, keyed by field name. ``rename`` gives a field the flag it has on
    the terminal (``{"n_neighbors": "--neighbours"}``), ``defaults`` a default of its own there.
    Put it below ``@app.command``."""
    def decorate(command: Command) -> Command:
        own_hints = get_type_hints(command, include_extras=True)
        signature = inspect.signature(command)
        own = [p.replace(annotation=own_hints[p.name]) for p in signature.parameters.values()
               if p.name != "options"]
        declared = {p.name for p in own}
        hints = get_type_hints(options, include_extras=True)
        derived = [
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY,
                default=(defaults or {}).get(f.name, option_default(f)),
                annotation=Annotated[_cli_type(hints[f.name]),
                                     _typer_option(f, (rename or {}).get(f.name))])
            for f in dataclasses.fields(options) if f.name not in declared and f.name not in omit]
        names = [p.name for p in derived]

        @functools.wraps(command)
        def run(**values: Any) -> Any:
            chosen = {name: values.pop(name) for name in names}
            return command(**values, options=chosen)

        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + derived
        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run  # type: ignore[return-value]

    return decorate


def _typer_option(f: dataclasses.Field[Any], flag: str | None) -> Any:
    """The ``typer.Option`` of a field: its help, its flag, and its bounds, checked as the command
    line is parsed. Typer's ``min``/``max`` are inclusive; an exclusive bound (a percentile
    strictly between 0 and 100) is checked by a callback, with a message in click's words."""
    ge, gt, le, lt = (f.metadata.get(key) for key in ("ge", "gt", "le", "lt"))
    declarations = [flag] if flag else []
    if gt is None and lt is None:
        return typer.Option(*declarations, help=f.metadata.get("help"), min=ge, max=le)
    low = "" if gt is None and ge is None else f"{gt}<" if gt is not None else f"{ge}<="
    high = "" if lt is None and le is None else f"<{lt}" if lt is not None else f"<={le}"

    def in_range(value: Any) -> Any:
        if value is not None and not within_bounds(f, value):
            raise typer.BadParameter(f"{value} is not in the range {low}x{high}.")
        return value

    return typer.Option(*declarations, help=f.metadata.get("help"), callback=in_range)


def _cli_type(kind: Any) -> Any:
    """The type Typer parses an option as: a sequence becomes a repeatable option (a list)."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _cli_type(inner[0]) | None
    if origin is not None and isinstance(origin, type) and issubclass(origin, Sequence) \
            and origin is not tuple and origin is not str:
        return list[args[0]]  # type: ignore[valid-type]
    return kind
