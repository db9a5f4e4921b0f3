"""`vwwtorch` command line: one entry point, one module per command group.

`fit`, `validate` and `test` are LightningCLI (configs, `--print_config`, `--ckpt_path`); the other
commands are plain argparse. Each command module exposes `register(subparsers)` and sets
`func=<callable taking the parsed args>`; heavy imports stay inside those callables so
`vwwtorch --help` is quick.

Exit codes: 0 done, 1 a verification gate failed, 2 the input was wrong (one `vwwtorch: error:`
line, never a traceback), 130 Ctrl-C, 143 SIGTERM. Interrupted outputs are never left
half-written; an interrupted `fit` saves a resumable `last.ckpt` and says how to resume.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vwwtorch.contract.console import quiet_console
from vwwtorch.contract.errors import UserError
from vwwtorch.contract.stopping import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, signals_as_exceptions

LIGHTNING_COMMANDS = {
    "fit": "train a model (LightningCLI; see `vwwtorch fit --help`)",
    "validate": "evaluate a checkpoint on the validation split (LightningCLI)",
    "test": "evaluate a checkpoint on the test split (LightningCLI)",
}

# Modules that add their own sub-commands, in the order `--help` lists them.
COMMAND_MODULES = (
    "vwwtorch.evaluation.predict",
    "vwwtorch.data.cli",
    "vwwtorch.evaluation.report.cli",
    "vwwtorch.cli.quickstart",
    "vwwtorch.training.foreign.cli",
    "vwwtorch.bridge.cli",
    "vwwtorch.firmware.cli",
)

class OneLineErrorParser(argparse.ArgumentParser):
    """A wrong or missing flag is one `vwwtorch: error:` line, not the usage followed by the error.
    Sub-command parsers are made with the same class."""

    def error(self, message: str):
        raise UserError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="vwwtorch",
        description="Train tiny Visual Wake Words models in PyTorch and ship them, int8 and verified, "
                    "to TensorFlow Lite Micro.",
        epilog="exit codes: 0 done, 1 a verification gate failed, 2 wrong input (one error line), "
               "130 interrupted (Ctrl-C), 143 terminated (SIGTERM)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in LIGHTNING_COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def _run(argv: list[str]) -> int:
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from vwwtorch.training.lightning_cli import run_lightning_cli

        run_lightning_cli(argv)
        return 0
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def main(argv: list[str] | None = None) -> int:
    quiet_console()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with signals_as_exceptions():
            return _run(argv)
    except UserError as exc:
        print(f"vwwtorch: {exc.label}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vwwtorch: interrupted (Ctrl-C); nothing half-written was kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("vwwtorch: terminated (SIGTERM); nothing half-written was kept", file=sys.stderr)
        return EXIT_TERMINATED


if __name__ == "__main__":
    sys.exit(main())
