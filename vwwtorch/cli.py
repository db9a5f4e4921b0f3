"""`vwwtorch` command line: one entry point, one module per command group.

`fit`, `validate` and `test` are LightningCLI (configs, `--print_config`, `--ckpt_path`); the other
commands are plain argparse. Each command module exposes `register(subparsers)` and sets
`func=<callable taking the parsed args>`; heavy imports stay inside those callables so
`vwwtorch --help` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from vwwtorch.errors import UserError

LIGHTNING_COMMANDS = {
    "fit": "train a model (LightningCLI; see `vwwtorch fit --help`)",
    "validate": "evaluate a checkpoint on the validation split (LightningCLI)",
    "test": "evaluate a checkpoint on the test split (LightningCLI)",
}

# Modules that add their own sub-commands, in the order `--help` lists them.
COMMAND_MODULES = (
    "vwwtorch.predict",
    "vwwtorch.data.cli",
    "vwwtorch.report.cli",
    "vwwtorch.quickstart",
    "vwwtorch.export_cli",
    "vwwtorch.firmware.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vwwtorch",
        description="Train tiny Visual Wake Words models in PyTorch and ship them, int8 and verified, "
                    "to TensorFlow Lite Micro.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in LIGHTNING_COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # TensorBoard imports TensorFlow when present; keep its C++ start-up chatter out of our output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in LIGHTNING_COMMANDS:
            from vwwtorch.training.lightning_cli import run_lightning_cli

            run_lightning_cli(argv)
            return 0
        args = build_parser().parse_args(argv)
        result = args.func(args)
        return int(result or 0)
    except UserError as exc:
        print(f"vwwtorch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vwwtorch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
