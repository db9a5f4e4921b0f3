"""Gate: weights are int8, convolutions' quantized per output channel.

A dense layer may also be quantized per tensor (MLPerf's reference model is): TFLM and CMSIS-NN take
both, and one dense layer of a few hundred weights loses nothing measurable with one scale.
"""

from __future__ import annotations

from vwwtorch.bridge.gates.check import Check
from vwwtorch.contract.tflite import ModelFile, Tensor


def check(info: ModelFile) -> Check:
    per_tensor = [t.name or op for op, t in info.weights
                  if op != "FULLY_CONNECTED" and t.dtype == "INT8" and len(t.scales) == 1 and _channels(t) > 1]
    not_int8 = [t.name for _, t in info.weights if t.dtype != "INT8"]
    bad = per_tensor + not_int8
    detail = f"{len(info.weights)} weight tensors"
    if per_tensor:
        detail += f"; per-tensor: {', '.join(per_tensor[:3])}"
    if not_int8:
        detail += f"; not int8: {', '.join(not_int8[:3])}"
    return Check("per-channel int8 weights", not bad, detail)


def _channels(t: Tensor) -> int:
    # CONV_2D / FULLY_CONNECTED weights: [out, ...]; DEPTHWISE_CONV_2D: [1, h, w, out].
    if not t.shape:
        return 1
    return t.shape[-1] if t.shape[0] == 1 and len(t.shape) == 4 else t.shape[0]
