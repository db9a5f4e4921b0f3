"""`vwwtorch firmware generate | deps | build`: from an int8 model to a compiled firmware.

The work happens in codegen/generate.py, toolchain/install_deps.py and toolchain/compiler.py, imported
only when a command runs.
"""

from __future__ import annotations

from vwwtorch.firmware.cli.lazy_command import add_command


def register(firmware_subparsers) -> None:
    """Add generate, deps and build to the `vwwtorch firmware` sub-command group."""
    from vwwtorch.firmware.boards import board_choices, boards_that_run_here

    here = board_choices(boards_that_run_here())
    add_command(
        firmware_subparsers, "generate", "vwwtorch.firmware.codegen.generate",
        "write the model's C++ sources (array, settings, op resolver) for a firmware build",
        "Turn an int8 .tflite into model_data.cc/.h, model_settings.cc/.h and an op resolver with "
        "exactly the model's ops; measures the tensor arena and checks the model fits the board.")
    add_command(
        firmware_subparsers, "deps", "vwwtorch.firmware.toolchain.install_deps",
        "fetch the pinned TFLM, flatbuffers, gemmlowp and CMSIS(-NN) sources (and a board's vendor "
        "SDK with --board) into the cache",
        "Download the pinned third-party sources a firmware build needs into $VWWTORCH_CACHE "
        "(default ~/.cache/vwwtorch), or install them from local git repositories, trees or archives "
        f"(--from-dir, --tflm-dir, ...). Without --board: what {here} builds need. --board NAME (or "
        "all) adds a device's vendor SDK (a large download). Every tree is checked against its "
        "pinned digest.")
    add_command(
        firmware_subparsers, "build", "vwwtorch.firmware.toolchain.compiler",
        f"compile the firmware for a board ({board_choices()}) and print its flash/RAM use",
        "Compile the firmware with a generated model folder for a board. TFLM is compiled once per "
        "board and kernel set and kept in the cache; rebuilding after a model change only recompiles "
        "the model.")
