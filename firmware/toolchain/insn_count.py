"""Instructions and estimated cycles per inference under QEMU, with firmware/tools/insn_count.c (a TCG
plugin) and its Cortex-M4 cycle model (firmware/tools/m4_cycles.c).

The firmware calls two empty functions, `vww_inference_begin` and `vww_inference_end`, around every
`Invoke()`, and `vww_op_begin` / `vww_op_end` around every operator (TFLM's profiler hook). The
plugin counts the guest instructions executed between them, exactly, and estimates their Cortex-M4
cycles (the Technical Reference Manual's timings, zero-wait-state memory): per inference, and per
operator. It is compiled once with the host's C compiler into the cache (keyed by the sources'
digest); its addresses come from the ELF's symbol table.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from vwwtorch.plumbing.children import run_child
from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.outputs import staged_path

MARKERS = ("vww_inference_begin", "vww_inference_end")
OP_MARKERS = ("vww_op_begin", "vww_op_end")
PLUGIN_SOURCES = ("insn_count.c", "m4_cycles.c", "m4_cycles.h")
INFERENCE_PREFIX = "inference"
OPS_PREFIX = "ops"
OP_CYCLES_PREFIX = "op_cycles"


def plugin_path() -> Path:
    """The compiled plugin, built on first use."""
    from vwwtorch.firmware.toolchain.compiler import firmware_dir
    from vwwtorch.plumbing.cache import cache_root

    tools = firmware_dir() / "tools"
    digest = hashlib.sha256(b"".join((tools / name).read_bytes() for name in PLUGIN_SOURCES)).hexdigest()[:12]
    target = cache_root() / "firmware" / "tools" / f"insn_count-{digest}.so"
    if target.is_file():
        return target
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise UserError("counting instructions needs a host C compiler for the QEMU plugin: "
                        "sudo apt-get install gcc")
    target.parent.mkdir(parents=True, exist_ok=True)
    with staged_path(target, checked=True, unique=True) as partial:
        done = run_child([compiler, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(partial),
                               *(str(tools / name) for name in PLUGIN_SOURCES if name.endswith(".c"))],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f"compiling the QEMU plugin failed: {done.stderr.strip().splitlines()[0]}")
    return target


def _symbols(program: Path, nm: str) -> dict[str, int]:
    symbols = run_child([nm, str(program)], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in symbols.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in MARKERS + OP_MARKERS:
            found[parts[2]] = int(parts[0], 16)
    return found


def marker_addresses(program: Path, nm: str, found: dict[str, int] | None = None) -> tuple[int, int]:
    """Addresses of the two inference marker functions in the ELF (`found`: its symbols, if read)."""
    found = _symbols(program, nm) if found is None else found
    missing = [m for m in MARKERS if m not in found]
    if missing:
        raise UserError(f"{program} has no {', '.join(missing)}; rebuild it with "
                        "`vwwtorch firmware build`")
    return found[MARKERS[0]], found[MARKERS[1]]


def qemu_arguments(program: Path, nm: str, counts_file: Path) -> list[str]:
    found = _symbols(program, nm)
    begin, end = marker_addresses(program, nm, found)
    per_op = (f",op_begin={found[OP_MARKERS[0]]:#x},op_end={found[OP_MARKERS[1]]:#x}"
              if all(m in found for m in OP_MARKERS) else "")
    return ["-plugin", f"{plugin_path()},begin={begin:#x},end={end:#x}{per_op},out={counts_file}"]


def _lines(counts_file: Path) -> list[str]:
    try:
        return Path(counts_file).read_text().splitlines()
    except FileNotFoundError:
        raise UserError("QEMU wrote no instruction counts (does this QEMU support TCG plugins?)") from None


def _rows(counts_file: Path, prefix: str) -> list[list[int]]:
    return [[int(v) for v in line.split()[1:]] for line in _lines(counts_file)
            if line.startswith(prefix + " ") or line == prefix]


def read_counts(counts_file: Path) -> list[tuple[int, int]]:
    """(instructions, estimated cycles) per inference, in order."""
    return [(row[0], row[1]) for row in _rows(counts_file, INFERENCE_PREFIX)]


def read_op_counts(counts_file: Path) -> list[list[int]]:
    """Per inference, the instructions of each operator in graph order (empty when not counted)."""
    return _rows(counts_file, OPS_PREFIX)


def read_op_cycles(counts_file: Path) -> list[list[int]]:
    """Per inference, the estimated cycles of each operator in graph order (empty when not counted)."""
    return _rows(counts_file, OP_CYCLES_PREFIX)
