"""Static gates on an int8 `.tflite`: what the firmware and TFLM rely on, checked before running it.

- input int8 with scale 1/127.5 and zero point -1: camera byte b is fed as int8 b - 128;
- output int8 softmax probabilities with scale 1/256 and zero point -128 (the reference's);
- only the ops TFLM's person-detection build needs for MobileNetV1;
- conv weights quantized per output channel;
- a softmax input scale TFLM can handle (its int8 softmax aborts the process below 2**-26).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vwwtorch.contract.tflite import ModelFile, Tensor

MOBILENET_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "SOFTMAX")
INPUT_QUANT = (1 / 127.5, -1)
OUTPUT_QUANT = (1 / 256, -128)
# TFLM/TFLite int8 softmax: beta * input_scale * 2**(31 - 5) must exceed 1 (QuantizeMultiplierGreaterThanOne).
MIN_SOFTMAX_INPUT_SCALE = 2.0 ** -26


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


def _quant_matches(t: Tensor, expected: tuple[float, int]) -> bool:
    scale, zero_point = expected
    return (t.dtype == "INT8" and t.scale is not None and math.isclose(t.scale, scale, rel_tol=1e-6)
            and t.zero_point == zero_point)


def _describe(t: Tensor) -> str:
    if t.scale is None:
        return f"{t.dtype}, not quantized per tensor"
    return f"{t.dtype}, scale {t.scale:.9g} (1/{1 / t.scale:.6g}), zero point {t.zero_point}"


def input_quantization(info: ModelFile) -> Check:
    ok = _quant_matches(info.input, INPUT_QUANT)
    detail = _describe(info.input)
    if not ok:
        detail += " - expected INT8 scale 1/127.5 zero point -1 (calibration data not in [-1, 1]?)"
    return Check("input quantization", ok, detail)


def output_quantization(info: ModelFile) -> Check:
    ok = _quant_matches(info.output, OUTPUT_QUANT)
    detail = _describe(info.output)
    if not ok:
        detail += " - expected INT8 softmax output, scale 1/256 zero point -128"
    return Check("output quantization", ok, detail)


def op_set(info: ModelFile, allowed: tuple[str, ...] = MOBILENET_OPS) -> Check:
    extra = sorted(set(info.ops) - set(allowed))
    histogram = ", ".join(f"{k} x{v}" for k, v in info.op_histogram.items())
    last_ok = bool(info.ops) and info.ops[-1] == "SOFTMAX" if "SOFTMAX" in allowed else True
    detail = histogram
    if extra:
        detail += f" - not allowed: {', '.join(extra)}"
    if not last_ok:
        detail += " - the last op must be SOFTMAX"
    return Check("op set", not extra and last_ok, detail)


def per_channel_weights(info: ModelFile) -> Check:
    per_tensor = [t.name for _, t in info.weights
                  if t.dtype == "INT8" and len(t.scales) == 1 and _channels(t) > 1]
    not_int8 = [t.name for _, t in info.weights if t.dtype != "INT8"]
    bad = per_tensor + not_int8
    detail = f"{len(info.weights)} weight tensors"
    if per_tensor:
        detail += f"; per-tensor: {', '.join(per_tensor[:3])}"
    if not_int8:
        detail += f"; not int8: {', '.join(not_int8[:3])}"
    return Check("per-channel int8 weights", not bad, detail)


def softmax_input_scale(info: ModelFile) -> Check:
    small = [t for t in info.softmax_inputs if t.scale is not None and t.scale <= MIN_SOFTMAX_INPUT_SCALE]
    if small:
        return Check("softmax input scale", False,
                     f"{small[0].scale:.3g} is below TFLM's minimum 2^-26: the logits hardly vary on the "
                     "calibration images (untrained model or broken calibration)")
    scales = ", ".join(f"{t.scale:.4g}" for t in info.softmax_inputs if t.scale is not None)
    return Check("softmax input scale", True, scales or "no softmax")


def _channels(t: Tensor) -> int:
    # CONV_2D / FULLY_CONNECTED weights: [out, ...]; DEPTHWISE_CONV_2D: [1, h, w, out].
    if not t.shape:
        return 1
    return t.shape[-1] if t.shape[0] == 1 and len(t.shape) == 4 else t.shape[0]


def static_checks(info: ModelFile, allowed_ops: tuple[str, ...] = MOBILENET_OPS) -> list[Check]:
    """All static gates, in report order."""
    return [input_quantization(info), output_quantization(info), op_set(info, allowed_ops),
            per_channel_weights(info), softmax_input_scale(info)]
