"""Helpers shared by the quantization gates."""

from __future__ import annotations

import math

from vwwtorch.contract.tflite import Tensor


def matches(t: Tensor, expected: tuple[float, int]) -> bool:
    scale, zero_point = expected
    return (t.dtype == "INT8" and t.scale is not None and math.isclose(t.scale, scale, rel_tol=1e-6)
            and t.zero_point == zero_point)


def describe(t: Tensor) -> str:
    if t.scale is None:
        return f"{t.dtype}, not quantized per tensor"
    return f"{t.dtype}, scale {t.scale:.9g} (1/{1 / t.scale:.6g}), zero point {t.zero_point}"
