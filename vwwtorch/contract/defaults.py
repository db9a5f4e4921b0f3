"""Each option's default lives once, where the work is defined; command lines read it from there."""

from __future__ import annotations

import dataclasses
import inspect


def default(source, name: str):
    """The default of `name` in `source`: a dataclass's field or a function's keyword argument."""
    if dataclasses.is_dataclass(source):
        field = next(f for f in dataclasses.fields(source) if f.name == name)
        if field.default_factory is not dataclasses.MISSING:
            return field.default_factory()
        return field.default
    value = inspect.signature(source).parameters[name].default
    if value is inspect.Parameter.empty:
        raise TypeError(f"{source.__qualname__}() has no default for {name}")
    return value
