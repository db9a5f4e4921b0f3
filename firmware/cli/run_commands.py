"""`vwwtorch firmware run | profile`: a compiled firmware's scores and per-operator costs.

The work happens in toolchain/run.py and toolchain/profile.py, imported only when a command runs.
"""

from __future__ import annotations

from vwwtorch.firmware.cli.lazy_command import add_command


def register(firmware_subparsers) -> None:
    """Add run and profile to the `vwwtorch firmware` sub-command group."""
    from vwwtorch.firmware.boards import board_choices, boards_that_run_here, flashed_boards, profile_target

    here, flashed = board_choices(boards_that_run_here()), board_choices(flashed_boards())
    add_command(
        firmware_subparsers, "run", "vwwtorch.firmware.toolchain.run",
        "run a firmware build on images and print the int8 scores",
        f"Run a {here} build (natively or under its emulator) on images of the model's size and "
        "print each image's int8 scores, decision and inference time. A "
        f"{flashed} build runs on the board: `vwwtorch firmware flash`, then `vwwtorch firmware "
        "monitor`.")
    add_command(
        firmware_subparsers, "profile", "vwwtorch.firmware.toolchain.profile",
        "instructions, MACs and instructions per MAC of every operator, counted under QEMU",
        f"Generate, build and run an int8 model on an emulated board (default {profile_target().name}) with the "
        "instruction counter, which attributes every instruction of an inference to its operator "
        "(exact, not sampled). Prints a table, writes OUT/profile.json and a bar chart OUT/profile.png.")
