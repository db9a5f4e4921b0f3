"""The stages of `vwwtorch export`, each a function from typed values to typed values.

    ExportableModel -> write_onnx -> model.onnx
    ExportableModel, dataset -> load_images -> ExportImages (calibration, parity)
    model.onnx, calibration -> convert_float32 -> Float32Model (+ the Keras graph for int8)
    Keras graph, calibration, KeptQuantization -> quantize_int8 -> Int8Model
    everything above -> check_parity -> ParityResult

`vwwtorch.bridge.export_run` calls them in that order, times them and writes the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vwwtorch.bridge.calibration import EvalImages
from vwwtorch.bridge.parity import KeptReference, ParityResult, Thresholds
from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.hashing import sha256_bytes

if TYPE_CHECKING:  # torch is imported when a stage runs, not when the CLI starts
    from vwwtorch.training.exportable import ExportableModel


@dataclass(frozen=True)
class ExportImages:
    calibration: EvalImages      # train images: the int8 ranges are fitted to them
    parity: EvalImages           # validation images: the gates judge on them


@dataclass(frozen=True)
class Float32Model:
    tflite: bytes                # model_float32.tflite, through the passes


@dataclass(frozen=True)
class Int8Model:
    tflite: bytes                # model_int8.tflite, through the passes
    pinned: bool                 # whether the calibration set was pinned to the whole input range


@dataclass(frozen=True)
class KeptQuantization:
    """The quantization the export keeps instead of calibrating: a QAT checkpoint's simulated int8
    network, or an imported checkpoint's source int8 ranges; `ranges` None calibrates."""

    ranges: dict | None
    qat: bool = False

    def title(self, calibration: EvalImages) -> str:
        if self.qat:
            return "int8 network of the quantization-aware training (weights, biases and ranges as simulated)"
        if self.ranges:
            return f"int8 quantization with {self.ranges['source']}'s ranges (kept by the imported checkpoint)"
        return f"int8 quantization calibrated on {len(calibration)} {calibration.split} images"

    def origin(self) -> str:
        """Where the int8 ranges came from, as parity.json says."""
        if not self.ranges:
            return "calibrated"
        if self.ranges.get("exact"):
            return "the int8 network of the quantization-aware training, written as simulated"
        return f"kept from {self.ranges['source']} (sha256 {self.ranges.get('sha256', 'unknown')})"


def kept_quantization(model: ExportableModel, calibrate: bool) -> KeptQuantization:
    if model.int8 is not None:
        from vwwtorch.bridge.qat_record import record_from_simulation

        return KeptQuantization(record_from_simulation(model), qat=True)
    return KeptQuantization(None if calibrate else model.source_quantization)


def write_onnx(model: ExportableModel, folder: Path, verbose: bool) -> Path:
    from vwwtorch.bridge.onnx_export import export_onnx

    return export_onnx(model.model, folder / "model.onnx", model.in_channels, model.resolution, verbose)


def load_images(model: ExportableModel, data: Path, meta: dict, splits: tuple[str, str],
                counts: tuple[int, int], progress: bool) -> ExportImages:
    """(calibration, parity) images of `splits`, `counts` of each, as the model takes them."""
    from vwwtorch.bridge.calibration import load_eval_images

    calibration, parity = (load_eval_images(data, split, count, model.in_channels, model.resolution, meta,
                                            progress=progress, input_range=model.input_range)
                           for split, count in zip(splits, counts))
    return ExportImages(calibration, parity)


def convert_float32(onnx_path: Path, calibration: EvalImages, folder: Path, verbose: bool):
    """(the Keras graph, which only `quantize_int8` needs, Float32Model)."""
    from vwwtorch.bridge import passes
    from vwwtorch.bridge.convert import onnx_to_keras, to_float32_tflite

    keras_model = onnx_to_keras(onnx_path, calibration.images, verbose)
    tflite = passes.apply(to_float32_tflite(keras_model, verbose))
    (folder / "model_float32.tflite").write_bytes(tflite)
    return keras_model, Float32Model(tflite)


def quantize_int8(keras_model, calibration: EvalImages, input_range: str, kept: KeptQuantization,
                  folder: Path, verbose: bool) -> Int8Model:
    from vwwtorch.bridge import passes
    from vwwtorch.bridge.calibration import pin_input_range
    from vwwtorch.bridge.convert import to_int8_tflite

    calib_images, pinned = pin_input_range(calibration.images, input_range)
    tflite = passes.apply(to_int8_tflite(keras_model, calib_images, verbose), ranges=kept.ranges)
    (folder / "model_int8.tflite").write_bytes(tflite)
    return Int8Model(tflite, pinned)


def check_parity(model: ExportableModel, onnx_path: Path, data: EvalImages, float32: Float32Model,
                 int8: Int8Model, thresholds: Thresholds, allowed_ops: tuple[str, ...],
                 source_tflite: Path | None, progress: bool) -> ParityResult:
    """Every gate, the float seams included (the export made those files)."""
    from vwwtorch.bridge.float_runners import onnx_probabilities, torch_probabilities
    from vwwtorch.bridge.parity import run_parity
    from vwwtorch.contract.litert import TFLiteModel
    from vwwtorch.contract.tflite import read_tflite

    simulated, kept = kept_reference(model, data, source_tflite, progress)
    return run_parity(
        torch_probs=torch_probabilities(model.model, data.images, progress=progress), data=data,
        int8_model=int8.tflite,
        int8_info=read_tflite(int8.tflite, "model_int8.tflite").require_classifier("model_int8.tflite"),
        thresholds=thresholds, allowed_ops=allowed_ops, input_range=model.input_range, progress=progress,
        onnx_probs=lambda: onnx_probabilities(onnx_path, data.images, progress=progress),
        float_probs=lambda: TFLiteModel(float32.tflite, name="TFLite float32").probabilities(data.images, progress),
        simulated_probs=simulated, kept=kept)


def kept_reference(model: ExportableModel, data: EvalImages, source_tflite: Path | None, progress: bool):
    """(the QAT simulation's probabilities or None, the network a kept quantization must reproduce or
    None): a QAT checkpoint's simulated int8 network; an imported checkpoint's source file, from
    `source_tflite` or the pretrained cache (matched by sha256)."""
    if model.int8 is not None:
        import torch

        from vwwtorch.models.int8_simulation import softmax_int8

        if progress:
            print("      the QAT checkpoint's simulated int8 network on the parity images...", flush=True)
        logits = model.int8.integer_logits(model.model, torch.from_numpy(data.images).permute(0, 3, 1, 2))
        return (torch.softmax(logits, 1).numpy(),
                KeptReference("QAT simulation", outputs=softmax_int8(logits).numpy().astype(np.int8)))
    record = model.source_quantization
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
