"""Tensor arena, instructions and flash on the emulated Cortex-M4, as converted and memory-planned.

    python benchmarks/memory_plan.py [--tflite QUICKSTART/export/model_int8.tflite] [--budget 40]

MobileNetV1 0.25 over grayscale frames at 96, 128 and 160. Each model comes from `vwwtorch export`
of a default-architecture checkpoint at that resolution after two training steps on random frames:
the arena, the instructions and the flash depend on the shapes, not on what the weights learned.
With --tflite that model replaces the one at its resolution (e.g. the quickstart's at 96).

Each model is built for qemu_m4 with CMSIS-NN and this firmware's kernels twice: as converted
(`firmware generate`), and with `--memory-budget` when given, else with the plan of the smallest
arena (`--stream-layers`, every candidate tried). The arena is what the firmware reports using at
start-up; instructions are counted under QEMU (`vwwtorch firmware profile`). Also printed: the
peak of live activations TFLM's greedy planner reaches before and after, and the lower bound no
plan can beat (where greedy reaches it, an offline plan cannot help). Needs `vwwtorch firmware deps`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

RESOLUTIONS = (96, 128, 160)


def export_model(resolution: int, work: Path) -> Path:
    """`vwwtorch export` of a default checkpoint at `resolution` (two steps on random frames)."""
    import numpy as np
    import pytorch_lightning as pl

    from vwwtorch.bridge.parity import Thresholds
    from vwwtorch.bridge.export_run import ExportOptions, export
    from vwwtorch.data.datamodule import VWWDataModule
    from vwwtorch.data.format import DatasetWriter
    from vwwtorch.training.module import VWWClassifier

    rng = np.random.default_rng(resolution)
    writer = DatasetWriter(work / "data", classes=["no_person", "person"], image_size=(resolution, resolution),
                           channels=1, provenance={"source": "benchmarks/memory_plan.py: random frames"})
    for split in ("train", "val"):
        frames = rng.integers(0, 256, size=(64, resolution, resolution, 1), dtype=np.uint8)
        writer.write_split(split, frames, np.arange(64) % 2, np.arange(64))
    data = writer.finish()
    pl.seed_everything(0)
    model = VWWClassifier(class_names=["no_person", "person"], resolution=resolution, image_log_every_n_steps=0)
    trainer = pl.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(work))
    trainer.fit(model, VWWDataModule(str(data), batch_size=16))
    ckpt = work / "model.ckpt"
    trainer.save_checkpoint(ckpt, weights_only=False)
    # Untrained: the int8 model need not agree with the float one, only have its shapes.
    export(ExportOptions(ckpt=ckpt, data=Path(data), out=work / "export", num_calibration=32, num_parity=32,
                         thresholds=Thresholds(min_top1_agreement=0.0, max_accuracy_drop=100.0), overwrite=True,
                         progress=False))
    return work / "export" / "model_int8.tflite"


def smallest_stream(tflite: Path) -> int:
    from vwwtorch.firmware.codegen.memory_plan.budget import plan_for_budget
    from vwwtorch.firmware.codegen.memory_plan.chain_op import streamable_prefix

    data = tflite.read_bytes()
    choices = [0, *range(2, streamable_prefix(data) + 1)]
    return min(choices, key=lambda k: plan_for_budget(data, None, streamed=k).chosen.arena_estimate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tflite", help="a 0.25-width grayscale model to use at its resolution")
    parser.add_argument("--budget", type=float, help="KiB, as `firmware generate --memory-budget` (default: "
                        "the smallest arena)")
    args = parser.parse_args()
    from vwwtorch.contract.tflite import read_tflite
    from vwwtorch.firmware.toolchain.deps import require
    from vwwtorch.firmware.codegen.generate import load_settings
    from vwwtorch.firmware.toolchain.profile import profile_model

    require("qemu_m4")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vww-memory-") as scratch:
        root = Path(scratch)
        models = {}
        if args.tflite:
            models[read_tflite(Path(args.tflite).read_bytes()).input.shape[1]] = (Path(args.tflite), "given")
        for resolution in RESOLUTIONS:
            if resolution not in models:
                models[resolution] = (export_model(resolution, root / f"model{resolution}"), "exported")
        for resolution, (tflite, origin) in sorted(models.items()):
            budget = int(args.budget * 1024) if args.budget else None
            stream = None if budget else smallest_stream(tflite)
            stock = profile_model(tflite, root / f"stock{resolution}", quiet=True)
            planned = profile_model(tflite, root / f"plan{resolution}", quiet=True, memory_budget=budget,
                                    stream_layers=stream)
            plan = load_settings(root / f"plan{resolution}" / "model").memory_plan
            rows.append((resolution, origin, stock, planned, plan))
    print("| input | model | arena as converted | arena planned | layers streamed | peak live act. (greedy = "
          "lower bound) | instructions as converted | planned | change | flash as converted | planned |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for resolution, origin, stock, planned, plan in rows:
        a, b = stock["instructions_per_inference"], planned["instructions_per_inference"]
        greedy = "yes" if plan["head_after"] == plan["lower_bound_after"] else f"no ({plan['lower_bound_after']:,})"
        print(f"| {resolution}x{resolution}x1 | {origin} | {stock['arena_used']:,} B | {planned['arena_used']:,} B "
              f"| {plan['streamed_layers']} | {plan['head_before']:,} -> {plan['head_after']:,} B ({greedy}) "
              f"| {a / 1e6:.2f} M | {b / 1e6:.2f} M | {100 * (b / a - 1):+.1f}% "
              f"| {stock['flash_bytes']:,} B | {planned['flash_bytes']:,} B |")


if __name__ == "__main__":
    main()
