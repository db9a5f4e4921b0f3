"""The boards the firmware targets, and the memory each one offers.

`qemu_m4` stands in for the SparkFun Edge: same Cortex-M4F, same flash and SRAM budgets (its linker
script uses them), so a model that fits the emulator fits the board.
"""

from __future__ import annotations

from dataclasses import dataclass

from vwwtorch.errors import UserError

KB = 1024

# Apollo3 Blue (SparkFun Edge): 1 MB flash of which the secure bootloader keeps the first 48 KB,
# and 384 KB SRAM.
APOLLO3_FLASH = 1024 * KB - 48 * KB
APOLLO3_SRAM = 384 * KB

# Before anything is compiled, `generate` checks a model against these: TFLM + app code measured
# at 65 KB on qemu_m4 (CMSIS-NN, MobileNetV1's five ops; benchmarks/firmware.py); 110 KB keeps room
# for more kernels. RAM beyond the arena and the stack (interpreter, resolver, logging buffers)
# measured at under 3 KB.
CODE_FLASH_ESTIMATE = 110 * KB
STATIC_RAM_ESTIMATE = 8 * KB

INSTALL_ARM_GCC = ("install the Arm cross compiler: sudo apt-get install gcc-arm-none-eabi "
                   "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib")
INSTALL_QEMU = "install QEMU: sudo apt-get install qemu-system-arm"
INSTALL_HOST_GCC = "install a C++ compiler and make: sudo apt-get install g++ make"


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    flash_bytes: int | None       # None: no limit worth checking (the host)
    ram_bytes: int | None
    stack_bytes: int              # main stack reserved in RAM
    kernels: tuple[str, ...]      # kernel variants the build supports; the first is the default
    toolchain_prefix: str         # "" for the host compiler
    install_hint: str
    emulator: str | None = None   # program that runs the image, if it is not native
    port_ready: bool = True       # False while the board's port lives in another change

    @property
    def default_kernels(self) -> str:
        return self.kernels[0]

    @property
    def cross(self) -> bool:
        return bool(self.toolchain_prefix)


BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("host", "this Linux machine (x86-64, for checking scores)", None, None, 0,
          ("reference",), "", INSTALL_HOST_GCC),
    Board("qemu_m4", "emulated Cortex-M4F (qemu-system-arm -machine mps2-an386), Apollo3 budgets",
          APOLLO3_FLASH, APOLLO3_SRAM, 16 * KB, ("cmsis_nn", "reference"), "arm-none-eabi-",
          INSTALL_ARM_GCC, emulator="qemu-system-arm"),
    Board("sparkfun_edge", "SparkFun Edge (Ambiq Apollo3, Cortex-M4F)", APOLLO3_FLASH, APOLLO3_SRAM,
          16 * KB, ("cmsis_nn", "reference"), "arm-none-eabi-", INSTALL_ARM_GCC),
)}


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise UserError(f"unknown board {name!r}; choose one of: {', '.join(BOARDS)}") from None


def check_fits(board: Board, model_bytes: int, arena_bytes: int) -> None:
    """Refuse a model that cannot fit the board, before anything is compiled."""
    if board.flash_bytes is not None and model_bytes + CODE_FLASH_ESTIMATE > board.flash_bytes:
        raise UserError(
            f"model too big for {board.name}: {model_bytes:,} B of model + ~{CODE_FLASH_ESTIMATE:,} B "
            f"of code exceed {board.flash_bytes:,} B of flash")
    if board.ram_bytes is not None:
        need = arena_bytes + board.stack_bytes + STATIC_RAM_ESTIMATE
        if need > board.ram_bytes:
            raise UserError(
                f"model too big for {board.name}: tensor arena {arena_bytes:,} B + stack "
                f"{board.stack_bytes:,} B + ~{STATIC_RAM_ESTIMATE:,} B static data exceed "
                f"{board.ram_bytes:,} B of RAM")
