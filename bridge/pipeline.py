"""`vwwtorch export` and `vwwtorch parity`: the steps in order, the output folder written atomically.

export: checkpoint (EMA weights) -> model.onnx -> onnx2tf -> model_float32.tflite and
model_int8.tflite (calibrated on train images) -> parity gate on validation images -> labels.txt,
parity.json, parity.md. Everything is made in a hidden sibling folder `.<out>.partial` and renamed
to `<out>` when complete, so `<out>` is never half-written. A failed gate still leaves the complete
folder (to inspect) but without the "verified" marker, and the command exits 1.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vwwtorch.contract.errors import GateFailed
from vwwtorch.bridge.parity import Thresholds
from vwwtorch.bridge.quant_checks import MOBILENET_OPS
from vwwtorch.contract.errors import UserError
from vwwtorch.contract.hashing import sha256_bytes
from vwwtorch.contract.outputs import check_folder, staged_folder, written_as_user_error

FILES = ("model.onnx", "model_float32.tflite", "model_int8.tflite", "labels.txt", "parity.json", "parity.md")


@dataclass
class ExportOptions:
    ckpt: Path
    data: Path
    out: Path
    num_calibration: int = 300
    num_parity: int = 1000
    thresholds: Thresholds = field(default_factory=Thresholds)
    allowed_ops: tuple[str, ...] = MOBILENET_OPS
    overwrite: bool = False
    verbose: bool = False
    progress: bool = True


@dataclass
class Outcome:
    report: dict
    folder: Path | None
    timings: dict[str, float]


def _stage(progress: bool, text: str) -> None:
    if progress:
        print(text, flush=True)


def _check_counts(num_calibration: int | None, num_parity: int) -> None:
    if num_calibration is not None and num_calibration < 1:
        raise UserError("--num-calibration must be at least 1")
    if num_parity < 1:
        raise UserError("--num-parity must be at least 1")


def _load_model(ckpt: Path):
    """The checkpoint's classifier with its EMA weights, eval mode (a UserError if it is not one)."""
    from vwwtorch.training.checkpoint import load_classifier

    return load_classifier(ckpt)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("vwwtorch", "torch", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "ai-edge-litert", "tflite-micro"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def export(opts: ExportOptions) -> Outcome:
    from vwwtorch.bridge.calibration import check_dataset, load_eval_images, pick_split, pin_input_range
    from vwwtorch.bridge.float_runners import onnx_probabilities, torch_probabilities
    from vwwtorch.bridge.onnx_export import export_onnx
    from vwwtorch.bridge.parity import run_parity
    from vwwtorch.bridge.report import build_report, print_table, write_reports
    from vwwtorch.bridge.slim import slim_tflite
    from vwwtorch.contract.tflite import read_tflite
    from vwwtorch.contract.litert import TFLiteModel

    _check_counts(opts.num_calibration, opts.num_parity)
    opts.thresholds.check()
    timings: dict[str, float] = {}
    started = time.monotonic()
    out = check_folder(opts.out, overwrite=opts.overwrite)
    module = _load_model(opts.ckpt)
    hp = module.hparams
    meta = check_dataset(opts.data, hp.in_channels, hp.resolution, hp.num_classes, module.class_names)
    calib_split = pick_split(meta, ("train", "val"), opts.data, "calibration")
    parity_split = pick_split(meta, ("val", "test"), opts.data, "the parity check")
    p = opts.progress
    with staged_folder(out, checked=True) as tmp:
        _stage(p, f"[1/5] ONNX export of {opts.ckpt} (EMA weights, 1x{hp.in_channels}x{hp.resolution}x{hp.resolution})")
        t = time.monotonic()
        onnx_path = export_onnx(module.model, tmp / "model.onnx", hp.in_channels, hp.resolution, opts.verbose)
        timings["onnx_export"] = time.monotonic() - t

        _stage(p, f"[2/5] eval preprocessing of calibration ({calib_split}) and parity ({parity_split}) images")
        t = time.monotonic()
        calib = load_eval_images(opts.data, calib_split, opts.num_calibration, hp.in_channels, hp.resolution,
                                 meta, progress=p)
        parity_data = load_eval_images(opts.data, parity_split, opts.num_parity, hp.in_channels, hp.resolution,
                                       meta, progress=p)
        timings["load_images"] = time.monotonic() - t

        _stage(p, "[3/5] onnx2tf conversion, TFLite float32")
        t = time.monotonic()
        from vwwtorch.bridge.convert import onnx_to_keras, to_float32_tflite, to_int8_tflite

        keras_model = onnx_to_keras(onnx_path, calib.images, opts.verbose)
        float_model = slim_tflite(to_float32_tflite(keras_model, opts.verbose))
        (tmp / "model_float32.tflite").write_bytes(float_model)
        timings["conversion"] = time.monotonic() - t

        _stage(p, f"[4/5] int8 quantization calibrated on {len(calib)} {calib_split} images")
        t = time.monotonic()
        calib_images, pinned = pin_input_range(calib.images)
        int8_model = slim_tflite(to_int8_tflite(keras_model, calib_images, opts.verbose))
        (tmp / "model_int8.tflite").write_bytes(int8_model)
        timings["calibration"] = time.monotonic() - t
        del keras_model

        _stage(p, f"[5/5] parity on {len(parity_data)} {parity_split} images")
        t = time.monotonic()
        torch_probs = torch_probabilities(module.model, parity_data.images, progress=p)
        result = run_parity(
            torch_probs=torch_probs, data=parity_data, int8_model=int8_model,
            int8_info=read_tflite(int8_model, "model_int8.tflite").require_classifier("model_int8.tflite"), thresholds=opts.thresholds,
            allowed_ops=opts.allowed_ops, progress=p,
            onnx_probs=lambda: onnx_probabilities(onnx_path, parity_data.images, progress=p),
            float_probs=lambda: TFLiteModel(float_model, name="TFLite float32").probabilities(parity_data.images, p))
        timings["parity"] = time.monotonic() - t

        (tmp / "labels.txt").write_text("".join(f"{name}\n" for name in module.class_names))
        context = {
            "model": {"checkpoint": str(opts.ckpt), "architecture": "MobileNetV1",
                      "width": hp.width, "in_channels": hp.in_channels, "resolution": hp.resolution,
                      "num_classes": hp.num_classes, "classes": list(module.class_names), "weights": "EMA"},
            "data": {"dir": str(opts.data), "preprocessing": "eval: central crop 87.5%, resize, x/127.5-1",
                     "calibration_split": calib_split, "calibration_images": len(calib),
                     "calibration_range_pinned": pinned,
                     "parity_split": parity_split, "parity_images": len(parity_data)},
            "thresholds": asdict(opts.thresholds),
            "files": {name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_bytes((tmp / name).read_bytes())}
                      for name in ("model.onnx", "model_float32.tflite", "model_int8.tflite")},
            "versions": _versions(),
        }
        report = build_report(result, context)
        write_reports(tmp, report)
    timings["total"] = time.monotonic() - started
    if p:
        print_table(report)
        print(f"wrote {', '.join(FILES)} to {opts.out} in {timings['total']:.0f} s")
    if not report["passed"]:
        raise GateFailed("parity gate failed, model not verified: " + " | ".join(report["failures"]))
    return Outcome(report, opts.out, timings)


@dataclass
class ParityOptions:
    ckpt: Path
    tflite: Path
    data: Path
    num_parity: int = 1000
    out: Path | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    allowed_ops: tuple[str, ...] = MOBILENET_OPS
    progress: bool = True


def parity(opts: ParityOptions) -> Outcome:
    """The int8 gates for any int8 `.tflite` (ours or not) against the checkpoint it claims to be."""
    from vwwtorch.bridge.calibration import check_dataset, load_eval_images, pick_split
    from vwwtorch.bridge.float_runners import torch_probabilities
    from vwwtorch.bridge.parity import run_parity
    from vwwtorch.bridge.report import build_report, print_table, write_reports
    from vwwtorch.contract.tflite import load_tflite

    _check_counts(None, opts.num_parity)
    opts.thresholds.check()
    started = time.monotonic()
    if opts.out is not None:
        opts.out = check_folder(opts.out, overwrite=True)
    int8_model, info = load_tflite(opts.tflite)
    info.require_classifier(str(opts.tflite))
    if not info.is_int8:
        raise UserError(f"{opts.tflite} is not a full-integer int8 model (input {info.input.dtype}, "
                        f"output {info.output.dtype}); parity checks int8 models")
    module = _load_model(opts.ckpt)
    hp = module.hparams
    shape = (1, hp.resolution, hp.resolution, hp.in_channels)
    if info.input.shape != shape or info.output.shape[-1:] != (hp.num_classes,):
        raise UserError(f"{opts.tflite} takes {list(info.input.shape)} -> {list(info.output.shape)} but the "
                        f"checkpoint's model takes {list(shape)} -> [1, {hp.num_classes}]")
    meta = check_dataset(opts.data, hp.in_channels, hp.resolution, hp.num_classes, module.class_names)
    split = pick_split(meta, ("val", "test"), opts.data, "the parity check")
    data = load_eval_images(opts.data, split, opts.num_parity, hp.in_channels, hp.resolution, meta,
                            progress=opts.progress)
    torch_probs = torch_probabilities(module.model, data.images, progress=opts.progress)
    result = run_parity(torch_probs=torch_probs, data=data, int8_model=int8_model, int8_info=info,
                        thresholds=opts.thresholds, allowed_ops=opts.allowed_ops, progress=opts.progress)
    context = {
        "model": {"checkpoint": str(opts.ckpt), "tflite": str(opts.tflite), "width": hp.width,
                  "in_channels": hp.in_channels, "resolution": hp.resolution, "classes": list(module.class_names)},
        "data": {"dir": str(opts.data), "parity_split": split, "parity_images": len(data)},
        "thresholds": asdict(opts.thresholds),
        "files": {opts.tflite.name: {"bytes": len(int8_model), "sha256": sha256_bytes(int8_model)}},
        "versions": _versions(),
    }
    report = build_report(result, context)
    if opts.out is not None:
        with written_as_user_error(opts.out):
            opts.out.mkdir(parents=True, exist_ok=True)
            write_reports(opts.out, report)
    timings = {"total": time.monotonic() - started}
    if opts.progress:
        print_table(report)
    if not report["passed"]:
        raise GateFailed("parity gate failed: " + " | ".join(report["failures"]))
    return Outcome(report, opts.out, timings)
