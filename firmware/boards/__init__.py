"""The boards the firmware targets: the one registry. A board is an entry here plus its port in
firmware/boards/<name>/ (board.mk and its sources); no other code names a board.

Each entry says what the board is, what it offers (flash, RAM, stack), how it is built (toolchain,
kernel sets, third-party dependencies), and how its builds run: natively, under an emulator, or on
the device (flashed). The emulated Cortex-M4F stands in for the SparkFun Edge: same core, same flash
and SRAM budgets (its linker script uses them), so a model that fits the emulator fits the board.
"""

from __future__ import annotations

from dataclasses import dataclass

from vwwtorch.plumbing.errors import UserError
from vwwtorch.firmware.boards.sparkfun_edge.apollo3_image import MAX_APP_SIZE

KB = 1024

# Apollo3 Blue (SparkFun Edge): 1 MB flash of which the secure bootloader keeps the first 48 KB
# (the linker scripts' application region, from 0xC000), and 384 KB SRAM.
APOLLO3_FLASH = 1024 * KB - 48 * KB
APOLLO3_SRAM = 384 * KB

# What can really be flashed: `vwwtorch firmware flash` (the bootloader's wired update) stages the
# OTA image (128-byte header + application) at 0x20000, and the bootloader keeps the OTA descriptor
# in the last flash page, 0xFE000. The image must fit between the two, so the application is at
# most 909,184 bytes, not the 999,424 of the application region.
APOLLO3_APP_FLASH = MAX_APP_SIZE
APOLLO3_FLASH_NOTE = (f"of the {APOLLO3_FLASH:,} B after the bootloader, {APOLLO3_APP_FLASH:,} B can be "
                      "flashed: the bootloader stages the image at 0x20000, below its OTA descriptor page "
                      "at 0xFE000")

# The dependencies every build needs; a board lists those it adds.
COMMON_DEPS = ("tflite-micro", "flatbuffers", "gemmlowp")
CORTEX_M_DEPS = ("cmsis-nn", "cmsis")

INSTALL_ARM_GCC = ("install the Arm cross compiler: sudo apt-get install gcc-arm-none-eabi "
                   "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib")
INSTALL_QEMU = "install QEMU: sudo apt-get install qemu-system-arm"
INSTALL_HOST_GCC = "install a C++ compiler and make: sudo apt-get install g++ make"


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    flash_bytes: int | None       # what an application may use; None: no limit worth checking
    ram_bytes: int | None
    stack_bytes: int              # main stack reserved in RAM
    kernels: tuple[str, ...]      # kernel variants the build supports; the first is the default
    toolchain_prefix: str         # "" for the host compiler
    install_hint: str
    emulator: str | None = None   # program that runs the image, if it is not native
    emulator_args: tuple[str, ...] = ()  # the emulated machine
    extra_deps: tuple[str, ...] = ()  # dependencies beyond COMMON_DEPS (names in firmware/toolchain/deps.py)
    default_target: bool = False  # the board `firmware generate` checks a model against by default
    profiled: bool = False        # the board `firmware profile` counts instructions on by default
    flashed: bool = False         # its builds run on the device: `firmware flash`, `firmware monitor`
    flash_note: str = ""          # why its flash limit is what it is, for the size report
    # Before anything is compiled, `generate` checks a model against these estimates: flash for
    # TFLM + the app (everything but the model), and RAM beyond the tensor arena and the stack.
    code_flash_estimate: int = 0
    static_ram_estimate: int = 0
    # What to do instead of `firmware run` on a board that runs neither here nor emulated
    # ({build}: the build folder).
    run_instead: str = ""

    @property
    def default_kernels(self) -> str:
        return self.kernels[0]

    @property
    def cross(self) -> bool:
        return bool(self.toolchain_prefix)

    @property
    def runs_here(self) -> bool:
        """`firmware run` can run its build: natively (host) or under an emulator."""
        return not self.cross or self.emulator is not None

    @property
    def deps(self) -> tuple[str, ...]:
        return COMMON_DEPS + self.extra_deps

    def describe(self) -> str:
        return f"{self.name} ({self.title})"


# Estimates measured with MobileNetV1's five ops and CMSIS-NN (benchmarks/firmware.py), plus room
# for more kernels: TFLM + app code, with this firmware's Cortex-M4 kernels, is 93 KiB on qemu_m4
# (105 KiB with MLPerf's RGB first layer) and 99 to 115 KiB on the Edge (the Ambiq HAL, camera and
# UART code; `firmware build --board sparkfun_edge` of the quickstart model, person_detect and
# MLPerf's vww_96_int8, with and without --memory-budget). The packed weights (packed_weights.py)
# fill the flash budget up to the model plus this estimate, so it is kept close to what is measured:
# each KiB more leaves a KiB of weights unpacked on a model that fills the flash.
# Static RAM is under 3 KB on qemu_m4 (interpreter, resolver, log buffers) and 91 KB on the Edge,
# where the camera's 324x244 frame buffer alone takes 79 KB.
BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("host", "this Linux machine (x86-64, for checking scores)", None, None, 0,
          ("reference",), "", INSTALL_HOST_GCC),
    Board("qemu_m4", "emulated Cortex-M4F (qemu-system-arm -machine mps2-an386), Apollo3 budgets",
          APOLLO3_APP_FLASH, APOLLO3_SRAM, 16 * KB, ("cmsis_nn", "reference"), "arm-none-eabi-",
          INSTALL_ARM_GCC, emulator="qemu-system-arm", extra_deps=CORTEX_M_DEPS,
          emulator_args=("-machine", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none"),
          code_flash_estimate=120 * KB, static_ram_estimate=8 * KB, flash_note=APOLLO3_FLASH_NOTE,
          profiled=True),
    Board("sparkfun_edge", "SparkFun Edge (Ambiq Apollo3, Cortex-M4F)", APOLLO3_APP_FLASH, APOLLO3_SRAM,
          16 * KB, ("cmsis_nn", "reference"), "arm-none-eabi-", INSTALL_ARM_GCC,
          extra_deps=CORTEX_M_DEPS + ("ambiq-sdk", "sparkfun-bsp"), default_target=True, flashed=True,
          code_flash_estimate=120 * KB, static_ram_estimate=100 * KB, flash_note=APOLLO3_FLASH_NOTE,
          run_instead="flash it with `vwwtorch firmware flash --build {build} --port PORT` and read "
                      "its scores with `vwwtorch firmware monitor --port PORT`"),
)}


def default_target() -> Board:
    return next(b for b in BOARDS.values() if b.default_target)


def profile_target() -> Board:
    return next(b for b in BOARDS.values() if b.profiled)


def boards_that_run_here() -> list[Board]:
    return [b for b in BOARDS.values() if b.runs_here]


def flashed_boards() -> list[Board]:
    return [b for b in BOARDS.values() if b.flashed]


def board_choices(boards=None) -> str:
    """`host, qemu_m4 or sparkfun_edge`, for help texts and messages."""
    names = [b.name for b in (boards if boards is not None else BOARDS.values())]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise UserError(f"unknown board {name!r}; choose one of: {', '.join(BOARDS)}") from None


def check_fits(board: Board, model_bytes: int, arena_bytes: int) -> None:
    """Refuse a model that cannot fit the board, before anything is compiled."""
    code = board.code_flash_estimate
    if board.flash_bytes is not None and model_bytes + code > board.flash_bytes:
        raise UserError(
            f"model too big for {board.name}: {model_bytes:,} B of model + ~{code:,} B "
            f"of code exceed the {board.flash_bytes:,} B of flash an application can use")
    if board.ram_bytes is not None:
        static = board.static_ram_estimate
        need = arena_bytes + board.stack_bytes + static
        if need > board.ram_bytes:
            raise UserError(
                f"model too big for {board.name}: tensor arena {arena_bytes:,} B + stack "
                f"{board.stack_bytes:,} B + ~{static:,} B static data exceed "
                f"{board.ram_bytes:,} B of RAM")
