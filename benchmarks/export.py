"""Wall time of `vwwtorch export` (export + convert + calibrate + parity) and its footprint figures.

Runs the real export of a checkpoint, stage by stage as `vwwtorch.bridge.export_run` times them,
with the default 300 calibration and 1000 parity images; prints one table per run and the best total. The
checkpoint should be a trained default model (e.g. the best checkpoint of `vwwtorch quickstart`):
the parity gate must pass for the timing to mean anything.

    python benchmarks/export.py --ckpt CKPT --data DATASET [--repeat 1]

The first stage includes importing TensorFlow and onnx2tf only on the first run in a process; the
"process" row times a fresh `vwwtorch export` subprocess, which is what a user waits for.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path



def run_once(ckpt: Path, data: Path, out: Path, num_calibration: int, num_parity: int) -> tuple[dict, dict]:
    from vwwtorch.bridge.export_run import ExportOptions, export

    outcome = export(ExportOptions(ckpt=ckpt, data=data, out=out, num_calibration=num_calibration,
                                   num_parity=num_parity, overwrite=True, progress=False))
    return outcome.timings, outcome.report


def run_process(ckpt: Path, data: Path, out: Path, num_calibration: int, num_parity: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vwwtorch", "export", "--ckpt", str(ckpt), "--data", str(data),
                    "--out", str(out), "--overwrite", "--num-calibration", str(num_calibration),
                    "--num-parity", str(num_parity)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--num-calibration", type=int, default=300)
    parser.add_argument("--num-parity", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1, help="in-process runs after the subprocess run")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    with tempfile.TemporaryDirectory(prefix="vwwtorch-bench-export-") as scratch:
        out = Path(scratch) / "export"
        process_s = run_process(args.ckpt, args.data, out, args.num_calibration, args.num_parity)
        runs = [run_once(args.ckpt, args.data, out, args.num_calibration, args.num_parity)
                for _ in range(max(1, args.repeat))]
        sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}

    print(f"export benchmark: {args.ckpt} on {args.data}, {args.num_calibration} calibration / "
          f"{args.num_parity} parity images, {os.cpu_count()} CPUs")
    print()
    header = f"{'stage':<14}" + "".join(f"{f'run {i + 1} (s)':>12}" for i in range(len(runs)))
    print(header)
    print("-" * len(header))
    from vwwtorch.bridge.export_run import STAGES

    for stage in (*STAGES, "total"):
        print(f"{stage:<14}" + "".join(f"{timings.get(stage, float('nan')):>12.1f}" for timings, _ in runs))
    print(f"{'process':<14}{process_s:>12.1f}   (fresh `vwwtorch export` subprocess, imports included)")
    print()
    report = runs[-1][1]
    footprint = report["footprint"]
    seams = {s["key"]: s for s in report["seams"]}
    int8 = seams["torch_vs_tflite_int8"]["metrics"]
    print(f"{'file':<24}{'bytes':>12}")
    for name, size in sizes.items():
        print(f"{name:<24}{size:>12,}")
    print()
    print(f"int8 model        {footprint['int8_bytes']:,} B (reference person_detect.tflite 300,568 B)")
    print(f"TFLM arena used   {footprint['tflm_arena_bytes']:,} B (reference 85,264 B)")
    print(f"ops               {', '.join(f'{k} x{v}' for k, v in footprint['op_histogram'].items())}")
    print(f"verified          {report.get('verified', False)}")
    print(f"torch vs ORT      max |p diff| {seams['torch_vs_onnxruntime']['metrics']['max_abs_diff']:.2e}")
    print(f"torch vs float32  max |p diff| {seams['torch_vs_tflite_float32']['metrics']['max_abs_diff']:.2e}")
    print(f"torch vs int8     agreement {int8['top1_agreement']:.2%}, accuracy {int8['float_accuracy']:.2%} -> "
          f"{int8['int8_accuracy']:.2%} (drop {int8['accuracy_drop_points']:.2f} pt)")
    tflm = seams["tflm_vs_tflite_ref"]["metrics"]
    print(f"TFLM vs ref       {tflm['mismatched_images']} of {tflm['images']} images differ")


if __name__ == "__main__":
    main()
