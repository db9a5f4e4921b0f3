"""`vwwtorch firmware run`: run a firmware build on images and print its scores.

The images are converted to int8 tensors (images.py) and written to one raw
file; a native build reads it directly, an emulated one through semihosting inside
`qemu-system-arm -machine mps2-an386`. The scores are the firmware's own output lines, parsed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vwwtorch.plumbing.children import run_child
from vwwtorch.contract.detection_log import parse_detection
from vwwtorch.plumbing.defaults import default
from vwwtorch.plumbing.errors import UserError

ARENA_LINE = re.compile(r"arena (\d+) of (\d+) B used")
STACK_LINE = re.compile(r"stack (\d+) of (\d+) B used")


@dataclass
class ImageResult:
    source: str              # file, with "#k" for the k-th tensor of a multi-tensor file
    scores: list[int]
    label: str
    inference_us: int | None
    instructions: int | None = None   # guest instructions in Invoke() (emulated boards, when counted)
    op_instructions: list[int] | None = None  # the same, per operator in graph order
    cycles: int | None = None          # estimated Cortex-M4 cycles of the same (firmware/tools/m4_cycles.h)
    op_cycles: list[int] | None = None


@dataclass
class RunResult:
    images: list[ImageResult] = field(default_factory=list)
    arena_used: int | None = None
    stack_used: int | None = None
    output: str = ""


def emulator_command(board, program: Path, input_name: str, extra: list[str] | None = None) -> list[str]:
    """The board's emulator running `program`, which reads `input_name` through semihosting."""
    return ([board.emulator, *board.emulator_args, "-kernel", str(program),
             "-semihosting-config", f"enable=on,target=native,arg=vww,arg={input_name}"]
            + list(extra or []))


def parse_output(text: str) -> RunResult:
    result = RunResult(output=text)
    for raw in text.splitlines():
        line = raw.strip()
        detection = parse_detection(line)
        if detection is not None and detection.image is not None:
            result.images.append(ImageResult(source="", scores=list(detection.scores), label=detection.label,
                                             inference_us=detection.inference_us))
        elif (arena := ARENA_LINE.search(line)) is not None:
            result.arena_used = int(arena.group(1))
        elif (stack := STACK_LINE.search(line)) is not None:
            result.stack_used = int(stack.group(1))
    return result


def runnable_board(build_dir: str | Path, info):
    """The board of a build that `firmware run` can run (here or emulated); a UserError otherwise."""
    from vwwtorch.firmware.boards import get_board

    board = get_board(info.board)
    if not board.runs_here:
        raise UserError(f"{board.name} builds run on the board, not on this machine: "
                        + board.run_instead.format(build=build_dir))
    return board


def run_tensors(build_dir: str | Path, tensors: np.ndarray, *, timeout: float = 120.0,
                count_instructions: bool = False) -> RunResult:
    """Run the build on int8 tensors (N, rows, cols, channels); one result per tensor."""
    from vwwtorch.firmware.boards import INSTALL_QEMU
    from vwwtorch.firmware.toolchain.compiler import load_build

    info = load_build(build_dir)
    board = runnable_board(build_dir, info)
    program = Path(info.program)
    if not program.is_file():
        raise UserError(f"{program} is missing; run `vwwtorch firmware build` again")
    if count_instructions and not board.emulator:
        raise UserError(f"instructions are counted under QEMU; {board.name} runs natively "
                        "(build for an emulated board)")
    counts = None
    with tempfile.TemporaryDirectory(prefix="vww-run-") as work:
        input_name = "input.bin"
        np.ascontiguousarray(tensors, dtype=np.int8).tofile(Path(work) / input_name)
        if board.emulator:
            if shutil.which(board.emulator) is None:
                raise UserError(f"{board.emulator} is not installed; {INSTALL_QEMU}")
            extra = []
            if count_instructions:
                from vwwtorch.firmware.toolchain import insn_count

                extra = insn_count.qemu_arguments(program, f"{board.toolchain_prefix}nm",
                                                  Path(work) / "counts.txt")
            command = emulator_command(board, program, input_name, extra)
        else:
            command = [str(program), input_name]
        try:
            done = run_child(command, cwd=work, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"{board.name} run did not finish within {timeout:g} s "
                            "(raise --timeout)") from None
        if count_instructions and done.returncode == 0:
            counts = insn_count.read_counts(Path(work) / "counts.txt")
            op_counts = insn_count.read_op_counts(Path(work) / "counts.txt")
            op_cycles = insn_count.read_op_cycles(Path(work) / "counts.txt")
    result = parse_output(done.stdout)
    if done.returncode != 0 and count_instructions and "plugin" in done.stderr.lower():
        raise UserError(f"QEMU could not load the instruction counter: "
                        f"{done.stderr.strip().splitlines()[0]} (QEMU 7.2 or newer with TCG plugins)")
    if done.returncode != 0:
        errors = [line.strip() for line in (done.stdout + done.stderr).splitlines()
                  if "error" in line.lower()]
        detail = errors[0] if errors else f"exit status {done.returncode}"
        raise UserError(f"firmware on {board.name} failed: {detail}")
    if len(result.images) != len(tensors):
        raise UserError(f"firmware printed {len(result.images)} results for {len(tensors)} images")
    if counts is not None:
        if len(counts) != len(tensors):
            raise UserError(f"the instruction counter saw {len(counts)} inferences for "
                            f"{len(tensors)} images")
        for image, (instructions, cycles) in zip(result.images, counts):
            image.instructions, image.cycles = instructions, cycles
        for image, per_op, per_op_cycles in zip(result.images, op_counts, op_cycles):
            image.op_instructions, image.op_cycles = per_op, per_op_cycles
    return result


def run_files(build_dir: str | Path, images: list[str | Path], *, timeout: float = 120.0,
              count_instructions: bool = False) -> RunResult:
    from vwwtorch.firmware.toolchain.compiler import load_build
    from vwwtorch.firmware.codegen.generate import load_settings
    from vwwtorch.firmware.toolchain.images import load_tensors

    if not images:
        raise UserError("give at least one image")
    info = load_build(build_dir)
    runnable_board(build_dir, info)
    settings = load_settings(info.model_dir)
    tensors, names = [], []
    for image in images:
        loaded = load_tensors(image, settings.rows, settings.cols, settings.channels, settings.byte_to_input)
        tensors.append(loaded)
        names += [str(image)] if len(loaded) == 1 else [f"{image}#{k}" for k in range(len(loaded))]
    result = run_tensors(build_dir, np.concatenate(tensors), timeout=timeout,
                         count_instructions=count_instructions)
    for name, image_result in zip(names, result.images):
        image_result.source = name
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--build", required=True, help="folder from `vwwtorch firmware build`")
    from vwwtorch.firmware.boards import board_choices, boards_that_run_here, flashed_boards

    parser.add_argument("--board", help=f"check that the build is for this board "
                        f"({board_choices(boards_that_run_here())}; a {board_choices(flashed_boards())} build "
                        "runs on the board: `firmware flash`, `firmware monitor`)")
    parser.add_argument("--image", nargs="+", required=True, metavar="FILE",
                        help="images of the model's size (PNG, BMP, JPEG, PGM/PPM), .npy arrays "
                             "(uint8 pixels or int8 tensors) or raw int8 tensor files (.bin)")
    parser.add_argument("--timeout", type=float, default=default(run_files, "timeout"), help="seconds before giving up")
    parser.add_argument("--count-instructions", action="store_true",
                        help="emulated boards: count the guest instructions of each inference and "
                             "estimate its Cortex-M4 cycles (zero-wait-state memory; a QEMU TCG plugin, "
                             "compiled on first use with the host gcc)")


def run_command(args) -> int:
    from vwwtorch.firmware.toolchain.compiler import load_build

    info = load_build(args.build)
    if args.board and args.board != info.board:
        raise UserError(f"{args.build} was built for {info.board}, not {args.board}")
    result = run_files(args.build, args.image, timeout=args.timeout,
                       count_instructions=args.count_instructions)
    for image in result.images:
        extra = []
        if image.inference_us is not None:
            extra.append(f"{image.inference_us} us")
        if image.instructions is not None:
            extra.append(f"{image.instructions:,} instructions")
        if image.cycles is not None:
            extra.append(f"~{image.cycles:,} M4 cycles")
        timing = f" ({', '.join(extra)})" if extra else ""
        print(f"{image.source}: scores: {' '.join(map(str, image.scores))} -> {image.label}{timing}")
    extras = []
    if result.arena_used is not None:
        extras.append(f"arena used {result.arena_used:,} B")
    if result.stack_used is not None:
        extras.append(f"stack used {result.stack_used:,} B")
    if extras:
        print(f"{info.board}: " + ", ".join(extras))
    return 0
