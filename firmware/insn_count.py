"""Instructions per inference under QEMU, with firmware/tools/insn_count.c (a TCG plugin).

The firmware calls two empty functions, `vww_inference_begin` and `vww_inference_end`, around every
`Invoke()`, and `vww_op_begin` / `vww_op_end` around every operator (TFLM's profiler hook). The
plugin counts the guest instructions executed between them: per inference, and per operator. It is
compiled once with the host's C compiler into the cache (keyed by the source's digest); its
addresses come from the ELF's symbol table.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from vwwtorch.contract.children import run_child
from vwwtorch.contract.errors import UserError
from vwwtorch.contract.outputs import staged_path

MARKERS = ("vww_inference_begin", "vww_inference_end")
OP_MARKERS = ("vww_op_begin", "vww_op_end")
OPS_PREFIX = "ops"


def plugin_path() -> Path:
    """The compiled plugin, built on first use."""
    from vwwtorch.firmware.build import firmware_dir
    from vwwtorch.contract.cache import cache_root

    source = firmware_dir() / "tools" / "insn_count.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
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
                               str(source)], capture_output=True, text=True)
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


def read_counts(counts_file: Path) -> list[int]:
    """One count per inference, in order."""
    return [int(line) for line in _lines(counts_file) if line.strip().isdigit()]  # the last line is "total N"


def read_op_counts(counts_file: Path) -> list[list[int]]:
    """Per inference, the instructions of each operator in graph order (empty when not counted)."""
    return [[int(v) for v in line.split()[1:]] for line in _lines(counts_file)
            if line.startswith(OPS_PREFIX + " ") or line == OPS_PREFIX]
