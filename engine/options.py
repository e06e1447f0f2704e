"""How an operation's options are declared, checked, and reported on.

Each operation takes one frozen dataclass of options. Its fields are declared with ``option``,
which records the help text and bounds beside the default: the HTTP request models and the CLI
options are derived from these (``kinsight.api.http.option_models``,
``kinsight.api.cli.option_params``), so a parameter's name, default, bounds and help are written
once. ``check_bounds`` enforces the bounds for Python callers too.

Long operations report how far they are through a ``Progress`` callback; the api layer renders it
(a bar on the terminal) and the engine never prints.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, TypeVar

from .errors import InvalidInputError

__all__ = ["SEED_MAX", "Progress", "check_bounds", "option", "option_default", "options_with",
           "quiet", "within_bounds"]

Options = TypeVar("Options")

SEED_MAX = 2**31 - 1  # the largest seed every library takes: FAISS a C int, scikit-learn 0..2**32-1
_BOUNDS = (("ge", "at least"), ("gt", "more than"), ("le", "at most"), ("lt", "less than"))


def option(default: Any = None, *, help: str, ge: float | None = None, le: float | None = None,
           gt: float | None = None, lt: float | None = None, factory: Any = None) -> Any:
    """A field of an options dataclass with its help text and optional bounds: ``ge``/``le``
    inclusive, ``gt``/``lt`` exclusive (a percentile strictly between 0 and 100)."""
    metadata = {"help": help, "ge": ge, "le": le, "gt": gt, "lt": lt}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option_default(f: dataclasses.Field[Any]) -> Any:
    """The value an options field takes when not given (a fresh one for a factory's)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()  # type: ignore[misc,operator]
    return f.default


def within_bounds(f: dataclasses.Field[Any], value: float) -> bool:
    """Whether ``value`` keeps to the bounds of the options field ``f``. Written so that NaN,
    which compares false with everything, is outside any bound."""
    ge, gt, le, lt = (f.metadata.get(key) for key in ("ge", "gt", "le", "lt"))
    return ((ge is None or value >= ge) and (gt is None or value > gt)
            and (le is None or value <= le) and (lt is None or value < lt))


def check_bounds(options: Any) -> None:
    """Refuse a number outside its option's bounds, naming the option and the bounds."""
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or within_bounds(f, value):
            continue
        bounds = {key: f.metadata.get(key) for key, _ in _BOUNDS}
        ge, le = bounds["ge"], bounds["le"]
        wanted = (f"between {ge} and {le}" if ge is not None and le is not None else
                  " and ".join(f"{words} {bounds[key]}" for key, words in _BOUNDS
                               if bounds[key] is not None))
        raise InvalidInputError(f"{f.name} must be {wanted}, not {value}")


def options_with(options: type[Options], given: Options | None, changes: dict[str, Any]) -> Options:
    """``given`` (or the defaults) with ``changes`` applied: how the facade's methods take either
    an options object or its fields as keywords. An unknown name is refused with the known ones."""
    known = {f.name for f in dataclasses.fields(options)}  # type: ignore[arg-type]
    unknown = sorted(set(changes) - known)
    if unknown:
        raise InvalidInputError(f"unknown option{'s' if len(unknown) > 1 else ''} "
                                f"{', '.join(unknown)} of {options.__name__}; options: "
                                f"{', '.join(sorted(known))}")
    base = given if given is not None else options()
    return dataclasses.replace(base, **changes) if changes else base  # type: ignore[type-var]


class Progress(Protocol):
    """Told ``(done, total, stage)`` as a long operation advances: ``done`` of ``total`` steps
    are finished; ``stage`` names the step under way."""

    def __call__(self, done: int, total: int, stage: str) -> None: ...


def quiet(done: int, total: int, stage: str) -> None:
    """The progress callback that reports nothing (the default)."""
