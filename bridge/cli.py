"""`vwwtorch export` and `vwwtorch parity`: the PyTorch -> int8 TFLite bridge and its parity gate."""

from __future__ import annotations

import argparse
from pathlib import Path

from vwwtorch.plumbing.defaults import default

GATES_HELP = """\
Gates (all must pass, or the command exits 1 naming the failed gate and its worst images):
  input quantization   int8, the model's input range: [-1, 1] as scale 1/127.5, zero point -1, or
                       [0, 1] as 1/255, -128 (camera byte b is fed as b-128); without a checkpoint,
                       any quantization that camera bytes map onto one to one
  output quantization  int8 softmax, scale 1/256, zero point -128
  op set               only CONV_2D, DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, RESHAPE, SOFTMAX
                       (and FULLY_CONNECTED for a dense head), softmax last
  per-channel weights  int8 convolution weights quantized per output channel
  torch vs ONNX Runtime / TFLite float32   max |probability difference| (export only)
  torch vs TFLite int8  top-1 agreement and accuracy drop (with a checkpoint), each failing only when
                       the images counted refute the threshold at --confidence (a binomial test);
                       for a QAT checkpoint torch is its simulated int8 network
  QAT simulation / source int8 model vs TFLite int8   within 1 LSB on every image, when the export
                       keeps a quantization: the QAT checkpoint's, or an imported model's source file
  TFLite int8 accuracy  on the data's labels (parity without a checkpoint; gated by --min-accuracy)
  TFLM vs TFLite reference kernels          bit-exact int8 outputs on every image
A model LiteRT refuses but TFLM runs (TFLM's own person_detect.tflite) is repaired on load for
LiteRT only; parity.json lists the repairs under notes.litert_repairs.
"""


def _add_thresholds(p: argparse.ArgumentParser, with_float: bool, with_accuracy: bool = False) -> None:
    from vwwtorch.bridge.parity import Thresholds

    g = p.add_argument_group("thresholds")
    if with_float:
        g.add_argument("--max-onnx-diff", type=float, default=default(Thresholds, "onnx_max_diff"),
                       help="torch vs ONNX Runtime: max |probability difference| (default: %(default)s)")
        g.add_argument("--max-float-diff", type=float, default=default(Thresholds, "float_max_diff"),
                       help="torch vs TFLite float32: max |probability difference| (default: %(default)s)")
    g.add_argument("--min-agreement", type=float, default=default(Thresholds, "min_top1_agreement"),
                   help="torch vs TFLite int8: minimum fraction of images with the same top-1 class "
                        "(default: %(default)s)")
    g.add_argument("--max-accuracy-drop", type=float, default=default(Thresholds, "max_accuracy_drop"),
                   help="torch vs TFLite int8: maximum accuracy loss, in percentage points (default: %(default)s)")
    g.add_argument("--confidence", type=float, default=default(Thresholds, "confidence"),
                   help="the agreement and accuracy-drop gates count images: they fail when the count shows "
                        "the threshold is missed with this confidence (an exact binomial test), so one or two "
                        "flipped images of a few hundred are not mistaken for damage (default: %(default)s)")
    if with_accuracy:
        g.add_argument("--min-accuracy", type=float, default=default(Thresholds, "min_int8_accuracy"),
                       help="without --ckpt: minimum int8 accuracy on --data, a fraction (default: "
                            "%(default)s, reported only)")


def register(subparsers) -> None:
    from vwwtorch.bridge.export_run import ExportOptions, ParityOptions

    e = subparsers.add_parser(
        "export", help="export a checkpoint to ONNX and int8 TFLite and verify parity",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export a checkpoint's EMA weights to ONNX, convert with onnx2tf to TFLite float32 and "
                    "full-integer int8 (calibrated on --data train images with the training eval "
                    "preprocessing), then check every seam on --data validation images.\n\n"
                    "Writes model.onnx, model_float32.tflite, model_int8.tflite, labels.txt, parity.json "
                    "(with \"verified\": true only if every gate passed) and parity.md to --out.\n\n"
                    + GATES_HELP)
    e.add_argument("--ckpt", required=True, type=Path, help="checkpoint from `vwwtorch fit`")
    e.add_argument("--data", required=True, type=Path,
                   help="vwwtorch dataset: train split for calibration, val (or test) split for parity")
    e.add_argument("--out", required=True, type=Path, help="output folder (written atomically)")
    e.add_argument("--num-calibration", type=int, default=default(ExportOptions, "num_calibration"),
                   help="calibration images (default: %(default)s)")
    e.add_argument("--num-parity", type=int, default=default(ExportOptions, "num_parity"),
                   help="parity images, or all of the split if fewer (default: %(default)s)")
    e.add_argument("--calibrate", action="store_true",
                   help="an imported checkpoint (`vwwtorch import`) keeps its source's int8 ranges and the "
                        "export reproduces them; this calibrates new ones on --data instead (refused for a "
                        "quantization-aware trained checkpoint, whose int8 network is written as trained)")
    e.add_argument("--source-tflite", type=Path,
                   help="an imported checkpoint's source int8 file: the export must then equal it within 1 LSB "
                        "on every parity image (found by itself for `vwwtorch pretrained` models)")
    e.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    e.add_argument("--verbose", action="store_true", help="show onnx2tf and TensorFlow output")
    _add_thresholds(e, with_float=True)
    e.set_defaults(func=_run_export)

    p = subparsers.add_parser(
        "parity", help="check an int8 .tflite, against the checkpoint it was made from or on its own",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Re-run the int8 gates for any full-integer int8 .tflite (made by vwwtorch or not): "
                    "static checks, torch vs TFLite int8 on --data validation images (with --ckpt) or the "
                    "int8 accuracy on them (without), TFLM vs TFLite reference kernels, footprint.\n\n"
                    + GATES_HELP)
    p.add_argument("--ckpt", type=Path,
                   help="checkpoint the model was converted from (optional: without it, every gate that needs "
                        "no torch model runs)")
    p.add_argument("--tflite", required=True, type=Path, help="int8 .tflite to check")
    p.add_argument("--data", required=True, type=Path, help="vwwtorch dataset (val or test split is used)")
    p.add_argument("--num-parity", type=int, default=default(ParityOptions, "num_parity"),
                   help="parity images, or all of the split if fewer (default: %(default)s)")
    p.add_argument("--out", type=Path, help="also write parity.json and parity.md to this folder")
    p.add_argument("--source-tflite", type=Path,
                   help="with an imported --ckpt: its source int8 file, which --tflite must equal within 1 LSB")
    _add_thresholds(p, with_float=False, with_accuracy=True)
    p.set_defaults(func=_run_parity)


def _thresholds(args):
    from vwwtorch.bridge.parity import Thresholds

    t = Thresholds(min_top1_agreement=args.min_agreement, max_accuracy_drop=args.max_accuracy_drop,
                   confidence=args.confidence)
    if hasattr(args, "max_onnx_diff"):
        t.onnx_max_diff, t.float_max_diff = args.max_onnx_diff, args.max_float_diff
    if hasattr(args, "min_accuracy"):
        t.min_int8_accuracy = args.min_accuracy
    return t


def _run_export(args) -> None:
    from vwwtorch.bridge.export_run import ExportOptions, export

    export(ExportOptions(ckpt=args.ckpt, data=args.data, out=args.out, num_calibration=args.num_calibration,
                         num_parity=args.num_parity, thresholds=_thresholds(args), calibrate=args.calibrate,
                         source_tflite=args.source_tflite,
                         overwrite=args.overwrite, verbose=args.verbose))


def _run_parity(args) -> None:
    from vwwtorch.bridge.export_run import ParityOptions, parity

    parity(ParityOptions(ckpt=args.ckpt, tflite=args.tflite, data=args.data, num_parity=args.num_parity,
                         out=args.out, thresholds=_thresholds(args), source_tflite=args.source_tflite))
