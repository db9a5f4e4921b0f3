"""The parity gate: the same preprocessed images through every seam of the bridge.

    torch (float, EMA weights) --- ONNX Runtime          max |probability difference|
    torch                      --- TFLite float32        max |probability difference|
    torch                      --- TFLM (int8)           top-1 agreement, accuracy drop (binomial tests)
    kept quantization          --- TFLM                  within 1 LSB: the QAT simulation or the source file
    (no checkpoint)                TFLM (int8)           accuracy on the data's labels
    TFLite int8 reference kernels --- TFLite Micro       bit-exact int8 outputs

plus the static checks of the int8 file and its footprint (file bytes, TFLM arena bytes, op
histogram). Each gate is a module of `vwwtorch.bridge.gates`; this runs them in order. Every seam
reports its worst images so a failure can be chased; a seam that cannot run fails, saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from vwwtorch.bridge.calibration import EvalImages
from vwwtorch.bridge.gates import (int8_accuracy, int8_agreement, kept_quantization, softmax_input_scale,
                                   static_checks, tflm_bit_exact)
from vwwtorch.bridge.gates.check import WORST, Check, Seam, not_run
from vwwtorch.bridge.gates.float_seams import probability_seam
from vwwtorch.bridge.isolated import Isolated, RuntimeCrashed
from vwwtorch.plumbing.errors import UserError
from vwwtorch.contract.litert import TFLiteModel, raw_outputs
from vwwtorch.contract.tflite import ModelFile
from vwwtorch.contract.tflm import run_tflm


@dataclass
class Thresholds:
    onnx_max_diff: float = 1e-4          # torch vs ONNX Runtime, max |probability difference|
    float_max_diff: float = 1e-4         # torch vs TFLite float32, max |probability difference|
    min_top1_agreement: float = 0.99     # torch vs TFLite int8, fraction of images
    max_accuracy_drop: float = 1.0       # torch vs TFLite int8, accuracy points
    min_int8_accuracy: float = 0.0       # TFLite int8 alone (no checkpoint), fraction of images
    confidence: float = 0.95             # how sure the counted gates must be before they fail (binomial)

    def check(self) -> None:
        """A threshold outside its range is a wrong flag (exit 2), never a failed gate."""
        ranges = (("--max-onnx-diff", self.onnx_max_diff, 0.0, 1.0), ("--max-float-diff", self.float_max_diff, 0.0, 1.0),
                  ("--min-agreement", self.min_top1_agreement, 0.0, 1.0),
                  ("--max-accuracy-drop", self.max_accuracy_drop, 0.0, 100.0),
                  ("--min-accuracy", self.min_int8_accuracy, 0.0, 1.0), ("--confidence", self.confidence, 0.5, 0.9999))
        for flag, value, low, high in ranges:
            if not low <= value <= high:  # NaN fails both comparisons
                raise UserError(f"{flag} must be in [{low:g}, {high:g}], got {value}")


@dataclass
class ParityResult:
    checks: list[Check]
    seams: list[Seam]
    footprint: dict
    notes: dict          # informational figures, not gated

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks) and all(s.passed for s in self.seams)

    def failures(self) -> list[str]:
        failed = [f"{c.name} ({c.detail})" for c in self.checks if not c.passed]
        for seam in self.seams:
            if not seam.passed:
                worst = ", ".join(str(w["id"]) for w in seam.worst[:WORST])
                failed.append(f"{seam.title}: {seam.note or seam.requirement}"
                              + (f"; worst images: {worst}" if worst else ""))
        return failed


@dataclass(frozen=True)
class KeptReference:
    """The int8 network an export that keeps a quantization must reproduce: its name, and either its
    int8 outputs on the parity images (a QAT simulation's) or an int8 file to run through TFLM."""

    name: str
    outputs: np.ndarray | None = None
    model: bytes | None = None


def run_parity(*, torch_probs: np.ndarray | None, data: EvalImages, int8_model: bytes, int8_info: ModelFile,
               thresholds: Thresholds, allowed_ops: tuple[str, ...], input_range: str | None = "[-1, 1]",
               onnx_probs: Callable[[], np.ndarray] | None = None,
               float_probs: Callable[[], np.ndarray] | None = None,
               simulated_probs: np.ndarray | None = None, kept: KeptReference | None = None,
               progress: bool = True) -> ParityResult:
    """All gates. `onnx_probs` / `float_probs` are given by `vwwtorch export` (which made those files).
    Without `torch_probs` (a model checked without its checkpoint) the int8 model's accuracy on the
    data's labels replaces torch-vs-int8 agreement, and `input_range` None accepts any input
    quantization that camera bytes map onto. `simulated_probs`: a QAT checkpoint's simulated int8
    network, which the int8 model is compared with instead of the float one. `kept`: the network a
    kept quantization defines, which the export must equal within 1 LSB."""
    checks = static_checks(int8_info, allowed_ops, input_range)
    seams = _float_seams(torch_probs, data, thresholds, onnx_probs, float_probs)
    footprint = {"int8_bytes": len(int8_model), "tflm_arena_bytes": None, "op_histogram": int8_info.op_histogram}
    int8_gate = int8_agreement if torch_probs is not None else int8_accuracy

    def neither_runs(reason: str) -> list[Seam]:
        return [not_run(int8_gate.KEY, int8_gate.TITLE, int8_gate.requirement(thresholds), reason),
                not_run(tflm_bit_exact.KEY, tflm_bit_exact.TITLE, tflm_bit_exact.requirement(int8_info.ops), reason)]

    unsafe = [c for c in checks if c.name == softmax_input_scale.NAME and not c.passed]
    if unsafe:
        # The runtimes would abort on this model; the static check already explains why.
        return ParityResult(checks, seams + neither_runs(unsafe[0].detail), footprint, {})
    default_kernels = TFLiteModel(int8_model, name="TFLite int8")
    try:
        int8_inputs = default_kernels.model_inputs(data.pixels)
    except UserError as exc:  # no byte-to-int8 mapping: the input quantization gate says why
        return ParityResult(checks, seams + neither_runs(str(exc)), footprint, {})
    try:
        runs = _int8_runs(int8_model, int8_inputs, default_kernels, kept, progress)
    except _Int8RunFailed as exc:
        return ParityResult(checks, seams + neither_runs(str(exc)), footprint, {})
    # The int8 figures are the device's: TFLM's outputs (the next gate proves the reference kernels
    # equal them).
    device = default_kernels.dequantize(runs.tflm_raw)
    if torch_probs is not None:
        reference = simulated_probs if simulated_probs is not None else torch_probs
        seams.append(int8_agreement.int8_seam(reference, device, data, thresholds))
    else:
        seams.append(int8_accuracy.accuracy_seam(device, data, thresholds))
    if runs.kept_failure is not None:
        seams.append(not_run(kept_quantization.KEY, kept_quantization.title(kept.name),
                             kept_quantization.requirement(), runs.kept_failure))
    seams.append(tflm_bit_exact.tflm_seam(runs.tflm_raw, runs.ref_raw, data, int8_info.ops))
    if runs.kept_outputs is not None:
        seams.append(kept_quantization.kept_seam(runs.kept_outputs, runs.tflm_raw, data, kept.name))
    footprint["tflm_arena_bytes"] = runs.arena
    return ParityResult(checks, seams, footprint, _notes(default_kernels, runs, device, data))


def _float_seams(torch_probs, data: EvalImages, thresholds: Thresholds, onnx_probs, float_probs) -> list[Seam]:
    seams = []
    if onnx_probs is not None:
        seams.append(probability_seam("torch_vs_onnxruntime", "torch vs ONNX Runtime", torch_probs,
                                      onnx_probs(), thresholds.onnx_max_diff, data))
    if float_probs is not None:
        seams.append(probability_seam("torch_vs_tflite_float32", "torch vs TFLite float32", torch_probs,
                                      float_probs(), thresholds.float_max_diff, data))
    return seams


class _Int8RunFailed(Exception):
    """TFLM or the reference kernels could not run the model (the message says why)."""


@dataclass(frozen=True)
class _Int8Runs:
    tflm_raw: np.ndarray                 # TFLM's int8 outputs
    ref_raw: np.ndarray                  # TFLite reference kernels' int8 outputs
    arena: int                           # TFLM arena bytes
    default_raw: np.ndarray | None       # LiteRT's optimized kernels (None: they refused the model)
    kept_outputs: np.ndarray | None      # the kept quantization's int8 outputs
    kept_failure: str | None             # why the kept quantization's source file did not run


def _int8_runs(int8_model: bytes, int8_inputs: np.ndarray, default_kernels: TFLiteModel,
               kept: KeptReference | None, progress: bool) -> _Int8Runs:
    with Isolated() as pool:
        # Both int8 references run in child processes, side by side, while this process works.
        tflm_job = pool.submit(run_tflm, int8_model, int8_inputs)
        ref_job = pool.submit(raw_outputs, int8_model, int8_inputs, True)
        kept_job = pool.submit(run_tflm, kept.model, int8_inputs) if kept is not None and kept.model else None
        try:  # informational: LiteRT's optimized kernels, which a user's own LiteRT would run
            default_raw = default_kernels.raw_outputs(int8_inputs, progress=progress)
        except (RuntimeError, ValueError):
            default_raw = None
        if progress:
            print("      waiting for TFLM and reference-kernel runs...", flush=True)
        try:
            tflm_raw, arena = Isolated.result(tflm_job, "the TFLM runtime")
            ref_raw = Isolated.result(ref_job, "TFLite with reference kernels")
        except (RuntimeCrashed, RuntimeError, ValueError, UserError) as exc:
            raise _Int8RunFailed(str(exc)) from None
        kept_outputs, kept_failure = (kept.outputs if kept is not None else None), None
        if kept_job is not None:
            try:
                kept_outputs = Isolated.result(kept_job, f"TFLM running {kept.name}")[0]
            except (RuntimeCrashed, RuntimeError, ValueError, UserError) as exc:
                kept_failure = str(exc)
    return _Int8Runs(tflm_raw, ref_raw, arena, default_raw, kept_outputs, kept_failure)


def _notes(default_kernels: TFLiteModel, runs: _Int8Runs, device: np.ndarray, data: EvalImages) -> dict:
    notes = {}
    if default_kernels.repairs:
        # What LiteRT needed changed to load the file (TFLM runs it as it is); no gate was skipped.
        notes["litert_repairs"] = default_kernels.repairs
    if runs.default_raw is not None:
        lsb = np.abs(runs.default_raw.astype(np.int32) - runs.ref_raw.astype(np.int32)).max(axis=1)
        # Informational: TFLite's optimized kernels may round differently from the reference ones.
        notes["optimized_vs_reference_kernels"] = {"images_differing": int((lsb > 0).sum()),
                                                    "max_lsb_diff": int(lsb.max())}
    notes["tflm_accuracy"] = float((device.argmax(1) == data.labels).mean())
    return notes
