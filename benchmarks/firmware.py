"""Firmware footprint and cost: flash, RAM, tensor arena and instructions per inference.

    python benchmarks/firmware.py [--tflite model_int8.tflite] [--images 5] [--out DIR]

Builds the model for the emulated Cortex-M4F (`qemu_m4`, Apollo3 budgets) with the CMSIS-NN and
with the reference kernels, and for the host (and, when `vwwtorch firmware deps --board
sparkfun_edge` has been run, for the SparkFun Edge: built, not run); runs each on the same random
int8 images and reports:
the image's flash (model, TFLM + app) and RAM, the tensor arena (configured, and used on the
device), instructions per inference counted under QEMU by firmware/tools/insn_count.c, QEMU's wall
time, and the host's inference time. Scores are checked equal across all builds.

Without --tflite it uses TFLM's person_detect.tflite from the dependency cache: the same
MobileNetV1 0.25, 96x96x1, five-op model as vwwtorch's default (pass the quickstart's
export/model_int8.tflite to measure that one). Needs `vwwtorch firmware deps`. TFLM is compiled
once into the cache; later runs take seconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vwwtorch.plumbing.errors import UserError
from vwwtorch.firmware.boards import BOARDS
from vwwtorch.firmware.toolchain.compiler import build
from vwwtorch.firmware.toolchain.deps import require
from vwwtorch.firmware.codegen.generate import generate
from vwwtorch.firmware.toolchain.run import run_tensors


def measure(board: str, kernels: str, model_dir: Path, out: Path, tensors: np.ndarray, jobs: int,
            count: bool) -> dict:
    started = time.monotonic()
    built = build(board, model_dir, out / f"{board}-{kernels}", kernels=kernels, jobs=jobs, quiet=True)
    build_s = time.monotonic() - started
    started = time.monotonic()
    result = run_tensors(out / f"{board}-{kernels}", tensors, timeout=600, count_instructions=count)
    run_s = time.monotonic() - started
    return {
        "built": built, "result": result, "build_s": build_s, "run_s": run_s,
        "scores": [image.scores for image in result.images],
        "instructions": [image.instructions for image in result.images if image.instructions],
        "us": [image.inference_us for image in result.images if image.inference_us is not None],
    }


def build_edge(out: Path, jobs: int):
    """The SparkFun Edge build and its seconds, when its vendor SDK is in the cache; else (None, None)."""
    try:
        require("sparkfun_edge")
    except UserError:
        return None, None
    started = time.monotonic()
    edge = build("sparkfun_edge", out / "model", out / "sparkfun_edge-cmsis_nn", jobs=jobs, quiet=True)
    return edge, time.monotonic() - started


def print_table(runs: dict, edge, edge_s: float | None) -> None:
    """One line per build: its sections, flash and RAM, what it used running, and its times."""
    header = (f"{'build':<18} {'text':>9} {'data':>6} {'bss':>8} {'flash':>9} {'TFLM+app':>9} "
              f"{'RAM':>8} {'arena used':>10} {'stack':>6} {'instr/inference':>16} {'run s':>6} {'build s':>7}")
    print(header)
    print("-" * len(header))
    for name, run in runs.items():
        b, r = run["built"], run["result"]
        flash = b.text + b.data
        instructions = f"{statistics.mean(run['instructions']) / 1e6:,.2f} M" if run["instructions"] else "-"
        arena = f"{r.arena_used:,}" if r.arena_used else "-"
        stack = f"{r.stack_used:,}" if r.stack_used else "-"  # only bare-metal boards measure it
        print(f"{name:<18} {b.text:>9,} {b.data:>6,} {b.bss:>8,} {flash:>9,} {b.code_bytes:>9,} "
              f"{b.data + b.bss:>8,} {arena:>10} {stack:>6} {instructions:>16} "
              f"{run['run_s']:>6.2f} {run['build_s']:>7.1f}")
    if edge is not None:
        print(f"{'sparkfun_edge cmsis':<18} {edge.text:>9,} {edge.data:>6,} {edge.bss:>8,} "
              f"{edge.text + edge.data:>9,} {edge.code_bytes:>9,} {edge.data + edge.bss:>8,} {'(board)':>10} "
              f"{'-':>6} {'-':>16} {'-':>6} {edge_s:>7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tflite", help="int8 model (default: TFLM's person_detect.tflite)")
    parser.add_argument("--images", type=int, default=5, help="random int8 images per run")
    parser.add_argument("--out", help="keep the builds here (default: a temporary folder)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    deps = require("qemu_m4")
    tflite = Path(args.tflite) if args.tflite else (
        deps["tflite-micro"] / "tensorflow/lite/micro/models/person_detect.tflite")
    with tempfile.TemporaryDirectory(prefix="vww-bench-") as scratch:
        out = Path(args.out) if args.out else Path(scratch)
        settings = generate(tflite, out / "model", board="sparkfun_edge")
        rng = np.random.default_rng(0)
        tensors = rng.integers(-128, 128, size=(args.images, settings.rows, settings.cols,
                                                 settings.channels), dtype=np.int8)
        runs = {
            "qemu_m4 cmsis_nn": measure("qemu_m4", "cmsis_nn", out / "model", out, tensors, args.jobs, True),
            "qemu_m4 reference": measure("qemu_m4", "reference", out / "model", out, tensors, args.jobs, True),
            "host reference": measure("host", "reference", out / "model", out, tensors, args.jobs, False),
        }
        edge, edge_s = build_edge(out, args.jobs)
    scores = {name: run["scores"] for name, run in runs.items()}
    same = all(s == scores["qemu_m4 cmsis_nn"] for s in scores.values())

    print(f"model: {tflite} ({settings.model_bytes:,} B; ops {', '.join(settings.ops)})")
    print(f"tensor arena: {settings.arena_measured:,} B measured by the tflite_micro runtime (x86-64), "
          f"{settings.arena_size:,} B configured (with margin)")
    print(f"{args.images} random images per run; scores identical across builds: {'yes' if same else 'NO'}")
    print()
    print_table(runs, edge, edge_s)
    cmsis, reference = runs["qemu_m4 cmsis_nn"], runs["qemu_m4 reference"]
    if cmsis["instructions"] and reference["instructions"]:
        ratio = statistics.mean(reference["instructions"]) / statistics.mean(cmsis["instructions"])
        print(f"\nCMSIS-NN runs {ratio:.1f}x fewer instructions than the reference kernels")
    host_us = runs["host reference"]["us"]
    print(f"host inference: median {statistics.median(host_us) / 1000:.2f} ms "
          f"(min {min(host_us) / 1000:.2f} ms) over {len(host_us)} images")
    for name in ("qemu_m4 cmsis_nn", "qemu_m4 reference"):
        per = runs[name]["run_s"] / args.images
        print(f"{name}: QEMU wall time {runs[name]['run_s']:.2f} s for {args.images} images "
              f"(~{per * 1000:.0f} ms each, start-up included)")
    board = BOARDS["qemu_m4"]
    print(f"flash = text + data (limit {board.flash_bytes:,} B: what the Apollo3 bootloader can flash); "
          f"RAM = data + bss (limit {board.ram_bytes:,} B, arena and stack included); TFLM+app = flash - model")


if __name__ == "__main__":
    main()
