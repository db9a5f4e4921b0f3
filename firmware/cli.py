"""`vwwtorch firmware ...`: the command group; each sub-command lives in its own module.

Every module listed in SUBCOMMAND_MODULES exposes `register(subparsers)`, which adds one
sub-command to the `firmware` group (`generate`, `deps`, `build`, `run` plug in the same way).
"""

from __future__ import annotations

import importlib

SUBCOMMAND_MODULES = (
    "vwwtorch.firmware.cli_build",   # generate, deps, build, run
    "vwwtorch.firmware.flasher",     # flash
    "vwwtorch.firmware.monitor",     # monitor
)


def register(subparsers) -> None:
    firmware = subparsers.add_parser(
        "firmware", help="build, flash and watch the microcontroller firmware",
        description="Firmware for TensorFlow Lite Micro targets: flash a SparkFun Edge over its "
                    "UART bootloader and watch its detection scores.")
    sub = firmware.add_subparsers(dest="firmware_command", metavar="FIRMWARE_COMMAND", required=True)
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(sub)
