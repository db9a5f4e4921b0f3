"""Gate: the input is int8 with scale 1/127.5 and zero point -1, so camera byte b is fed as b - 128."""

from __future__ import annotations

from vwwtorch.bridge.gates.check import Check
from vwwtorch.bridge.gates.quantization import describe, matches
from vwwtorch.contract.tflite import ModelFile

EXPECTED = (1 / 127.5, -1)


def check(info: ModelFile) -> Check:
    ok = matches(info.input, EXPECTED)
    detail = describe(info.input)
    if not ok:
        detail += " - expected INT8 scale 1/127.5 zero point -1 (calibration data not in [-1, 1]?)"
    return Check("input quantization", ok, detail)
