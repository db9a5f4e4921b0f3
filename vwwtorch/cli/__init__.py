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
import os
import sys

from vwwtorch.plumbing.console import quiet_console
from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.stopping import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, signals_as_exceptions

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
    "vwwtorch.cli.config",
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


# Where a command writes; every other path it is given is an input, which no output may touch.
OUTPUT_DESTS = ("out", "output")
# Options whose values are names, not paths (a board called `host` beside a folder `host`).
NAME_DESTS = ("split", "class_name", "class_names", "positive_class", "by", "name", "board", "port",
              "memory_budget")


def command_inputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple[str, str]]:
    """(path, "--flag PATH" or "PATH") for every value of `args` that names an existing file or folder, outputs
    excepted. A `SPLIT=PATH` value (`--metadata val=v.csv`) counts by its path."""
    flags: dict[str, str] = {}
    # A command may read only some files of a folder it is given (`firmware flash --build DIR` reads
    # one .bin): it names that option in `own_inputs` and declares the files itself.
    skip = set(OUTPUT_DESTS) | set(NAME_DESTS) | {"own_inputs"} | set(getattr(args, "own_inputs", ()))

    def walk(p: argparse.ArgumentParser) -> None:
        """The options of the parsers this command line chose (`data`, then `wake-vision`)."""
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                skip.add(action.dest)
                chosen = action.choices.get(getattr(args, action.dest, None))
                if chosen is not None:
                    walk(chosen)
            elif action.choices is not None or action.type in (int, float):
                skip.add(action.dest)
            else:
                long = [o for o in action.option_strings if o.startswith("--")]
                flags.setdefault(action.dest, long[0] + " " if long else "")

    walk(parser)
    found = []
    for dest, value in vars(args).items():
        if dest in skip:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(item, (str, os.PathLike)):
                continue
            text = os.fspath(item)
            for path in (text, text.partition("=")[2]):
                if path and os.path.lexists(path):
                    found.append((path, f"{flags.get(dest, '')}{text}"))
                    break
    return found


def _run(argv: list[str]) -> int:
    from vwwtorch.plumbing.outputs import reading_inputs

    if argv and argv[0] in LIGHTNING_COMMANDS:
        from vwwtorch.training.lightning_cli import run_lightning_cli

        run_lightning_cli(argv)
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    with reading_inputs(command_inputs(parser, args)):
        return int(args.func(args) or 0)


def _stop_signals_ignored_outside_the_command() -> None:
    """For the console script: SIGTERM and Ctrl-C are the command's to handle while it runs
    (`signals_as_exceptions`); before and after -- the interpreter's shutdown after "wrote ...", which
    takes a second with torch loaded -- they are ignored, so a complete output is not reported as a
    silent kill (exit 143) that a rerun then refuses to overwrite."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        _stop_signals_ignored_outside_the_command()
    quiet_console()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with signals_as_exceptions():
            return _run(argv)
    except UserError as exc:
        from vwwtorch.plumbing.names import printable

        # Messages quote file names and file contents: nothing in them may drive the terminal.
        print(f"vwwtorch: {exc.label}: {printable(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vwwtorch: interrupted (Ctrl-C); nothing half-written was kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("vwwtorch: terminated (SIGTERM); nothing half-written was kept", file=sys.stderr)
        return EXIT_TERMINATED


if __name__ == "__main__":
    sys.exit(main())
