"""Each option's default lives once, where the work is defined; command lines read it from there,
and `--help` shows it once (`HelpFormatter`)."""

from __future__ import annotations

import argparse
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


def help_names_its_default(action: argparse.Action) -> bool:
    """Whether an option's help text already says what its default is (then `--help` adds none)."""
    return "default" in (action.help or "").lower()


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where X tells something: not for a flag (its default is the
    flag's absence), not for None, and not where the help already says what the default is."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool) or help_names_its_default(action):
            return action.help or ""
        return super()._get_help_string(action)
