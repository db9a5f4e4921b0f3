"""`vwwtorch firmware generate | deps | build | run | profile`: from an int8 model to scores on a target.

Hooked into the `firmware` command group by `firmware/cli.py`; the work happens in
generate.py, deps.py, build.py, run.py and profile.py, imported only when a command runs.
"""

from __future__ import annotations

import importlib

from vwwtorch.contract.defaults import HelpFormatter


def _commands():
    from vwwtorch.firmware.boards import board_choices, boards_that_run_here, flashed_boards, profile_target

    here, flashed = board_choices(boards_that_run_here()), board_choices(flashed_boards())
    return (
        ("generate", "vwwtorch.firmware.generate",
         "write the model's C++ sources (array, settings, op resolver) for a firmware build",
         "Turn an int8 .tflite into model_data.cc/.h, model_settings.cc/.h and an op resolver with "
         "exactly the model's ops; measures the tensor arena and checks the model fits the board."),
        ("deps", "vwwtorch.firmware.deps",
         "fetch the pinned TFLM, flatbuffers, gemmlowp and CMSIS(-NN) sources (and a board's vendor "
         "SDK with --board) into the cache",
         "Download the pinned third-party sources a firmware build needs into $VWWTORCH_CACHE "
         "(default ~/.cache/vwwtorch), or install them from local git repositories, trees or archives "
         f"(--from-dir, --tflm-dir, ...). Without --board: what {here} builds need. --board NAME (or "
         "all) adds a device's vendor SDK (a large download). Every tree is checked against its "
         "pinned digest."),
        ("build", "vwwtorch.firmware.build",
         f"compile the firmware for a board ({board_choices()}) and print its flash/RAM use",
         "Compile the firmware with a generated model folder for a board. TFLM is compiled once per "
         "board and kernel set and kept in the cache; rebuilding after a model change only recompiles "
         "the model."),
        ("run", "vwwtorch.firmware.run",
         "run a firmware build on images and print the int8 scores",
         f"Run a {here} build (natively or under its emulator) on images of the model's size and "
         "print each image's int8 scores, decision and inference time. A "
         f"{flashed} build runs on the board: `vwwtorch firmware flash`, then `vwwtorch firmware "
         "monitor`."),
        ("profile", "vwwtorch.firmware.profile",
         "instructions, MACs and instructions per MAC of every operator, counted under QEMU",
         f"Generate, build and run an int8 model on an emulated board (default {profile_target().name}) with the "
         "instruction counter, which attributes every instruction of an inference to its operator "
         "(exact, not sampled). Prints a table, writes OUT/profile.json and a bar chart OUT/profile.png."),
    )


def _runner(module_name: str):
    def run(args):
        return importlib.import_module(module_name).run_command(args)
    return run


def register(firmware_subparsers) -> None:
    """Add generate, deps, build, run and profile to the `vwwtorch firmware` sub-command group."""
    for name, module_name, short, long in _commands():
        parser = firmware_subparsers.add_parser(
            name, help=short, description=long,
            formatter_class=HelpFormatter)
        _add_arguments(module_name, parser)
        parser.set_defaults(func=_runner(module_name))


def _add_arguments(module_name: str, parser) -> None:
    # Only argparse and light modules are imported here, so `--help` stays quick.
    importlib.import_module(module_name).add_arguments(parser)
