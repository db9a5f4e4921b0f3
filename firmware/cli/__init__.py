"""`vwwtorch firmware ...`: the command group, assembled from one module per group of sub-commands.

Every module listed in SUBCOMMAND_MODULES exposes `register(subparsers)`, which adds its
sub-commands to the `firmware` group, in this order (the order `--help` lists them).
"""

from __future__ import annotations

import importlib

SUBCOMMAND_MODULES = (
    "vwwtorch.firmware.cli.build_commands",            # generate, deps, build
    "vwwtorch.firmware.cli.run_commands",              # run, profile
    "vwwtorch.firmware.boards.sparkfun_edge.flash_command",  # flash
    "vwwtorch.firmware.boards.sparkfun_edge.monitor",  # monitor
)


def register(subparsers) -> None:
    firmware = subparsers.add_parser(
        "firmware", help="build, flash and watch the microcontroller firmware",
        description="Firmware for TensorFlow Lite Micro targets: flash a SparkFun Edge over its "
                    "UART bootloader and watch its detection scores.")
    sub = firmware.add_subparsers(dest="firmware_command", metavar="FIRMWARE_COMMAND", required=True)
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(sub)
