"""Adding a sub-command whose work lives in a module imported only when the command runs.

Only argparse and light modules are imported to build the parser, so `vwwtorch firmware --help`
stays quick; the module's `run_command(args)` is imported when the command is chosen.
"""

from __future__ import annotations

import importlib

from vwwtorch.plumbing.defaults import HelpFormatter


def add_command(firmware_subparsers, name: str, module_name: str, short: str, long: str) -> None:
    """Add `name` to the `firmware` group: arguments from `module_name.add_arguments`, and
    `module_name.run_command` as its handler."""
    parser = firmware_subparsers.add_parser(name, help=short, description=long, formatter_class=HelpFormatter)
    importlib.import_module(module_name).add_arguments(parser)
    parser.set_defaults(func=_runner(module_name))


def _runner(module_name: str):
    def run(args):
        return importlib.import_module(module_name).run_command(args)
    return run
