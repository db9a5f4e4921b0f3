"""`vwwtorch export` and `vwwtorch parity`: the steps in order, the output folder written atomically.

export: checkpoint (EMA weights) -> model.onnx -> onnx2tf -> model_float32.tflite and
model_int8.tflite (calibrated on train images, through the .tflite passes) -> parity gate on
validation images -> labels.txt, parity.json, parity.md. The stages are data (`STAGES`): one list
drives the progress lines, the timings and benchmarks/export.py. Everything is made in a hidden sibling folder `.<out>.partial` and renamed
to `<out>` when complete, so `<out>` is never half-written. A failed gate still leaves the complete
folder (to inspect) but without the "verified" marker, and the command exits 1.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vwwtorch.bridge.gates.op_set import ops_for
from vwwtorch.bridge.parity import Thresholds
from vwwtorch.contract.deployment import normalization
from vwwtorch.contract.errors import GateFailed, UserError
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


def _load_model(ckpt: Path):
    """The checkpoint's classifier with its EMA weights, eval mode (a UserError if it is not one)."""
    from vwwtorch.training.checkpoint import load_classifier

    return load_classifier(ckpt)


def _check_kept_quantization(module, opts: ExportOptions) -> None:
    if module.int8 is None:
        return
    if opts.calibrate:
        raise UserError(f"{opts.ckpt} was trained quantization-aware: its int8 network is what it learned, and "
                        "the export writes exactly that; --calibrate would replace it with post-training ranges")
    if not module.int8.ready:
        raise UserError(f"{opts.ckpt} was saved before quantization-aware training took a step (its int8 ranges "
                        "are not set); export a checkpoint from later in the run")


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("vwwtorch", "torch", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "ai-edge-litert", "tflite-micro"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


@dataclass
class ExportRun:
    """What the stages share: the options, the model, the staging folder, and what each stage made."""

    opts: ExportOptions
    module: object
    meta: dict
    folder: Path                     # the staging folder
    calib_split: str
    parity_split: str
    onnx_path: Path | None = None
    calib: object = None             # EvalImages
    parity_data: object = None       # EvalImages
    keras_model: object = None
    float_model: bytes = b""
    int8_model: bytes = b""
    pinned: bool = False
    result: object = None            # ParityResult
    _qat_record: dict | None = None

    @property
    def hp(self):
        return self.module.hparams

    @property
    def input_range(self) -> str:
        return self.module.model.input_range

    @property
    def allowed_ops(self) -> tuple[str, ...]:
        return self.opts.allowed_ops or ops_for(self.module.model.head)

    @property
    def source_ranges(self) -> dict | None:
        """The quantization the export keeps: a QAT checkpoint's simulated int8 network, or an imported
        checkpoint's source int8 ranges unless told to calibrate."""
        if self.module.int8 is not None:
            if self._qat_record is None:
                from vwwtorch.bridge.qat_record import record_from_simulation

                self._qat_record = record_from_simulation(self.module)
            return self._qat_record
        return None if self.opts.calibrate else self.module.source_quantization

    def quantization_title(self) -> str:
        if self.module.int8 is not None:
            return "int8 network of the quantization-aware training (weights, biases and ranges as simulated)"
        if self.source_ranges:
            return (f"int8 quantization with {self.source_ranges['source']}'s ranges (kept by the imported "
                    "checkpoint)")
        return f"int8 quantization calibrated on {len(self.calib)} {self.calib_split} images"


def _onnx(run: ExportRun) -> None:
    from vwwtorch.bridge.onnx_export import export_onnx

    hp = run.hp
    run.onnx_path = export_onnx(run.module.model, run.folder / "model.onnx", hp.in_channels, hp.resolution,
                                run.opts.verbose)


def _images(run: ExportRun) -> None:
    from vwwtorch.bridge.calibration import load_eval_images

    o, hp = run.opts, run.hp
    run.calib = load_eval_images(o.data, run.calib_split, o.num_calibration, hp.in_channels, hp.resolution,
                                 run.meta, progress=o.progress, input_range=run.input_range)
    run.parity_data = load_eval_images(o.data, run.parity_split, o.num_parity, hp.in_channels, hp.resolution,
                                       run.meta, progress=o.progress, input_range=run.input_range)


def _float32(run: ExportRun) -> None:
    from vwwtorch.bridge import passes
    from vwwtorch.bridge.convert import onnx_to_keras, to_float32_tflite

    run.keras_model = onnx_to_keras(run.onnx_path, run.calib.images, run.opts.verbose)
    run.float_model = passes.apply(to_float32_tflite(run.keras_model, run.opts.verbose))
    (run.folder / "model_float32.tflite").write_bytes(run.float_model)


def _int8(run: ExportRun) -> None:
    from vwwtorch.bridge import passes
    from vwwtorch.bridge.calibration import pin_input_range
    from vwwtorch.bridge.convert import to_int8_tflite

    calib_images, run.pinned = pin_input_range(run.calib.images, run.input_range)
    run.int8_model = passes.apply(to_int8_tflite(run.keras_model, calib_images, run.opts.verbose),
                                  ranges=run.source_ranges)
    (run.folder / "model_int8.tflite").write_bytes(run.int8_model)
    run.keras_model = None


def _parity(run: ExportRun) -> None:
    from vwwtorch.bridge.float_runners import onnx_probabilities, torch_probabilities
    from vwwtorch.bridge.parity import run_parity
    from vwwtorch.contract.litert import TFLiteModel
    from vwwtorch.contract.tflite import read_tflite

    o, data, p = run.opts, run.parity_data, run.opts.progress
    simulated, kept = kept_reference(run.module, data, o.source_tflite, p)
    run.result = run_parity(
        torch_probs=torch_probabilities(run.module.model, data.images, progress=p), data=data,
        int8_model=run.int8_model,
        int8_info=read_tflite(run.int8_model, "model_int8.tflite").require_classifier("model_int8.tflite"),
        thresholds=o.thresholds, allowed_ops=run.allowed_ops, input_range=run.input_range, progress=p,
        onnx_probs=lambda: onnx_probabilities(run.onnx_path, data.images, progress=p),
        float_probs=lambda: TFLiteModel(run.float_model, name="TFLite float32").probabilities(data.images, p),
        simulated_probs=simulated, kept=kept)


def kept_reference(module, data, source_tflite: Path | None, progress: bool):
    """(the QAT simulation's probabilities or None, the network a kept quantization must reproduce or
    None): a QAT checkpoint's simulated int8 network; an imported checkpoint's source file, from
    `source_tflite` or the pretrained cache (matched by sha256)."""
    from vwwtorch.bridge.parity import KeptReference

    if module.int8 is not None:
        import torch

        from vwwtorch.models.int8_simulation import softmax_int8

        if progress:
            print("      the QAT checkpoint's simulated int8 network on the parity images...", flush=True)
        logits = module.int8.integer_logits(module.model, torch.from_numpy(data.images).permute(0, 3, 1, 2))
        return (torch.softmax(logits, 1).numpy(),
                KeptReference("QAT simulation", outputs=softmax_int8(logits).numpy().astype(np.int8)))
    record = module.source_quantization
    if source_tflite is not None:
        return None, KeptReference(f"source {source_tflite.name}", model=_read_source(source_tflite, record))
    if record and record.get("sha256"):
        from vwwtorch.training.foreign.pretrained import cached_file

        found = cached_file(record["sha256"])
        if found is not None:
            return None, KeptReference(f"source {found.name}", model=found.read_bytes())
    return None, None


def _read_source(path: Path, record: dict | None) -> bytes:
    from vwwtorch.contract.tflite import load_tflite

    if not record:
        raise UserError(f"--source-tflite {path}: the checkpoint keeps no source quantization (it was not "
                        "imported, or it was fine-tuned since); there is no source model to compare with")
    data, _ = load_tflite(path)
    if record.get("sha256") and sha256_bytes(data) != record["sha256"]:
        raise UserError(f"--source-tflite {path} is not the file the checkpoint was imported with "
                        f"({record['source']}, sha256 {record['sha256'][:12]}...)")
    return data


@dataclass(frozen=True)
class Stage:
    key: str                              # its entry in the timings (and benchmarks/export.py's table)
    title: Callable[[ExportRun], str]     # its progress line
    run: Callable[[ExportRun], None]


# The export, in order: one list drives the progress lines, the timings and the benchmark.
STAGES = (
    Stage("onnx_export", lambda r: f"ONNX export of {r.opts.ckpt} (EMA weights, "
                                   f"1x{r.hp.in_channels}x{r.hp.resolution}x{r.hp.resolution})", _onnx),
    Stage("load_images", lambda r: f"eval preprocessing of calibration ({r.calib_split}) and parity "
                                   f"({r.parity_split}) images", _images),
    Stage("conversion", lambda r: "onnx2tf conversion, TFLite float32", _float32),
    Stage("calibration", lambda r: r.quantization_title(), _int8),
    Stage("parity", lambda r: f"parity on {len(r.parity_data)} {r.parity_split} images", _parity),
)


def export(opts: ExportOptions) -> Outcome:
    from vwwtorch.bridge.calibration import check_dataset, pick_split
    from vwwtorch.bridge.report import build_report, print_table, write_reports

    _check_counts(opts.num_calibration, opts.num_parity)
    opts.thresholds.check()
    timings: dict[str, float] = {}
    started = time.monotonic()
    out = check_folder(opts.out, overwrite=opts.overwrite)
    module = _load_model(opts.ckpt)
    _check_kept_quantization(module, opts)
    hp = module.hparams
    meta = check_dataset(opts.data, hp.in_channels, hp.resolution, hp.num_classes, module.class_names)
    calib_split = pick_split(meta, ("train", "val"), opts.data, "calibration")
    parity_split = pick_split(meta, ("val", "test"), opts.data, "the parity check")
    with staged_folder(out, checked=True) as tmp:
        run = ExportRun(opts, module, meta, tmp, calib_split, parity_split)
        for number, stage in enumerate(STAGES, 1):
            _stage(opts.progress, f"[{number}/{len(STAGES)}] {stage.title(run)}")
            t = time.monotonic()
            stage.run(run)
            timings[stage.key] = time.monotonic() - t

        (tmp / "labels.txt").write_text("".join(f"{name}\n" for name in module.class_names), encoding="utf-8")
        context = {
            "model": {"checkpoint": str(opts.ckpt), "architecture": "MobileNetV1",
                      "width": hp.width, "in_channels": hp.in_channels, "resolution": hp.resolution,
                      "num_classes": hp.num_classes, "classes": list(module.class_names), "weights": "EMA"},
            "data": {"dir": str(opts.data),
                     "preprocessing": f"eval: central crop 87.5%, resize, {normalization(run.input_range).formula}",
                     "calibration_split": calib_split, "calibration_images": len(run.calib),
                     "calibration_range_pinned": run.pinned,
                     "int8_ranges": _ranges_origin(run),
                     "parity_split": parity_split, "parity_images": len(run.parity_data)},
            "thresholds": asdict(opts.thresholds),
            "files": {name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_bytes((tmp / name).read_bytes())}
                      for name in ("model.onnx", "model_float32.tflite", "model_int8.tflite")},
            "versions": _versions(),
        }
        report = build_report(run.result, context)
        write_reports(tmp, report)
    timings["total"] = time.monotonic() - started
    if opts.progress:
        print_table(report)
        print(f"wrote {', '.join(FILES)} to {opts.out} in {timings['total']:.0f} s")
    if not report["passed"]:
        raise GateFailed("parity gate failed, model not verified: " + " | ".join(report["failures"]))
    return Outcome(report, opts.out, timings)


def _ranges_origin(run: ExportRun) -> str:
    ranges = run.source_ranges
    if not ranges:
        return "calibrated"
    if ranges.get("exact"):
        return "the int8 network of the quantization-aware training, written as simulated"
    return f"kept from {ranges['source']} (sha256 {ranges.get('sha256', 'unknown')})"


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


def parity(opts: ParityOptions) -> Outcome:
    """The int8 gates for any int8 `.tflite` (ours or not): against the checkpoint it claims to be,
    or, without one, every gate that needs no torch model."""
    from vwwtorch.bridge.calibration import check_dataset, load_eval_images, pick_split
    from vwwtorch.bridge.float_runners import torch_probabilities
    from vwwtorch.bridge.parity import run_parity
    from vwwtorch.bridge.report import build_report, print_table, write_reports
    from vwwtorch.contract.deployment import SYMMETRIC, matching_normalization
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
    if opts.ckpt is not None:
        module = _load_model(opts.ckpt)
        hp = module.hparams
        channels, resolution, num_classes = hp.in_channels, hp.resolution, hp.num_classes
        _check_shapes(info, opts.tflite, (1, resolution, resolution, channels), num_classes, "the checkpoint's model")
        class_names, input_range, head = module.class_names, module.model.input_range, module.model.head
        model_context = {"checkpoint": str(opts.ckpt), "width": hp.width}
    else:
        module = None
        channels, resolution, num_classes = _foreign_geometry(info, opts.tflite)
        class_names, head = None, None
        found = matching_normalization(info.input.scale or 0.0, info.input.zero_point or 0) \
            if info.input.scale else None
        # None: the input quantization gate accepts any byte mapping (and says so when there is none).
        input_range = None
        model_context = {"checkpoint": None, "camera_bytes_as": found.name if found else None}
    meta = check_dataset(opts.data, channels, resolution, num_classes, class_names)
    split = pick_split(meta, ("val", "test"), opts.data, "the parity check")
    data = load_eval_images(opts.data, split, opts.num_parity, channels, resolution, meta,
                            progress=opts.progress, input_range=input_range or SYMMETRIC.name)
    torch_probs = torch_probabilities(module.model, data.images, progress=opts.progress) if module else None
    simulated, kept = kept_reference(module, data, opts.source_tflite, opts.progress) if module else (None, None)
    result = run_parity(torch_probs=torch_probs, data=data, int8_model=int8_model, int8_info=info,
                        thresholds=opts.thresholds, allowed_ops=opts.allowed_ops or ops_for(head),
                        input_range=input_range, progress=opts.progress, simulated_probs=simulated, kept=kept)
    context = {
        "model": {**model_context, "tflite": str(opts.tflite), "in_channels": channels, "resolution": resolution,
                  "classes": list(class_names or meta["classes"])},
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
