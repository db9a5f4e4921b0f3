"""TFLite's int8 arithmetic as TFLM's reference kernels compute it, written once.

The quantization-aware training's simulation (`vwwtorch.models.int8_simulation`), the memory plan's
requantization tables (`vwwtorch.firmware.codegen.memory_plan`) and the tests all take the device's integer
rules from here. Each function follows the TFLM routine its docstring names (tensorflow/lite/kernels/
kernel_util.cc, internal/common.cc, internal/quantization_util.cc and the reference pooling kernel at
the pinned version), with the same double, float32 and integer steps: TFLM builds without
TFLITE_SINGLE_ROUNDING, so a requantization rounds twice (gemmlowp's doubling high multiply, then a
rounding right shift), and the multiplier of a layer is its float32 scales widened to double.
"""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1
# The schema's ActivationFunctionType values a convolution can fuse.
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
ACTIVATION_CODES = {name: code for code, name in ACTIVATIONS.items()}


def round_half_away(x: float) -> float:
    """std::round (and TfLiteRound): ties away from zero."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier: (significand in Q31, power-of-two exponent) of a double."""
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)
    fixed = int(round_half_away(fraction * (1 << 31)))
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def channel_multipliers(input_scale: float, filter_scales, output_scale: float,
                        channels: int) -> tuple[np.ndarray, np.ndarray]:
    """PopulateConvolutionQuantizationParams: per output channel, the float32 scales widened to double,
    input * filter / output, through QuantizeMultiplier. One filter scale is broadcast."""
    scales = [float(np.float32(s)) for s in filter_scales]
    if len(scales) not in (1, channels):
        raise ValueError(f"{len(scales)} filter scales for {channels} channels")
    s_in, s_out = float(np.float32(input_scale)), float(np.float32(output_scale))
    pairs = [quantize_multiplier(s_in * scales[c if len(scales) > 1 else 0] / s_out) for c in range(channels)]
    return (np.array([m for m, _ in pairs], dtype="<i4"), np.array([s for _, s in pairs], dtype="<i4"))


def dense_multiplier(input_scale: float, filter_scale: float, output_scale: float) -> tuple[int, int]:
    """GetQuantizedConvolutionMultipler, which a per-tensor FULLY_CONNECTED uses: the input and filter
    scales multiplied in float32, then widened to double and divided by the output scale."""
    product = np.float32(input_scale) * np.float32(filter_scale)
    return quantize_multiplier(float(product) / float(np.float32(output_scale)))


def quantize_value(scale: float, zero_point: int, value: float) -> int:
    """Quantize in kernel_util.h: a float32 division, rounded, plus the zero point."""
    return zero_point + int(round_half_away(float(np.float32(value) / np.float32(scale))))


def activation_range(activation: int, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for an int8 output."""
    name = ACTIVATIONS.get(activation)
    if name is None:
        raise ValueError(f"fused activation {activation} is not one a convolution supports")
    if name == "RELU":
        return max(INT8_MIN, quantize_value(scale, zero_point, 0.0)), INT8_MAX
    if name == "RELU6":
        return (max(INT8_MIN, quantize_value(scale, zero_point, 0.0)),
                min(INT8_MAX, quantize_value(scale, zero_point, 6.0)))
    if name == "RELU_N1_TO_1":
        return (max(INT8_MIN, quantize_value(scale, zero_point, -1.0)),
                min(INT8_MAX, quantize_value(scale, zero_point, 1.0)))
    return INT8_MIN, INT8_MAX


def asymmetric_parameters(low: float, high: float) -> tuple[float, int]:
    """(scale, zero point) of an int8 tensor that spans [low, high], as the TFLite converter chooses
    them: the range is widened to hold 0, 255 steps span it, and the zero point is the rounded
    position of 0 (so that real 0, a ReLU's floor and the padding, is exact). The scale is float32, as
    the file stores it."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if high - low <= 0.0:
        return float(np.float32(1.0 / 255.0)), INT8_MIN  # an all-zero tensor: any scale represents it
    scale = float(np.float32((high - low) / (INT8_MAX - INT8_MIN)))
    zero_point = int(min(INT8_MAX, max(INT8_MIN, round_half_away(INT8_MIN - low / scale))))
    return scale, zero_point


# --- the integer kernels' arithmetic, vectorised over torch int64 tensors ------------------------

def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp's SaturatingRoundingDoublingHighMul for int32 values held in int64 tensors, b >= 0 (a
    quantized multiplier): trunc((ab + nudge) / 2**31), with nudge 2**30 for ab >= 0 and 1 - 2**30
    below, is floor((ab + 2**30) / 2**31) for every sign of ab. The one saturating case,
    INT32_MIN * INT32_MIN, needs b < 0, which a multiplier never is."""
    return (a * b + (1 << 30)) >> 31


def rounding_divide_by_pot(x, exponent):
    """gemmlowp's RoundingDivideByPOT: x / 2**exponent rounded to nearest, ties away from zero
    (remainder above half, or for negative x at least half). `exponent` >= 0 broadcasts against x."""
    half = (1 << exponent) >> 1
    return (x + half - ((x < 0) & (exponent > 0)).to(x.dtype)) >> exponent


def multiply_by_quantized_multiplier(acc, multiplier, shift):
    """MultiplyByQuantizedMultiplier (double rounding) for int64 tensors; `multiplier` and `shift`
    broadcast against `acc` (per output channel)."""
    import torch

    left = torch.clamp(shift, min=0)
    right = torch.clamp(-shift, min=0)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(acc << left, multiplier), right)


def average_pool_round(total, count: int):
    """The reference int8 AveragePool's division of a window's sum by its size: ties away from zero
    (C++ division truncates towards zero after the half is added or taken)."""
    import torch

    half = count // 2
    return torch.where(total > 0, torch.div(total + half, count, rounding_mode="trunc"),
                       torch.div(total - half, count, rounding_mode="trunc"))
