"""Training configs for `vwwtorch fit --config`, shipped with the package (`vwwtorch.configs`).

A shipped config is named by its file name without `.yaml` (`vwwtorch fit --config quickstart`), so
it is reachable from any folder with the package installed; `vwwtorch config list|show` prints them.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from vwwtorch.plumbing.errors import UserError

SUFFIX = ".yaml"
# A bare name, not a path nor inline YAML (jsonargparse also takes `--config '{...}'`).
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def config_path(name: str) -> Path:
    """The installed path of a shipped config, e.g. `config_path("quickstart.yaml")`."""
    return Path(str(files(__name__) / name))


def names() -> list[str]:
    """The shipped configs' names, sorted."""
    return sorted(entry.name[:-len(SUFFIX)] for entry in files(__name__).iterdir() if entry.name.endswith(SUFFIX))


def shipped(name: str, flag: str = "config") -> Path:
    """The shipped config `name` (with or without `.yaml`), or a one-line error listing the names."""
    stem = name[:-len(SUFFIX)] if name.endswith(SUFFIX) else name
    if stem not in names():
        what = "no such file, nor a shipped config" if flag == "--config" else "not a shipped config"
        raise UserError(f"{flag} {name}: {what} (shipped: {', '.join(names())})")
    return config_path(stem + SUFFIX)


def resolve(value: str) -> str:
    """What `--config VALUE` reads: an existing file as given; else a bare name, or `configs/NAME.yaml`
    as the README writes it, is the shipped config; anything else goes to jsonargparse unchanged."""
    path = Path(value)
    if path.is_file():
        return value
    if _NAME.fullmatch(value):
        return str(shipped(value, "--config"))
    if path.parent == Path("configs") and path.suffix == SUFFIX and path.stem in names():
        return str(config_path(path.name))
    return value


def resolve_config_args(argv: list[str]) -> list[str]:
    """`argv` with the value of every `--config`/`-c` (also `--config=VALUE`) resolved."""
    out, expects_value = [], False
    for arg in argv:
        if expects_value:
            arg, expects_value = resolve(arg), False
        elif arg in ("--config", "-c"):
            expects_value = True
        elif arg.startswith("--config="):
            arg = "--config=" + resolve(arg.partition("=")[2])
        out.append(arg)
    return out
