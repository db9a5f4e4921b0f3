"""Gate: the output is int8 softmax probabilities with scale 1/256 and zero point -128 (the reference's)."""

from __future__ import annotations

from vwwtorch.bridge.gates.check import Check
from vwwtorch.bridge.gates.quantization import describe, matches
from vwwtorch.contract.tflite import ModelFile

EXPECTED = (1 / 256, -128)


def check(info: ModelFile) -> Check:
    ok = matches(info.output, EXPECTED)
    detail = describe(info.output)
    if not ok:
        detail += " - expected INT8 softmax output, scale 1/256 zero point -128"
    return Check("output quantization", ok, detail)
