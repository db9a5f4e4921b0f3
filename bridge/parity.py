"""The parity gate: the same preprocessed images through every seam of the bridge.

    torch (float, EMA weights) --- ONNX Runtime          max |probability difference|
    torch                      --- TFLite float32        max |probability difference|
    torch                      --- TFLite int8           top-1 agreement, accuracy drop
    TFLite int8 reference kernels --- TFLite Micro       bit-exact int8 outputs

plus the static checks of the int8 file (bridge.quant_checks) and its footprint (file bytes,
TFLM arena bytes, op histogram). Every seam reports its worst images so a failure can be chased.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from vwwtorch.bridge.calibration import EvalImages
from vwwtorch.bridge.isolated import Isolated, RuntimeCrashed
from vwwtorch.bridge.quant_checks import Check, static_checks
from vwwtorch.contract.errors import UserError
from vwwtorch.contract.litert import TFLiteModel, raw_outputs
from vwwtorch.contract.tflite import ModelFile
from vwwtorch.contract.tflm import run_tflm

WORST = 5


@dataclass
class Thresholds:
    onnx_max_diff: float = 1e-4          # torch vs ONNX Runtime, max |probability difference|
    float_max_diff: float = 1e-4         # torch vs TFLite float32, max |probability difference|
    min_top1_agreement: float = 0.99     # torch vs TFLite int8, fraction of images
    max_accuracy_drop: float = 1.0       # torch vs TFLite int8, accuracy points

    def check(self) -> None:
        """A threshold outside its range is a wrong flag (exit 2), never a failed gate."""
        ranges = (("--max-onnx-diff", self.onnx_max_diff, 0.0, 1.0), ("--max-float-diff", self.float_max_diff, 0.0, 1.0),
                  ("--min-agreement", self.min_top1_agreement, 0.0, 1.0),
                  ("--max-accuracy-drop", self.max_accuracy_drop, 0.0, 100.0))
        for flag, value, low, high in ranges:
            if not low <= value <= high:  # NaN fails both comparisons
                raise UserError(f"{flag} must be in [{low:g}, {high:g}], got {value}")


@dataclass
class Seam:
    key: str
    title: str
    passed: bool
    metrics: dict
    requirement: str
    worst: list[dict] = field(default_factory=list)   # [{"index", "id", "label", ...}]
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


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


def _worst(order: np.ndarray, data: EvalImages, **columns: np.ndarray) -> list[dict]:
    rows = []
    for i in order[:WORST]:
        row = {"index": int(i), "id": _plain(data.ids[i]), "label": int(data.labels[i])}
        row.update({k: _plain(v[i]) for k, v in columns.items()})
        rows.append(row)
    return rows


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    return round(value, 8) if isinstance(value, float) else value


def _probability_seam(key: str, title: str, reference: np.ndarray, other: np.ndarray, limit: float,
                      data: EvalImages) -> Seam:
    diff = np.abs(reference.astype(np.float64) - other.astype(np.float64)).max(axis=1)
    worst = np.argsort(-diff, kind="stable")
    max_diff = float(diff.max())
    return Seam(key, title, max_diff <= limit, {"max_abs_diff": max_diff, "mean_abs_diff": float(diff.mean())},
                f"max |p diff| <= {limit:g}", _worst(worst, data, abs_diff=diff))


def _int8_requirement(t: Thresholds) -> str:
    return f"top-1 agreement >= {t.min_top1_agreement:.0%}, accuracy drop <= {t.max_accuracy_drop:g} point"


def _int8_seam(torch_probs: np.ndarray, int8_probs: np.ndarray, data: EvalImages, t: Thresholds) -> Seam:
    torch_top, int8_top = torch_probs.argmax(1), int8_probs.argmax(1)
    agree = torch_top == int8_top
    diff = np.abs(torch_probs.astype(np.float64) - int8_probs.astype(np.float64)).max(axis=1)
    float_acc = float((torch_top == data.labels).mean())
    int8_acc = float((int8_top == data.labels).mean())
    drop = (float_acc - int8_acc) * 100
    agreement = float(agree.mean())
    # Disagreements first, then the largest probability differences.
    order = np.lexsort((-diff, agree))
    passed = agreement >= t.min_top1_agreement and drop <= t.max_accuracy_drop
    note = ""
    if not passed:
        note = (f"top-1 agreement {agreement:.2%} (need >= {t.min_top1_agreement:.2%}), "
                f"accuracy drop {drop:.2f} points (allowed {t.max_accuracy_drop:g})")
    return Seam("torch_vs_tflite_int8", "torch vs TFLite int8", passed,
                {"top1_agreement": agreement, "disagreements": int((~agree).sum()),
                 "mean_abs_diff": float(diff.mean()), "max_abs_diff": float(diff.max()),
                 "float_accuracy": float_acc, "int8_accuracy": int8_acc, "accuracy_drop_points": drop},
                _int8_requirement(t),
                _worst(order, data, torch_top1=torch_top, int8_top1=int8_top, abs_diff=diff), note)


def _tflm_seam(tflm: np.ndarray, reference: np.ndarray, data: EvalImages) -> Seam:
    lsb = np.abs(tflm.astype(np.int32) - reference.astype(np.int32)).max(axis=1)
    mismatched = int((lsb > 0).sum())
    order = np.argsort(-lsb, kind="stable")
    worst = _worst(order[:mismatched], data, max_lsb_diff=lsb) if mismatched else []
    return Seam("tflm_vs_tflite_ref", "TFLM vs TFLite int8 (reference kernels)", mismatched == 0,
                {"images": len(lsb), "mismatched_images": mismatched, "max_lsb_diff": int(lsb.max())},
                "bit-exact on every image", worst,
                f"{mismatched} of {len(lsb)} images differ (up to {int(lsb.max())} LSB)" if mismatched else "")


def _not_run(key: str, title: str, requirement: str, reason: str) -> Seam:
    return Seam(key, title, False, {}, requirement, [], f"not run: {reason}")


def run_parity(*, torch_probs: np.ndarray, data: EvalImages, int8_model: bytes, int8_info: ModelFile,
               thresholds: Thresholds, allowed_ops: tuple[str, ...],
               onnx_probs: Callable[[], np.ndarray] | None = None,
               float_probs: Callable[[], np.ndarray] | None = None,
               progress: bool = True) -> ParityResult:
    """All gates. `onnx_probs` / `float_probs` are given by `vwwtorch export` (which made those files)."""
    checks = static_checks(int8_info, allowed_ops)
    seams: list[Seam] = []
    if onnx_probs is not None:
        seams.append(_probability_seam("torch_vs_onnxruntime", "torch vs ONNX Runtime", torch_probs,
                                       onnx_probs(), thresholds.onnx_max_diff, data))
    if float_probs is not None:
        seams.append(_probability_seam("torch_vs_tflite_float32", "torch vs TFLite float32", torch_probs,
                                       float_probs(), thresholds.float_max_diff, data))
    footprint = {"int8_bytes": len(int8_model), "tflm_arena_bytes": None, "op_histogram": int8_info.op_histogram}
    int8_req = _int8_requirement(thresholds)
    tflm_req = "bit-exact on every image"
    unsafe = [c for c in checks if c.name == "softmax input scale" and not c.passed]
    if unsafe:
        # The runtimes would abort on this model; the static check already explains why.
        seams.append(_not_run("torch_vs_tflite_int8", "torch vs TFLite int8", int8_req, unsafe[0].detail))
        seams.append(_not_run("tflm_vs_tflite_ref", "TFLM vs TFLite int8 (reference kernels)", tflm_req,
                              unsafe[0].detail))
        return ParityResult(checks, seams, footprint, {})

    default_kernels = TFLiteModel(int8_model, name="TFLite int8")
    try:
        int8_inputs = default_kernels.model_inputs(data.pixels)
    except UserError as exc:  # no byte-to-int8 mapping: the input quantization gate says why
        for key, title, requirement in (("torch_vs_tflite_int8", "torch vs TFLite int8", int8_req),
                                        ("tflm_vs_tflite_ref", "TFLM vs TFLite int8 (reference kernels)", tflm_req)):
            seams.append(_not_run(key, title, requirement, str(exc)))
        return ParityResult(checks, seams, footprint, {})
    with Isolated() as pool:
        # Both int8 references run in child processes, side by side, while this process works.
        tflm_job = pool.submit(run_tflm, int8_model, int8_inputs)
        ref_job = pool.submit(raw_outputs, int8_model, int8_inputs, True)
        try:
            default_raw = default_kernels.raw_outputs(int8_inputs, progress=progress)
        except (RuntimeError, ValueError) as exc:
            default_raw = None
            seams.append(_not_run("torch_vs_tflite_int8", "torch vs TFLite int8", int8_req, str(exc)))
        if default_raw is not None:
            seams.append(_int8_seam(torch_probs, default_kernels.dequantize(default_raw), data, thresholds))
        if progress:
            print("      waiting for TFLM and reference-kernel runs...", flush=True)
        try:
            tflm_raw, arena = Isolated.result(tflm_job, "the TFLM runtime")
            ref_raw = Isolated.result(ref_job, "TFLite with reference kernels")
        except (RuntimeCrashed, RuntimeError, ValueError, UserError) as exc:
            seams.append(_not_run("tflm_vs_tflite_ref", "TFLM vs TFLite int8 (reference kernels)", tflm_req,
                                  str(exc)))
            return ParityResult(checks, seams, footprint, {})
    seams.append(_tflm_seam(tflm_raw, ref_raw, data))
    footprint["tflm_arena_bytes"] = arena
    notes = {}
    if default_raw is not None:
        lsb = np.abs(default_raw.astype(np.int32) - ref_raw.astype(np.int32)).max(axis=1)
        # Informational: TFLite's optimized kernels may round differently from the reference ones.
        notes["optimized_vs_reference_kernels"] = {"images_differing": int((lsb > 0).sum()),
                                                    "max_lsb_diff": int(lsb.max())}
    notes["tflm_accuracy"] = float((default_kernels.dequantize(tflm_raw).argmax(1) == data.labels).mean())
    return ParityResult(checks, seams, footprint, notes)
