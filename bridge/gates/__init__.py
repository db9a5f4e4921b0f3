"""The gates an int8 export must pass, one per module.

Static gates read the `.tflite` file before anything runs it:
    input_quantization   int8, the model's input range's scale and zero point (b -> b - 128)
    output_quantization  int8 softmax, scale 1/256, zero point -128
    op_set               only the MobileNetV1 ops of TFLM's person-detection build, softmax last
    per_channel_weights  weights int8, per output channel
    softmax_input_scale  a scale TFLM's softmax can take (it aborts below 2**-26)
Seams run the same images through two runtimes:
    float_seams          torch vs ONNX Runtime, torch vs TFLite float32
    int8_agreement       torch vs TFLite int8 (top-1 agreement, accuracy drop)
    tflm_bit_exact       TFLM vs TFLite reference kernels (bit-exact)
"""

from __future__ import annotations

from vwwtorch.bridge.gates import (input_quantization, op_set, output_quantization, per_channel_weights,
                                   softmax_input_scale)
from vwwtorch.bridge.gates.check import Check
from vwwtorch.bridge.gates.op_set import MOBILENET_OPS
from vwwtorch.contract.tflite import ModelFile


def static_checks(info: ModelFile, allowed_ops: tuple[str, ...] = MOBILENET_OPS,
                  input_range: str | None = "[-1, 1]") -> list[Check]:
    """Every static gate, in report order. `input_range` None: a foreign model's, not known."""
    return [input_quantization.check(info, input_range), output_quantization.check(info),
            op_set.check(info, allowed_ops), per_channel_weights.check(info), softmax_input_scale.check(info)]
