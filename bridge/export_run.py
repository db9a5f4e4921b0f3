"""`vwwtorch export` and `vwwtorch parity`: the stages in order, the output folder written atomically.

export: checkpoint (EMA weights) -> model.onnx -> onnx2tf -> model_float32.tflite and
model_int8.tflite (calibrated on train images, through the .tflite passes) -> parity gate on
validation images -> labels.txt, parity.json, parity.md. Each stage is a function of
`vwwtorch.bridge.export_stages` that takes and returns typed values; `STAGES` names them in order
for the progress lines, the timings and benchmarks/export.py. Everything is made in a hidden
sibling folder `.<out>.partial` and renamed to `<out>` when complete, so `<out>` is never
half-written. A failed gate still leaves the complete folder (to inspect) but without the
"verified" marker, and the command exits 1.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from vwwtorch.bridge.gates.op_set import ops_for
from vwwtorch.bridge.parity import Thresholds
from vwwtorch.contract.deployment import normalization
from vwwtorch.plumbing.errors import GateFailed, UserError
from vwwtorch.plumbing.hashing import sha256_bytes
from vwwtorch.plumbing.outputs import check_folder, staged_folder, written_as_user_error

if TYPE_CHECKING:  # torch is imported when a command runs, not when the CLI starts
    from vwwtorch.training.exportable import ExportableModel

FILES = ("model.onnx", "model_float32.tflite", "model_int8.tflite", "labels.txt", "parity.json", "parity.md")


@dataclass
class ExportOptions:
    ckpt: Path
    data: Path
    out: Path
    num_calibration: int = 300
    num_parity: int = 1000
    thresholds: Thresholds = field(default_factory=Thresholds)
    allowed_ops: tuple[str, ...] | None = None   # None: the model's reference op set (`ops_for`)
    calibrate: bool = False                      # calibrate even an imported checkpoint's ranges
    source_tflite: Path | None = None            # an imported checkpoint's source file, to compare with
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


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("vwwtorch", "torch", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "ai-edge-litert", "tflite-micro"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def _check_kept_quantization(model: ExportableModel, opts: ExportOptions) -> None:
    if model.int8 is None:
        return
    if opts.calibrate:
        raise UserError(f"{opts.ckpt} was trained quantization-aware: its int8 network is what it learned, and "
                        "the export writes exactly that; --calibrate would replace it with post-training ranges")
    if not model.int8.ready:
        raise UserError(f"{opts.ckpt} was saved before quantization-aware training took a step (its int8 ranges "
                        "are not set); export a checkpoint from later in the run")


# The export's stages, in the order they run: the keys of the progress lines, the timings and
# benchmarks/export.py's table.
STAGES = ("onnx_export", "load_images", "conversion", "calibration", "parity")


class _StageClock:
    """Runs each stage with its numbered progress line and times it; the stages must come in STAGES order."""

    def __init__(self, progress: bool):
        self.progress = progress
        self.timings: dict[str, float] = {}

    def run(self, key: str, title: str, stage: Callable, *args):
        number = len(self.timings) + 1
        assert STAGES[number - 1] == key, f"stage {key} out of order"
        _stage(self.progress, f"[{number}/{len(STAGES)}] {title}")
        started = time.monotonic()
        value = stage(*args)
        self.timings[key] = time.monotonic() - started
        return value


def report_context(model: dict, data: dict, thresholds: Thresholds, files: dict[str, bytes]) -> dict:
    """What parity.json says besides the gates, for export and parity alike."""
    return {"model": model, "data": data, "thresholds": asdict(thresholds),
            "files": {name: {"bytes": len(content), "sha256": sha256_bytes(content)}
                      for name, content in files.items()},
            "versions": _versions()}


def export(opts: ExportOptions) -> Outcome:
    from vwwtorch.bridge.calibration import check_dataset, pick_split
    from vwwtorch.bridge.report import print_table
    from vwwtorch.training.checkpoint import load_exportable

    _check_counts(opts.num_calibration, opts.num_parity)
    opts.thresholds.check()
    started = time.monotonic()
    out = check_folder(opts.out, overwrite=opts.overwrite)
    model = load_exportable(opts.ckpt)
    _check_kept_quantization(model, opts)
    meta = check_dataset(opts.data, model.in_channels, model.resolution, model.num_classes, model.class_names)
    splits = (pick_split(meta, ("train", "val"), opts.data, "calibration"),
              pick_split(meta, ("val", "test"), opts.data, "the parity check"))
    clock = _StageClock(opts.progress)
    with staged_folder(out, checked=True) as folder:
        report = _export_into(folder, model, meta, splits, opts, clock)
    timings = {**clock.timings, "total": time.monotonic() - started}
    if opts.progress:
        print_table(report)
        print(f"wrote {', '.join(FILES)} to {opts.out} in {timings['total']:.0f} s")
    if not report["passed"]:
        raise GateFailed("parity gate failed, model not verified: " + " | ".join(report["failures"]))
    return Outcome(report, opts.out, timings)


def _export_into(folder: Path, model: ExportableModel, meta: dict, splits: tuple[str, str], opts: ExportOptions,
                 clock: _StageClock) -> dict:
    """The stages into the staging `folder`, then labels.txt and the reports; returns the report."""
    from vwwtorch.bridge import export_stages as stages
    from vwwtorch.bridge.report import build_report, write_reports

    shape = f"1x{model.in_channels}x{model.resolution}x{model.resolution}"
    onnx_path = clock.run("onnx_export", f"ONNX export of {opts.ckpt} (EMA weights, {shape})",
                          stages.write_onnx, model, folder, opts.verbose)
    images = clock.run("load_images", f"eval preprocessing of calibration ({splits[0]}) and parity ({splits[1]}) "
                                      "images", stages.load_images, model, opts.data, meta, splits,
                       (opts.num_calibration, opts.num_parity), opts.progress)
    keras_model, float32 = clock.run("conversion", "onnx2tf conversion, TFLite float32", stages.convert_float32,
                                     onnx_path, images.calibration, folder, opts.verbose)
    kept = stages.kept_quantization(model, opts.calibrate)
    int8 = clock.run("calibration", kept.title(images.calibration), stages.quantize_int8, keras_model,
                     images.calibration, model.input_range, kept, folder, opts.verbose)
    del keras_model  # TensorFlow's graph is large, and only the int8 conversion needs it
    result = clock.run("parity", f"parity on {len(images.parity)} {splits[1]} images", stages.check_parity,
                       model, onnx_path, images.parity, float32, int8, opts.thresholds,
                       opts.allowed_ops or ops_for(model.head), opts.source_tflite, opts.progress)

    (folder / "labels.txt").write_text("".join(f"{name}\n" for name in model.class_names), encoding="utf-8")
    context = report_context(
        model={"checkpoint": str(opts.ckpt), "architecture": "MobileNetV1", "width": model.width,
               "in_channels": model.in_channels, "resolution": model.resolution,
               "num_classes": model.num_classes, "classes": list(model.class_names), "weights": "EMA"},
        data={"dir": str(opts.data),
              "preprocessing": f"eval: central crop 87.5%, resize, {normalization(model.input_range).formula}",
              "calibration_split": splits[0], "calibration_images": len(images.calibration),
              "calibration_range_pinned": int8.pinned, "int8_ranges": kept.origin(),
              "parity_split": splits[1], "parity_images": len(images.parity)},
        thresholds=opts.thresholds,
        files={name: (folder / name).read_bytes() for name in ("model.onnx", "model_float32.tflite",
                                                                "model_int8.tflite")})
    report = build_report(result, context)
    write_reports(folder, report)
    return report


@dataclass
class ParityOptions:
    ckpt: Path | None                    # None: the int8 model alone (gates that need no torch model)
    tflite: Path
    data: Path
    num_parity: int = 1000
    out: Path | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    allowed_ops: tuple[str, ...] | None = None   # None: the checkpoint's reference op set, or any head's
    source_tflite: Path | None = None            # an imported checkpoint's source file, to compare with
    progress: bool = True


def _check_shapes(info, tflite: Path, shape: tuple[int, ...], num_classes: int, what: str) -> None:
    if info.input.shape != shape or info.output.shape[-1:] != (num_classes,):
        raise UserError(f"{tflite} takes {list(info.input.shape)} -> {list(info.output.shape)} but {what} "
                        f"takes {list(shape)} -> [1, {num_classes}]")


def _foreign_geometry(info, tflite: Path) -> tuple[int, int, int]:
    """(channels, resolution, classes) of an int8 image classifier, or a one-line UserError."""
    shape = info.input.shape
    if len(shape) != 4 or shape[0] != 1 or shape[1] != shape[2] or shape[3] not in (1, 3) \
            or len(info.output.shape) != 2:
        raise UserError(f"{tflite} takes {list(shape)} -> {list(info.output.shape)}; parity checks image "
                        "classifiers [1, N, N, 1 or 3] -> [1, classes]")
    return shape[3], shape[1], info.output.shape[-1]


@dataclass(frozen=True)
class _ParitySubject:
    """What `parity` checks an int8 file against: the checkpoint's model, or (without one) the file's
    own geometry."""

    model: ExportableModel | None
    channels: int
    resolution: int
    num_classes: int
    class_names: list[str] | None
    input_range: str | None          # None: the input quantization gate accepts any byte mapping
    head: str | None
    context: dict                    # the report's model section, its own part


def _parity_subject(opts: ParityOptions, info) -> _ParitySubject:
    from vwwtorch.contract.deployment import matching_normalization
    from vwwtorch.training.checkpoint import load_exportable

    if opts.ckpt is not None:
        model = load_exportable(opts.ckpt)
        _check_shapes(info, opts.tflite, (1, model.resolution, model.resolution, model.in_channels),
                      model.num_classes, "the checkpoint's model")
        return _ParitySubject(model, model.in_channels, model.resolution, model.num_classes, model.class_names,
                              model.input_range, model.head, {"checkpoint": str(opts.ckpt), "width": model.width})
    channels, resolution, num_classes = _foreign_geometry(info, opts.tflite)
    found = matching_normalization(info.input.scale or 0.0, info.input.zero_point or 0) \
        if info.input.scale else None
    return _ParitySubject(None, channels, resolution, num_classes, None, None, None,
                          {"checkpoint": None, "camera_bytes_as": found.name if found else None})


def parity(opts: ParityOptions) -> Outcome:
    """The int8 gates for any int8 `.tflite` (ours or not): against the checkpoint it claims to be,
    or, without one, every gate that needs no torch model."""
    from vwwtorch.bridge.calibration import check_dataset, load_eval_images, pick_split
    from vwwtorch.bridge.export_stages import kept_reference
    from vwwtorch.bridge.float_runners import torch_probabilities
    from vwwtorch.bridge.parity import run_parity
    from vwwtorch.bridge.report import build_report, print_table, write_reports
    from vwwtorch.contract.deployment import SYMMETRIC
    from vwwtorch.contract.tflite import load_tflite

    _check_counts(None, opts.num_parity)
    opts.thresholds.check()
    started = time.monotonic()
    out = check_folder(opts.out, overwrite=True) if opts.out is not None else None
    int8_model, info = load_tflite(opts.tflite)
    info.require_classifier(str(opts.tflite))
    if not info.is_int8:
        raise UserError(f"{opts.tflite} is not a full-integer int8 model (input {info.input.dtype}, "
                        f"output {info.output.dtype}); parity checks int8 models")
    subject = _parity_subject(opts, info)
    model = subject.model
    meta = check_dataset(opts.data, subject.channels, subject.resolution, subject.num_classes, subject.class_names)
    split = pick_split(meta, ("val", "test"), opts.data, "the parity check")
    data = load_eval_images(opts.data, split, opts.num_parity, subject.channels, subject.resolution, meta,
                            progress=opts.progress, input_range=subject.input_range or SYMMETRIC.name)
    torch_probs = torch_probabilities(model.model, data.images, progress=opts.progress) if model else None
    simulated, kept = kept_reference(model, data, opts.source_tflite, opts.progress) if model else (None, None)
    result = run_parity(torch_probs=torch_probs, data=data, int8_model=int8_model, int8_info=info,
                        thresholds=opts.thresholds, allowed_ops=opts.allowed_ops or ops_for(subject.head),
                        input_range=subject.input_range, progress=opts.progress, simulated_probs=simulated,
                        kept=kept)
    report = build_report(result, report_context(
        model={**subject.context, "tflite": str(opts.tflite), "in_channels": subject.channels,
               "resolution": subject.resolution, "classes": list(subject.class_names or meta["classes"])},
        data={"dir": str(opts.data), "parity_split": split, "parity_images": len(data)},
        thresholds=opts.thresholds, files={opts.tflite.name: int8_model}))
    if out is not None:
        with written_as_user_error(out):
            out.mkdir(parents=True, exist_ok=True)
            write_reports(out, report)
    timings = {"total": time.monotonic() - started}
    if opts.progress:
        print_table(report)
    if not report["passed"]:
        raise GateFailed("parity gate failed: " + " | ".join(report["failures"]))
    return Outcome(report, out, timings)
