"""The integer constants TFLM derives for an int8 convolution when it prepares the layer, computed
here instead, with the same double and float arithmetic, so the firmware can keep them in flash.

Each function follows the TFLM routine named in its docstring (tensorflow/lite/kernels/
kernel_util.cc, quantization_util.cc and padding.h at the pinned version); the firmware tests run
rewritten models against TFLM's own preparation on many inputs and demand identical scores.
"""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
# The schema's ActivationFunctionType values a convolution can fuse.
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
SAME, VALID = 0, 1  # the schema's Padding values


def _round_half_away(x: float) -> float:
    """std::round."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier: (significand in Q31, power-of-two exponent) of a double."""
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)
    fixed = int(_round_half_away(fraction * (1 << 31)))
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


def _quantize(scale: float, zero_point: int, value: float) -> int:
    """Quantize in kernel_util.h: a float32 division, rounded, plus the zero point."""
    return zero_point + int(_round_half_away(float(np.float32(value) / np.float32(scale))))


def activation_range(activation: int, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for an int8 output."""
    name = ACTIVATIONS.get(activation)
    if name is None:
        raise ValueError(f"fused activation {activation} is not one a convolution supports")
    if name == "RELU":
        return max(INT8_MIN, _quantize(scale, zero_point, 0.0)), INT8_MAX
    if name == "RELU6":
        return max(INT8_MIN, _quantize(scale, zero_point, 0.0)), min(INT8_MAX, _quantize(scale, zero_point, 6.0))
    if name == "RELU_N1_TO_1":
        return max(INT8_MIN, _quantize(scale, zero_point, -1.0)), min(INT8_MAX, _quantize(scale, zero_point, 1.0))
    return INT8_MIN, INT8_MAX


def output_size(padding: int, size: int, kernel: int, stride: int) -> int:
    """ComputeOutSize, dilation 1."""
    return (size + stride - 1) // stride if padding == SAME else (size - kernel + stride) // stride


def leading_padding(padding: int, size: int, kernel: int, stride: int) -> int:
    """ComputePaddingWithOffset's padding before the first row or column (dilation 1)."""
    out = output_size(padding, size, kernel, stride)
    return max((out - 1) * stride + kernel - size, 0) // 2
