"""Gate: only the ops TFLM's person-detection build needs for MobileNetV1 (plus FULLY_CONNECTED for
the dense head of MLPerf's variant), softmax last."""

from __future__ import annotations

from vwwtorch.bridge.gates.check import Check
from vwwtorch.contract.tflite import ModelFile

MOBILENET_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "SOFTMAX")
# MLPerf's variant classifies with a dense layer (`head="dense"`), as its reference model does.
DENSE_HEAD_OPS = (*MOBILENET_OPS, "FULLY_CONNECTED")


def ops_for(head: str | None) -> tuple[str, ...]:
    """The reference op set of a MobileNetV1 head ("conv", "dense"); None: a foreign model's, either."""
    return MOBILENET_OPS if head == "conv" else DENSE_HEAD_OPS


def check(info: ModelFile, allowed: tuple[str, ...] = MOBILENET_OPS) -> Check:
    extra = sorted(set(info.ops) - set(allowed))
    histogram = ", ".join(f"{k} x{v}" for k, v in info.op_histogram.items())
    last_ok = bool(info.ops) and info.ops[-1] == "SOFTMAX" if "SOFTMAX" in allowed else True
    detail = histogram
    if extra:
        detail += f" - not allowed: {', '.join(extra)}"
    if not last_ok:
        detail += " - the last op must be SOFTMAX"
    return Check("op set", not extra and last_ok, detail)
