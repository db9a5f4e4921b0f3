"""Instructions per inference on the emulated Cortex-M4, stock CMSIS-NN against vwwtorch's kernels.

    python benchmarks/fast_kernels.py --tflite QUICKSTART/export/model_int8.tflite [--chart docs/PNG]

For each model (the one given, TFLM's person_detect, and MLPerf Tiny's vww_96_int8 when
`vwwtorch pretrained get person-rgb-96` has cached it) the firmware is built twice for qemu_m4 with
CMSIS-NN: stock (`FAST_KERNELS=0`) and with firmware/core/fast_kernels.cc, and profiled with
`vwwtorch firmware profile` (every operator's instructions counted under QEMU). Prints the
per-layer table of the first model before and after, one row per model with the totals and the
flash of both builds, and saves the first model's profile charts (stock and ours) with --chart.
Needs `vwwtorch firmware deps`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from vwwtorch.firmware.deps import require
from vwwtorch.firmware.profile import figure, profile_model
from vwwtorch.training.foreign.pretrained import folder


def profile(tflite: Path, out: Path, stock: bool) -> dict:
    previous = os.environ.get("FAST_KERNELS")
    os.environ["FAST_KERNELS"] = "0" if stock else "1"  # make reads it as a variable
    try:
        shutil.rmtree(out, ignore_errors=True)  # make tracks no flags: a fresh build each time
        return profile_model(tflite, out, quiet=True)
    finally:
        if previous is None:
            os.environ.pop("FAST_KERNELS", None)
        else:
            os.environ["FAST_KERNELS"] = previous


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tflite", help="first model (default: TFLM's person_detect.tflite)")
    parser.add_argument("--chart", help="save the first model's profile charts as CHART-stock.png and CHART.png")
    args = parser.parse_args()
    deps = require("qemu_m4")
    person_detect = deps["tflite-micro"] / "tensorflow/lite/micro/models/person_detect.tflite"
    models = {"first": Path(args.tflite) if args.tflite else person_detect}
    if args.tflite:
        models["person_detect"] = person_detect
    mlperf = folder("person-rgb-96") / "vww_96_int8.tflite"
    if mlperf.is_file():
        models["mlperf vww_96_int8"] = mlperf
    with tempfile.TemporaryDirectory(prefix="vww-fast-") as scratch:
        results = {name: (profile(path, Path(scratch) / f"{name.replace(' ', '_')}-stock", True),
                          profile(path, Path(scratch) / f"{name.replace(' ', '_')}-fast", False))
                   for name, path in models.items()}
    stock, fast = results["first"]
    print(f"per layer, {models['first'].name} on qemu_m4 (instructions per inference):")
    print("| # | op | output | MACs | CMSIS-NN | instr/MAC | vwwtorch kernels | instr/MAC | ratio |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for a, b in zip(stock["ops"], fast["ops"]):
        shape = "x".join(map(str, a["output_shape"][1:]))
        per = [f"{o['instructions_per_mac']:.2f}" if o["instructions_per_mac"] else "-" for o in (a, b)]
        print(f"| {a['index']} | {a['op']} | {shape} | {a['macs']:,} | {a['instructions']:,} | {per[0]} "
              f"| {b['instructions']:,} | {per[1]} | {b['instructions'] / a['instructions']:.2f} |")
    print("\n| model | MACs | CMSIS-NN instructions | vwwtorch kernels | ratio | flash CMSIS-NN | flash ours | flash growth |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (a, b) in results.items():
        label = models[name].name if name == "first" else name
        print(f"| {label} | {a['macs']:,} | {a['instructions_per_inference'] / 1e6:.2f} M "
              f"| {b['instructions_per_inference'] / 1e6:.2f} M "
              f"| {b['instructions_per_inference'] / a['instructions_per_inference']:.3f} "
              f"| {a['flash_bytes']:,} | {b['flash_bytes']:,} | {b['flash_bytes'] - a['flash_bytes']:+,} B |")
    if args.chart:
        stock["kernels"], fast["kernels"] = "stock CMSIS-NN", "CMSIS-NN + vwwtorch kernels"
        chart = Path(args.chart)
        chart.parent.mkdir(parents=True, exist_ok=True)
        figure(stock).savefig(chart.with_name(chart.stem + "-stock" + chart.suffix))
        figure(fast).savefig(chart)
        print(f"\nwrote {chart} and {chart.with_name(chart.stem + '-stock' + chart.suffix)}")


if __name__ == "__main__":
    main()
