"""`vwwtorch firmware build`: compile firmware/ for a board with a generated model folder.

Drives firmware/Makefile. TFLM and CMSIS-NN objects go to a folder in the cache keyed by board,
kernels, compiler, flags and dependency pins, so they are compiled once and shared by every model
and output folder; the app and model objects go to `--out`. Prints the image's flash and RAM use
against the board's limits and records them in `<out>/build.json` for `firmware run`.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vwwtorch.plumbing.children import child_group, run_child
from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.outputs import check_folder, removed_unless_done, write_file
from vwwtorch.plumbing.records import load_record

BUILD_INFO = "build.json"


class CompileFailed(UserError):
    """The compiler or linker failed; the output folder keeps its log."""


@dataclass
class BuildResult:
    board: str
    kernels: str
    program: str
    model_dir: str
    text: int
    data: int
    bss: int
    model_bytes: int
    arena_size: int
    stack_bytes: int
    flash_bytes: int | None      # used, of the board's limit below
    ram_bytes: int | None
    flash_limit: int | None
    ram_limit: int | None
    packed_bytes: int = 0        # the 1x1 convolutions' weights packed for the kernels (model_kernels.cc)
    packed_layers: int = 0       # convolutions packed within the flash budget
    left_out: list[str] = field(default_factory=list)  # convolutions the flash budget left unpacked

    @property
    def code_bytes(self) -> int:
        """Flash that is neither the model nor its packed weights: TFLM, CMSIS-NN, the app, the C library."""
        return self.text + self.data - self.model_bytes - self.packed_bytes


def firmware_dir() -> Path:
    """The firmware sources (Makefile, core/, boards/): the `vwwtorch.firmware` package folder, installed or not."""
    return Path(__file__).resolve().parents[1]


def program_name(make_args: list[str]) -> str:
    """The file name the board's board.mk gives the linked program (PROGRAM)."""
    done = run_child(make_args + ["-s", "print-program"], capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise UserError(f"firmware/Makefile failed: {done.stderr.strip() or 'no PROGRAM'}")
    return done.stdout.strip()


def check_tools(board) -> None:
    from vwwtorch.firmware.boards import INSTALL_HOST_GCC

    if shutil.which("make") is None:
        raise UserError(f"`make` is not installed; {INSTALL_HOST_GCC}")
    compiler = f"{board.toolchain_prefix}g++"
    if shutil.which(compiler) is None:
        raise UserError(f"{compiler} is not installed; {board.install_hint}")


def _tool_version(program: str) -> str:
    try:
        return run_child([program, "--version"], capture_output=True, text=True,
                              check=False).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def tflm_build_dir(board, kernels: str, make_args: list[str], deps: dict[str, Path]) -> Path:
    """Shared object folder, keyed on the compiler, the exact TFLM flags and the dependency trees."""
    from vwwtorch.plumbing.cache import cache_root
    from vwwtorch.firmware.toolchain.deps import STAMP

    flags = run_child(make_args + ["-s", "print-tflm-flags"], capture_output=True, text=True)
    if flags.returncode != 0:
        raise UserError(f"firmware/Makefile failed: {flags.stderr.strip() or flags.stdout.strip()}")
    key = hashlib.sha256()
    key.update(_tool_version(f"{board.toolchain_prefix}g++").encode())
    key.update(flags.stdout.encode())
    for name in sorted(deps):
        key.update((deps[name] / STAMP).read_bytes())
    return cache_root() / "firmware" / "build" / f"tflm-{board.name}-{kernels}-{key.hexdigest()[:12]}"


def _make(args: list[str], log_path: Path, total: int, quiet: bool) -> tuple[int, str]:
    """Run make, advancing a progress bar per compiled file; returns (status, output)."""
    from vwwtorch.plumbing.progress import progress_bar

    lines: list[str] = []
    with progress_bar(total=total, unit="file", desc="compiling", disable=True if quiet or total == 0 else None,
              leave=False) as bar:
        # make and its compilers are one process group, ended with us (see contract/children.py).
        with child_group(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if " -c " in line:
                    bar.update(1)
            status = process.wait()
    output = "".join(lines)
    log_path.write_text(output)
    return status, output


def _explain_failure(output: str, board, log_path: Path) -> UserError:
    overflow = re.search(r"region `(\w+)' overflowed by (\d+) bytes", output)
    if overflow:
        region, extra = overflow.group(1), int(overflow.group(2))
        return CompileFailed(f"model too big for {board.name}: {region} overflowed by {extra:,} bytes")
    diagnostics = re.compile(r"(fatal error|error):|undefined reference|No rule to make target")
    first_error = next((line.strip() for line in output.splitlines()
                        if diagnostics.search(line)), "see the log")
    return CompileFailed(f"firmware build failed: {first_error} (full log: {log_path})")


def _sizes(program: Path, board) -> tuple[int, int, int, int, int]:
    size_tool = f"{board.toolchain_prefix}size" if board.cross else "size"
    nm_tool = f"{board.toolchain_prefix}nm" if board.cross else "nm"
    out = run_child([size_tool, str(program)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(x) for x in out.splitlines()[1].split()[:3])
    symbols = run_child([nm_tool, "-S", str(program)], capture_output=True, text=True,
                             check=True).stdout
    from vwwtorch.firmware.codegen.packed_weights import SYMBOL

    sizes = {}
    for line in symbols.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] in ("g_model_data", SYMBOL):
            sizes[parts[3]] = int(parts[1], 16)
    return text, data, bss, sizes.get("g_model_data", 0), sizes.get(SYMBOL, 0)


def build(board_name: str, model_dir: str | Path, out_dir: str | Path, *, kernels: str | None = None,
          jobs: int | None = None, quiet: bool = False) -> BuildResult:
    from vwwtorch.firmware.boards import get_board
    from vwwtorch.firmware.toolchain.deps import require
    from vwwtorch.firmware.codegen.generate import load_settings

    board = get_board(board_name)
    fw = firmware_dir()
    if not (fw / "boards" / board.name / "board.mk").is_file():
        raise UserError(f"the {board.name} port is not in this firmware tree yet")
    kernels = kernels or board.default_kernels
    if kernels not in board.kernels:
        raise UserError(f"{board.name} builds with kernels {', '.join(board.kernels)}, not {kernels}")
    model_dir = Path(model_dir).resolve()
    if not model_dir.is_dir():
        raise UserError(f"model folder {model_dir} does not exist (make it with "
                        "`vwwtorch firmware generate`)")
    settings = load_settings(model_dir)
    if not (model_dir / "model_kernels.cc").is_file():
        raise UserError(f"{model_dir} was generated by an older vwwtorch (no model_kernels.cc); "
                        "run `vwwtorch firmware generate` again")
    check_tools(board)
    deps = require(board.name)
    out_dir = check_folder(out_dir, overwrite=True)  # incremental: an earlier build is reused
    with removed_unless_done(out_dir, keep_for=(CompileFailed,)):
        return _build(board, kernels, model_dir, out_dir, settings, deps, jobs, quiet)


def _build(board, kernels: str, model_dir: Path, out_dir: Path, settings, deps: dict[str, Path], jobs: int | None,
           quiet: bool) -> BuildResult:
    fw = firmware_dir()
    make_args = ["make", "-C", str(fw), f"-j{jobs or os.cpu_count() or 1}", f"BOARD={board.name}",
                 f"KERNELS={kernels}", f"MODEL_DIR={model_dir}", f"OUT={out_dir}",
                 f"DEPS={deps['tflite-micro'].parent}", f"STACK_SIZE={board.stack_bytes or 16384}"]
    tflm_dir = tflm_build_dir(board, kernels, make_args, deps)
    tflm_dir.mkdir(parents=True, exist_ok=True)
    make_args.append(f"TFLM_BUILD={tflm_dir}")

    # A different model folder, board or kernel set in the same --out: rebuild the app objects.
    config = {"board": board.name, "kernels": kernels, "model_dir": str(model_dir),
              "tflm_build": str(tflm_dir)}
    config_file = out_dir / "build_config.json"
    if config_file.exists() and json.loads(config_file.read_text()) != config:
        shutil.rmtree(out_dir / "obj", ignore_errors=True)
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / BUILD_INFO).unlink(missing_ok=True)  # a failed build must not leave a runnable one

    dry = run_child(make_args + ["-n"], capture_output=True, text=True)
    to_compile = sum(" -c " in line for line in dry.stdout.splitlines())
    if not quiet and any(str(tflm_dir) in line for line in dry.stdout.splitlines() if " -c " in line):
        print(f"compiling TFLM for {board.name} ({kernels} kernels); it is kept in {tflm_dir}")
    # One build at a time per shared TFLM folder (parallel tests, two terminals).
    with open(str(tflm_dir) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        status, output = _make(make_args, out_dir / "build.log", to_compile, quiet)
    if status != 0:
        raise _explain_failure(output, board, out_dir / "build.log")

    program = out_dir / program_name(make_args)
    text, data, bss, model_bytes, packed_bytes = _sizes(program, board)
    result = BuildResult(
        board=board.name, kernels=kernels, program=str(program), model_dir=str(model_dir),
        text=text, data=data, bss=bss, model_bytes=model_bytes or settings.model_bytes,
        arena_size=settings.arena_size, stack_bytes=board.stack_bytes,
        flash_bytes=text + data if board.flash_bytes else None,
        ram_bytes=data + bss if board.ram_bytes else None,
        flash_limit=board.flash_bytes, ram_limit=board.ram_bytes, packed_bytes=packed_bytes,
        packed_layers=len((settings.packed_weights or {}).get("layers", [])),
        left_out=[layer["layer"] for layer in (settings.packed_weights or {}).get("left_out", [])])
    if result.flash_bytes is not None and result.flash_bytes > board.flash_bytes:
        # The linker allows the whole application region; the bootloader's staging does not.
        remedy = "see firmware/boards/__init__.py"
        over = result.flash_bytes - board.flash_bytes
        packed = settings.packed_weights or {}
        if packed.get("budget") is not None and packed.get("bytes", 0) >= over:
            # The packed weights filled a budget computed with the board's code estimate; the code
            # came out bigger. A flash budget `over` bytes smaller leaves that much more unpacked.
            budget = packed["budget"] + settings.model_bytes + board.code_flash_estimate - over
            remedy = f"generate again with --flash-budget {budget // 1024} (KiB) to pack fewer weights"
        raise UserError(f"model too big for {board.name}: the image takes {result.flash_bytes:,} B of "
                        f"flash, more than the {board.flash_bytes:,} B an application flashed through "
                        f"the bootloader can use; {remedy}")
    write_file(out_dir / BUILD_INFO, json.dumps(asdict(result), indent=2) + "\n", checked=True)
    return result


def load_build(build_dir: str | Path) -> BuildResult:
    if not Path(build_dir).is_dir():
        raise UserError(f"build directory {build_dir} does not exist (run `vwwtorch firmware build`)")
    return load_record(Path(build_dir) / BUILD_INFO, BuildResult, remedy="build again",
                       missing=f"{build_dir} is not a firmware build directory (no {BUILD_INFO}; run "
                               "`vwwtorch firmware build`)")


def size_report(r: BuildResult) -> list[str]:
    from vwwtorch.firmware.boards import get_board

    lines = [f"built {r.program} ({r.board}, {r.kernels} kernels)",
             f"  text {r.text:,}  data {r.data:,}  bss {r.bss:,} bytes"]
    if r.flash_limit:
        lines.append(f"  flash {r.flash_bytes:,} of {r.flash_limit:,} B ({100 * r.flash_bytes / r.flash_limit:.1f}%):"
                     f" model {r.model_bytes:,}, packed weights {r.packed_bytes:,}, TFLM + app {r.code_bytes:,}")
        note = get_board(r.board).flash_note
        if note:
            lines.append(f"        {note}")
        if r.left_out:
            lines.append(f"        packed weights for {r.packed_layers} convolutions; left out by the flash budget, so "
                         f"unpacked (slower, same scores): {', '.join(r.left_out)}")
    if r.ram_limit:
        other = r.ram_bytes - r.arena_size - r.stack_bytes
        lines.append(f"  RAM   {r.ram_bytes:,} of {r.ram_limit:,} B ({100 * r.ram_bytes / r.ram_limit:.1f}%):"
                     f" arena {r.arena_size:,}, stack {r.stack_bytes:,}, other {other:,}")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vwwtorch.firmware.boards import BOARDS

    parser.add_argument("--board", required=True, metavar="BOARD",
                        help="; ".join(board.describe() for board in BOARDS.values())
                        + " (a board's extra dependencies: `vwwtorch firmware deps --board BOARD`)")
    parser.add_argument("--model-dir", required=True, help="folder from `vwwtorch firmware generate`")
    parser.add_argument("--out", required=True, help="build folder (incremental: reuse it)")
    parser.add_argument("--kernels", choices=("cmsis_nn", "reference"),
                        help="kernel implementations (default: cmsis_nn on Cortex-M, reference on host)")
    parser.add_argument("--jobs", "-j", type=int, help="parallel compile jobs (default: all cores)")


def run_command(args) -> int:
    result = build(args.board, args.model_dir, args.out, kernels=args.kernels, jobs=args.jobs)
    print("\n".join(size_report(result)))
    return 0
