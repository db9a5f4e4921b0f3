"""`vwwtorch config list|show`: the training configs the package ships, from any folder."""

from __future__ import annotations

from vwwtorch.configs import config_path, names, shipped, SUFFIX


def register(subparsers) -> None:
    config = subparsers.add_parser(
        "config", help="list the shipped training configs, or print one",
        description="The training configs shipped with vwwtorch. `vwwtorch fit --config NAME` reads one by "
                    "name from any folder; `vwwtorch config show NAME > my.yaml` starts your own.")
    sub = config.add_subparsers(dest="config_command", metavar="CONFIG_COMMAND", required=True)
    listing = sub.add_parser("list", help="each shipped config's name and what it is for")
    listing.set_defaults(func=_list)
    show = sub.add_parser("show", help="print a shipped config (YAML) to stdout")
    show.add_argument("name", help="a name from `vwwtorch config list`")
    show.set_defaults(func=_show)


def summary(name: str) -> str:
    """The config's first comment line: what it is for."""
    for line in config_path(name + SUFFIX).read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").rstrip(":")
    return ""


def _list(args) -> None:
    width = max(map(len, names()))
    for name in names():
        print(f"{name:<{width}}  {summary(name)}")


def _show(args) -> None:
    print(shipped(args.name).read_text(), end="")
