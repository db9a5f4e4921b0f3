"""Cortex-M4 cost of the VWW models: stock CMSIS-NN against vwwtorch's kernels, with and without
`--memory-budget`.

    python benchmarks/fast_kernels.py --tflite QUICKSTART/export/model_int8.tflite [--chart docs/PNG]

For each model (the one given, TFLM's person_detect, and MLPerf Tiny's vww_96_int8 when
`vwwtorch pretrained get person-rgb-96` has cached it) the firmware is built four times for qemu_m4
with CMSIS-NN and profiled with `vwwtorch firmware profile`:
  stock    `FAST_KERNELS=0` and no packed weights (flash budget 0): CMSIS-NN alone;
  ours     firmware/core/kernels/fast_kernels.cc and the weights packed for it (the default flash budget);
and each of them as converted and with `--memory-budget 40` (MLPerf's RGB model has no 40 KiB plan:
it takes its smallest, `--memory-budget 64`). Instructions are counted exactly under QEMU; cycles are
the plugin's Cortex-M4 estimate (firmware/tools/m4_cycles.h: the TRM's timings, zero-wait-state
memory). Prints one table per model (instructions, estimated cycles, both per MAC, flash, packed
weights, arena), the first model's layers, and MLPerf's estimate beside the cycle counts published
for the same model on a Cortex-M4; saves the first model's profile charts with --chart. Needs
`vwwtorch firmware deps`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import tempfile
from pathlib import Path

from vwwtorch.firmware.toolchain.deps import require
from vwwtorch.firmware.toolchain.profile import figure, profile_model
from vwwtorch.training.foreign.pretrained import folder

KIB = 1024
# MLPerf Tiny results for vww_96_int8 on Cortex-M4 boards at 120 MHz: milliseconds x 120 MHz.
PUBLISHED = [("X-CUBE-AI 9.0 (MLPerf Tiny)", 10.7e6), ("Plumerai (MLPerf Tiny)", 11.9e6),
             ("TFLM reference kernels (MLPerf Tiny v0.5)", 72e6)]


def profile(tflite: Path, out: Path, stock: bool, budget_kib: int | None) -> dict:
    previous = os.environ.get("FAST_KERNELS")
    os.environ["FAST_KERNELS"] = "0" if stock else "1"  # make reads it as a variable
    try:
        shutil.rmtree(out, ignore_errors=True)  # make tracks no flags: a fresh build each time
        return profile_model(tflite, out, quiet=True, memory_budget=budget_kib * KIB if budget_kib else None,
                             flash_budget=0 if stock else None)
    finally:
        if previous is None:
            os.environ.pop("FAST_KERNELS", None)
        else:
            os.environ["FAST_KERNELS"] = previous


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def row(label: str, p: dict) -> str:
    macs = p["macs"]
    return (f"| {label} | {p['instructions_per_inference'] / 1e6:.2f} M | {p['cycles_per_inference'] / 1e6:.2f} M "
            f"| {p['instructions_per_inference'] / macs:.2f} | {p['cycles_per_inference'] / macs:.2f} "
            f"| {p['flash_bytes']:,} | {p['packed_weights_bytes']:,} | {p['arena_used']:,} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tflite", help="first model (default: TFLM's person_detect.tflite)")
    parser.add_argument("--chart", help="save the first model's profile charts as CHART-stock.png and CHART.png")
    args = parser.parse_args()
    models = benchmark_models(args.tflite)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; {datetime.date.today().isoformat()}")
    print("qemu_m4 (mps2-an386, Cortex-M4F), CMSIS-NN; instructions exact, cycles estimated "
          "(Cortex-M4 TRM timings, zero wait states)\n")
    results = {}
    with tempfile.TemporaryDirectory(prefix="vww-fast-") as scratch:
        for name, path in models.items():
            results[name] = profile_builds(name, path, Path(scratch))
    print_layers(results["first"][1], models["first"].name)
    if "mlperf vww_96_int8" in results:
        print_published(results["mlperf vww_96_int8"][1])
    if args.chart:
        save_charts(results["first"][1], Path(args.chart))


def benchmark_models(tflite: str | None) -> dict[str, Path]:
    """The first model (--tflite, else TFLM's person_detect), person_detect, and MLPerf's if cached."""
    deps = require("qemu_m4")
    person_detect = deps["tflite-micro"] / "tensorflow/lite/micro/models/person_detect.tflite"
    models = {"first": Path(tflite) if tflite else person_detect}
    if tflite:
        models["person_detect"] = person_detect
    mlperf = folder("person-rgb-96") / "vww_96_int8.tflite"
    if mlperf.is_file():
        models["mlperf vww_96_int8"] = mlperf
    return models


def profile_builds(name: str, path: Path, scratch: Path) -> tuple[int, dict]:
    """Stock and our kernels, each as converted and with a memory budget; prints the model's table."""
    budget = 64 if name.startswith("mlperf") else 40
    runs = {}
    for stock in (True, False):
        for planned in (False, True):
            key = ("stock" if stock else "ours", budget if planned else None)
            out = scratch / f"{name.replace(' ', '_')}-{key[0]}-{key[1]}"
            runs[key] = profile(path, out, stock, key[1])
    label = path.name if name == "first" else name
    print(f"{label}: {runs[('ours', None)]['macs']:,} MACs")
    print("| build | instructions | est. cycles | instr/MAC | cycles/MAC | flash | packed weights | arena |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (kind, planned), p in runs.items():
        what = "stock CMSIS-NN" if kind == "stock" else "vwwtorch kernels"
        print(row(f"{what}{f', --memory-budget {planned}' if planned else ''}", p))
    stock, ours = runs[("stock", None)], runs[("ours", None)]
    stock_planned, ours_planned = runs[("stock", budget)], runs[("ours", budget)]
    print(f"ours / stock: instructions {ours['instructions_per_inference'] / stock['instructions_per_inference']:.3f}, "
          f"cycles {ours['cycles_per_inference'] / stock['cycles_per_inference']:.3f}; planned / as converted "
          f"(ours): instructions {ours_planned['instructions_per_inference'] / ours['instructions_per_inference'] - 1:+.1%}, "
          f"cycles {ours_planned['cycles_per_inference'] / ours['cycles_per_inference'] - 1:+.1%} (stock: instructions "
          f"{stock_planned['instructions_per_inference'] / stock['instructions_per_inference'] - 1:+.1%})\n")
    return budget, runs


def print_layers(runs: dict, model_name: str) -> None:
    stock, ours = runs[("stock", None)], runs[("ours", None)]
    print(f"per layer, {model_name}:")
    print("| # | op | output | MACs | CMSIS-NN instr | cycles | vwwtorch instr | cycles | instr/MAC | cycles/MAC |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for a, b in zip(stock["ops"], ours["ops"]):
        shape = "x".join(map(str, a["output_shape"][1:]))
        per = [f"{v:.2f}" if v else "-" for v in (b["instructions_per_mac"], b["cycles_per_mac"])]
        print(f"| {a['index']} | {a['op']} | {shape} | {a['macs']:,} | {a['instructions']:,} | {a['cycles']:,} "
              f"| {b['instructions']:,} | {b['cycles']:,} | {per[0]} | {per[1]} |")


def print_published(runs: dict) -> None:
    """MLPerf's model: our estimate beside the published measurements."""
    print("\nMLPerf Tiny vww_96_int8 on a Cortex-M4, cycles per inference:")
    print("| engine | cycles | vs. vwwtorch |")
    print("|---|---:|---:|")
    ours = runs[("ours", None)]["cycles_per_inference"]
    print(f"| vwwtorch kernels (estimate, zero wait states) | {ours / 1e6:.2f} M | 1.00 |")
    print(f"| stock CMSIS-NN in this firmware (estimate) | {runs[('stock', None)]['cycles_per_inference'] / 1e6:.2f} M "
          f"| {runs[('stock', None)]['cycles_per_inference'] / ours:.2f} |")
    for engine, cycles in PUBLISHED:
        print(f"| {engine} (measured) | {cycles / 1e6:.1f} M | {cycles / ours:.2f} |")


def save_charts(runs: dict, chart: Path) -> None:
    stock, ours = runs[("stock", None)], runs[("ours", None)]
    stock["kernels"], ours["kernels"] = "stock CMSIS-NN", "CMSIS-NN + vwwtorch kernels"
    chart.parent.mkdir(parents=True, exist_ok=True)
    figure(stock).savefig(chart.with_name(chart.stem + "-stock" + chart.suffix))
    figure(ours).savefig(chart)
    print(f"\nwrote {chart} and {chart.with_name(chart.stem + '-stock' + chart.suffix)}")


if __name__ == "__main__":
    main()
