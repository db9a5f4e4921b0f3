"""`vwwtorch firmware profile`: instructions, estimated cycles, MACs and both per MAC, of every operator.

The model is generated and built for an emulated board and run under QEMU with the instruction
counter (firmware/tools/insn_count.c). The firmware marks every operator's Invoke() through TFLM's
profiler hook, so the count of each operator is exact, not sampled; the counts of all operators plus
the interpreter's own loop make the inference's total. Cycles are the counter's Cortex-M4 estimate
(firmware/tools/m4_cycles.h: the Technical Reference Manual's timings with zero-wait-state memory; no
flash wait states, cache or bus contention). MACs come from the model's shapes:
CONV_2D out_h x out_w x out_c x k_h x k_w x in_c, DEPTHWISE_CONV_2D out_h x out_w x out_c x k_h x
k_w, FULLY_CONNECTED out x in; other operators have none.

Writes OUT/profile.json, OUT/profile.png (a bar chart of instructions per operator) and keeps the
generated model and the build in OUT/model and OUT/build.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.outputs import check_folder, removed_unless_done
from vwwtorch.firmware.toolchain.compiler import CompileFailed

PROFILE_JSON = "profile.json"
PROFILE_PNG = "profile.png"
CYCLE_MODEL = ("estimated Cortex-M4 cycles: the TRM's instruction timings with zero-wait-state memory "
               "(no flash wait states, cache or bus contention); firmware/tools/m4_cycles.h")
MAX_IMAGES = 1000  # each is a whole inference under QEMU (seconds); the mean settles long before


@dataclass
class OpProfile:
    index: int
    op: str
    output_shape: list[int]
    macs: int
    instructions: int
    cycles: int

    @property
    def per_mac(self) -> float | None:
        return self.instructions / self.macs if self.macs else None

    @property
    def cycles_per_mac(self) -> float | None:
        return self.cycles / self.macs if self.macs else None


def operator_macs(operator) -> int:
    """Multiply-accumulates of one operator of `vwwtorch.contract.tflite.read_tflite`'s model."""
    from vwwtorch.firmware.codegen.memory_plan.chain_op import CHAIN_OP_NAME, chain_layers, layer_macs

    if operator.op == CHAIN_OP_NAME:
        return sum(layer_macs(layer) for layer, _ in chain_layers(operator.custom_options))
    if operator.op not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        return 0
    weights = operator.inputs[1].shape
    out = operator.outputs[0].shape
    if operator.op == "CONV_2D":  # weights [out_c, k_h, k_w, in_c]
        return math.prod(out) * math.prod(weights[1:])
    if operator.op == "DEPTHWISE_CONV_2D":  # weights [1, k_h, k_w, out_c]
        return math.prod(out) * weights[1] * weights[2]
    return math.prod(out) * weights[-1]  # FULLY_CONNECTED: weights [out, in]


def profile_model(tflite: str | Path, out: str | Path, *, board: str | None = None, kernels: str | None = None,
                  images: int = 1, jobs: int | None = None, quiet: bool = False,
                  memory_budget: int | None = None, stream_layers: int | None = None,
                  flash_budget: int | None = None) -> dict:
    """Build, run and count; returns what profile.json holds. `memory_budget`, `stream_layers`,
    `flash_budget`: as `firmware generate`."""
    from vwwtorch.contract.tflite import load_tflite
    from vwwtorch.firmware.boards import get_board, profile_target

    target = get_board(board) if board else profile_target()
    board = target.name
    if not target.emulator:
        raise UserError(f"instructions are counted under QEMU; {board} is not an emulated board "
                        f"(use --board {profile_target().name})")
    if not 1 <= images <= MAX_IMAGES:
        raise UserError(f"--images must be between 1 and {MAX_IMAGES:,}, got {images:,}")
    kernels = kernels or target.default_kernels
    if kernels not in target.kernels:
        raise UserError(f"{board} builds with {' or '.join(target.kernels)} kernels, not {kernels}")
    _, info = load_tflite(tflite)
    out = check_folder(out, overwrite=True)  # incremental: an earlier profile's build is reused
    with removed_unless_done(out, keep_for=(CompileFailed,)):
        return _profile(tflite, info, out, board, kernels, images, jobs, quiet, memory_budget, stream_layers,
                        flash_budget)


def _profile(tflite, info, out: Path, board: str, kernels: str, images: int, jobs, quiet: bool,
             memory_budget, stream_layers, flash_budget) -> dict:
    from vwwtorch.contract.tflite import load_tflite
    from vwwtorch.firmware.toolchain.compiler import build
    from vwwtorch.firmware.codegen.generate import generate
    from vwwtorch.firmware.toolchain.run import run_tensors

    settings = generate(tflite, out / "model", board=board, memory_budget=memory_budget,
                        stream_layers=stream_layers, flash_budget=flash_budget)
    if settings.memory_plan is not None:  # the firmware runs the rewritten model
        from vwwtorch.firmware.codegen.generate import MEMORY_MODEL

        _, info = load_tflite(out / "model" / MEMORY_MODEL)
    built = build(board, out / "model", out / "build", kernels=kernels, jobs=jobs, quiet=quiet)
    tensors = np.random.default_rng(0).integers(-128, 128, size=(images, settings.rows, settings.cols,
                                                                  settings.channels), dtype=np.int8)
    result = run_tensors(out / "build", tensors, timeout=600, count_instructions=True)
    per_image = [image.op_instructions for image in result.images]
    if any(not counts or len(counts) != len(info.operators) for counts in per_image):
        raise UserError(f"the instruction counter saw {len(per_image[0] or [])} operators, the model has "
                        f"{len(info.operators)}; rebuild the firmware with this vwwtorch")
    mean = np.mean(np.asarray(per_image, dtype=np.float64), axis=0)
    mean_cycles = np.mean(np.asarray([image.op_cycles for image in result.images], dtype=np.float64), axis=0)
    ops = [OpProfile(index=i, op=o.op, output_shape=list(o.outputs[0].shape), macs=operator_macs(o),
                     instructions=int(round(c)), cycles=int(round(k)))
           for i, (o, c, k) in enumerate(zip(info.operators, mean, mean_cycles))]
    total = float(np.mean([image.instructions for image in result.images]))
    cycles = float(np.mean([image.cycles for image in result.images]))
    return {
        "model": str(tflite), "board": board, "kernels": kernels, "images": images,
        "instructions_per_inference": int(round(total)),
        "instructions_in_ops": sum(o.instructions for o in ops),
        "cycles_per_inference": int(round(cycles)),
        "cycles_in_ops": sum(o.cycles for o in ops),
        "cycle_model": CYCLE_MODEL,
        "macs": sum(o.macs for o in ops),
        "flash_bytes": built.text + built.data,
        "packed_weights_bytes": built.packed_bytes,
        "arena_used": result.arena_used,
        "ops": [{**asdict(o), "instructions_per_mac": o.per_mac, "cycles_per_mac": o.cycles_per_mac} for o in ops],
    }


def summary(profile: dict) -> list[dict]:
    """Instructions and cycles per operator kind, the most cycles first."""
    kinds: dict[str, dict] = {}
    for o in profile["ops"]:
        kind = kinds.setdefault(o["op"], {"op": o["op"], "count": 0, "macs": 0, "instructions": 0, "cycles": 0})
        kind["count"] += 1
        kind["macs"] += o["macs"]
        kind["instructions"] += o["instructions"]
        kind["cycles"] += o["cycles"]
    return sorted(kinds.values(), key=lambda k: -k["cycles"])


def _per_mac(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def table(profile: dict) -> list[str]:
    total, cycles = profile["instructions_per_inference"], profile["cycles_per_inference"]
    lines = [f"{'#':>3} {'op':<18} {'output':<12} {'MACs':>11} {'instructions':>13} {'instr/MAC':>9} "
             f"{'est. cycles':>12} {'cyc/MAC':>7} {'share':>6}"]
    for o in profile["ops"]:
        shape = "x".join(map(str, o["output_shape"][1:]))
        lines.append(f"{o['index']:>3} {o['op']:<18} {shape:<12} {o['macs']:>11,} {o['instructions']:>13,} "
                     f"{_per_mac(o['instructions_per_mac']):>9} {o['cycles']:>12,} "
                     f"{_per_mac(o['cycles_per_mac']):>7} {100 * o['cycles'] / cycles:>5.1f}%")
    overhead = total - profile["instructions_in_ops"]
    cycle_overhead = cycles - profile["cycles_in_ops"]
    lines.append(f"    {'(interpreter loop)':<18} {'':<12} {'':>11} {overhead:>13,} {'':>9} {cycle_overhead:>12,} "
                 f"{'':>7} {100 * cycle_overhead / cycles:>5.1f}%")
    lines.append(f"    {'total':<18} {'':<12} {profile['macs']:>11,} {total:>13,} "
                 f"{total / profile['macs']:>9.2f} {cycles:>12,} {cycles / profile['macs']:>7.2f} 100.0%")
    lines.append(f"    cycles: {profile['cycle_model']}")
    return lines


def figure(profile: dict):
    from matplotlib.figure import Figure

    ops = profile["ops"]
    fig = Figure(figsize=(8, max(4, 0.22 * len(ops) + 1.5)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    kinds = list(dict.fromkeys(o["op"] for o in ops))
    colors = {k: f"C{i % 10}" for i, k in enumerate(kinds)}
    positions = np.arange(len(ops))[::-1]
    ax.barh(positions, [o["cycles"] / 1e6 for o in ops], color=[colors[o["op"]] for o in ops])
    ax.set_yticks(positions, [f"{o['index']} {o['op'].replace('_CONV_2D', '').lower()} "
                              f"{'x'.join(map(str, o['output_shape'][1:]))}" for o in ops], fontsize=7)
    for y, o in zip(positions, ops):
        if o["cycles_per_mac"] is not None:
            ax.text(o["cycles"] / 1e6, y, f" {o['cycles_per_mac']:.2f}/MAC", va="center", fontsize=6)
    ax.set_xlabel("million Cortex-M4 cycles, estimated (label: cycles per MAC)")
    ax.set_title(f"{Path(profile['model']).name} on {profile['board']} ({profile['kernels']}): "
                 f"{profile['cycles_per_inference'] / 1e6:.2f} M cycles (est.), "
                 f"{profile['instructions_per_inference'] / 1e6:.2f} M instructions per inference", fontsize=9)
    from matplotlib.patches import Patch

    ax.set_xlim(left=0)
    ax.legend(handles=[Patch(color=colors[k], label=k) for k in kinds], fontsize=7, loc="lower right")
    return fig


def write_profile(profile: dict, out: Path) -> None:
    from vwwtorch.plumbing.outputs import write_file

    write_file(out / PROFILE_JSON, json.dumps(profile, indent=1) + "\n", checked=True)
    fig = figure(profile)
    fig.savefig(out / PROFILE_PNG)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tflite", required=True, help="int8 model to profile")
    parser.add_argument("--out", required=True,
                        help="folder for profile.json, profile.png, the generated model and the build "
                             "(incremental: reuse it)")
    from vwwtorch.firmware.boards import profile_target

    parser.add_argument("--board", default=profile_target().name, help="emulated board to count on")
    parser.add_argument("--kernels", choices=("cmsis_nn", "reference"),
                        help="kernel implementations (default: the board's, cmsis_nn on Cortex-M)")
    parser.add_argument("--images", type=int, default=1, help="random int8 images to average over")
    parser.add_argument("--jobs", "-j", type=int, help="parallel compile jobs (default: all cores)")
    from vwwtorch.firmware.codegen.generate import add_flash_arguments, add_memory_arguments

    add_memory_arguments(parser)
    add_flash_arguments(parser)


def run_command(args) -> int:
    out = check_folder(args.out, overwrite=True)
    with removed_unless_done(out, keep_for=(CompileFailed,)):
        profile = profile_model(args.tflite, out, board=args.board, kernels=args.kernels, images=args.images,
                                jobs=args.jobs, memory_budget=args.memory_budget,
                                stream_layers=args.stream_layers,
                                flash_budget=args.flash_budget)
        write_profile(profile, out)
    print("\n".join(table(profile)))
    print("by operator kind (share of cycles): " + ", ".join(
        f"{k['op']} x{k['count']} {100 * k['cycles'] / profile['cycles_per_inference']:.1f}%"
        for k in summary(profile)))
    print(f"wrote {out / PROFILE_JSON} and {out / PROFILE_PNG}")
    return 0
