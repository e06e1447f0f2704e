"""Request models derived from the engine's options dataclasses, so that a parameter's name, type,
default, bounds and help are written once (in the engine) for Python, HTTP and the CLI.

The one rule that differs on the wire: an option ``where`` (a filter) is posted as ``filter`` and
takes the structured form only; raw SQL text is refused (see ``models._no_sql``). The options are
built once while the request is validated, so what their own checks refuse (a parameter the
chosen method does not take) is a validation error like a number out of bounds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Annotated, Any, ClassVar, TypeVar, get_type_hints

from pydantic import BeforeValidator, Field, create_model, model_validator

from kinsight.engine import Filter, InvalidInputError, option_default

from .models import _no_sql, _Request

__all__ = ["OptionsRequest", "from_options"]

HttpFilter = Annotated[Filter | None, BeforeValidator(_no_sql)]
_WIRE_NAMES = {"where": "filter"}

Options = TypeVar("Options")
Request = TypeVar("Request", bound="OptionsRequest")


class OptionsRequest(_Request):
    """A request whose fields are an options dataclass's (``options`` below)."""

    __options__: ClassVar[type]
    __renamed__: ClassVar[dict[str, str]]  # engine name -> wire name

    def to_options(self, options: type[Options], **extra: Any) -> Options:
        """The engine's options this request asks for, with ``extra`` fields set by the route."""
        if options is not self.__options__:
            raise TypeError(f"{type(self).__name__} holds {self.__options__.__name__}, "
                            f"not {options.__name__}")
        values = {name: getattr(self, wire) for name, wire in self.__renamed__.items()}
        return options(**values, **extra)

    @model_validator(mode="after")
    def _options_accept(self) -> OptionsRequest:
        options = getattr(type(self), "__options__", None)  # None: not yet derived
        if options is not None:
            try:
                self.to_options(options)
            except InvalidInputError as e:
                raise ValueError(str(e)) from e
        return self


def from_options(
    options: type, *, rename: Mapping[str, str] | None = None, omit: Collection[str] = (),
    types: Mapping[str, Any] | None = None,
) -> Callable[[type[Request]], type[Request]]:
    """Decorate an empty ``OptionsRequest`` subclass to give it one field per field of the
    dataclass ``options`` (less ``omit``): named as in the engine unless ``rename``d, typed as in
    the engine unless ``types`` says otherwise, with the engine's default, bounds and help.

    The class the decorator returns is a subclass of the decorated one made by pydantic's
    ``create_model``, under the same name (so the class keeps its docstring and config)."""
    def derive(base: type[Request]) -> type[Request]:
        hints = get_type_hints(options, include_extras=True)
        renamed: dict[str, str] = {}
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(options):
            if f.name in omit:
                continue
            wire = {**_WIRE_NAMES, **(rename or {})}.get(f.name, f.name)
            kind = (types or {}).get(f.name, HttpFilter if f.name == "where" else hints[f.name])
            meta = f.metadata
            fields[wire] = (kind, Field(option_default(f), description=meta.get("help"),
                                        ge=meta.get("ge"), gt=meta.get("gt"), le=meta.get("le"),
                                        lt=meta.get("lt")))
            renamed[f.name] = wire
        model = create_model(base.__name__, __base__=base, __module__=base.__module__, **fields)
        model.__doc__ = base.__doc__ or options.__doc__
        model.__options__ = options
        model.__renamed__ = renamed
        return model

    return derive

