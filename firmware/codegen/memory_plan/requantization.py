"""The integer constants TFLM derives for an int8 convolution when it prepares the layer, computed
here instead, so the firmware can keep them in flash.

The arithmetic (QuantizeMultiplier, the per-channel multipliers, the fused activation's range) is
TFLite's, defined once in `vwwtorch.contract.int8_arithmetic`; this adds TFLM's padding and output
size rules (padding.h). The firmware tests run rewritten models against TFLM's own preparation on
many inputs and demand identical scores.
"""

from __future__ import annotations

SAME, VALID = 0, 1  # the schema's Padding values


def output_size(padding: int, size: int, kernel: int, stride: int) -> int:
    """ComputeOutSize, dilation 1."""
    return (size + stride - 1) // stride if padding == SAME else (size - kernel + stride) // stride


def leading_padding(padding: int, size: int, kernel: int, stride: int) -> int:
    """ComputePaddingWithOffset's padding before the first row or column (dilation 1)."""
    out = output_size(padding, size, kernel, stride)
    return max((out - 1) * stride + kernel - size, 0) // 2
