"""Gate: the input is int8 and quantized so that camera bytes map onto it one to one.

For a model whose input range is known (an export, or a checkpoint given to `parity`) the
quantization must be exactly that range's: [-1, 1] as scale 1/127.5, zero point -1, or [0, 1] as
1/255, -128; camera byte b is then fed as b - 128. For a foreign model alone, any quantization
with a byte-to-int8 table passes (`vwwtorch.contract.deployment.matching_normalization`).
"""

from __future__ import annotations

import math

from vwwtorch.bridge.gates.check import Check
from vwwtorch.bridge.gates.quantization import describe, matches
from vwwtorch.contract.deployment import matching_normalization, normalization
from vwwtorch.contract.tflite import ModelFile

NAME = "input quantization"


def expected(input_range: str) -> tuple[float, int]:
    """(scale, zero point) the TFLite converter gives an input calibrated on exactly that range: the
    zero point -128 - low / scale rounded half away from zero, as TFLite does (-0.5 -> -1)."""
    norm = normalization(input_range)
    scale = (norm.high - norm.low) / 255
    zero_point = -128 - norm.low / scale
    return scale, int(math.copysign(math.floor(abs(zero_point) + 0.5), zero_point))


def check(info: ModelFile, input_range: str | None = "[-1, 1]") -> Check:
    detail = describe(info.input)
    if input_range is None:
        found = matching_normalization(info.input.scale, info.input.zero_point) \
            if info.input.dtype == "INT8" and info.input.scale else None
        if found is None:
            return Check(NAME, False, detail + " - no camera byte maps onto it one to one")
        return Check(NAME, True, f"{detail} (camera bytes as {found.name})")
    scale, zero_point = expected(input_range)
    ok = matches(info.input, (scale, zero_point))
    if not ok:
        detail += (f" - expected INT8 scale 1/{1 / scale:g} zero point {zero_point} for inputs in "
                   f"{input_range} (calibration data not in {input_range}?)")
    return Check(NAME, ok, detail)
