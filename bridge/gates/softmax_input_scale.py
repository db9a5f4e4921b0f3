"""Gate: a softmax input scale TFLM can handle.

TFLM's and TFLite's int8 softmax need beta * input_scale * 2**(31 - 5) > 1
(QuantizeMultiplierGreaterThanOne) and abort the whole process otherwise, so this is checked before
any runtime touches the model.
"""

from __future__ import annotations

from vwwtorch.bridge.gates.check import Check
from vwwtorch.contract.tflite import ModelFile

NAME = "softmax input scale"
MIN_SOFTMAX_INPUT_SCALE = 2.0 ** -26


def check(info: ModelFile) -> Check:
    small = [t for t in info.softmax_inputs if t.scale is not None and t.scale <= MIN_SOFTMAX_INPUT_SCALE]
    if small:
        return Check(NAME, False,
                     f"{small[0].scale:.3g} is below TFLM's minimum 2^-26: the logits hardly vary on the "
                     "calibration images (untrained model or broken calibration)")
    scales = ", ".join(f"{t.scale:.4g}" for t in info.softmax_inputs if t.scale is not None)
    return Check(NAME, True, scales or "no softmax")
