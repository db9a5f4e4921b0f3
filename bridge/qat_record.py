"""A QAT checkpoint's int8 network as a quantization record, the form the source-ranges pass writes.

An imported checkpoint keeps its source's quantization as a record: the input's and every operator's
output (scale, zero point) in graph order, with each weighted operator's weight scales and int32
biases (`vwwtorch.training.foreign.importer`). A QAT checkpoint's record comes from its simulation
(`Int8Simulation.integer_layers`) and adds the int8 weights themselves, in the file's layouts, so the
pass writes them as they are (`"exact": true`) and the exported file is the simulated network.
"""

from __future__ import annotations

import numpy as np

SOURCE = "quantization-aware training"


def _op(kind: str, weight: np.ndarray) -> str:
    if kind == "dense":
        return "FULLY_CONNECTED"
    # A convolution over one input channel (the grayscale stem) is emitted as the equivalent depthwise
    # one (`passes.one_channel_depthwise`).
    return "DEPTHWISE_CONV_2D" if kind == "depthwise" or weight.shape[1] == 1 else "CONV_2D"


def _tflite_layout(op: str, weight: np.ndarray) -> np.ndarray:
    if op == "DEPTHWISE_CONV_2D":
        return weight.transpose(1, 2, 3, 0)       # [1, kh, kw, channels] from [channels, 1, kh, kw]
    if op == "CONV_2D":
        return weight.transpose(0, 2, 3, 1)       # [out, kh, kw, in]
    return weight                                  # FULLY_CONNECTED [out, in]


def _entry(layer) -> dict:
    op = _op(layer.kind, layer.weight)
    return {"op": op, "scale": float(layer.output[0]), "zero_point": int(layer.output[1]),
            "weight_scales": [float(s) for s in layer.weight_scales], "bias": [int(b) for b in layer.bias],
            "weights": np.ascontiguousarray(_tflite_layout(op, layer.weight))}


def record_from_simulation(module) -> dict:
    """The record of a QAT classifier's (`VWWClassifier` with `int8`) simulated int8 network."""
    from vwwtorch.models.int8_simulation import SOFTMAX_SCALE, SOFTMAX_ZERO_POINT

    layers = module.int8.integer_layers(module.model)
    *convolutions, head = layers
    pooled = {"op": "AVERAGE_POOL_2D", "scale": float(convolutions[-1].output[0]),
              "zero_point": int(convolutions[-1].output[1])}
    operators = [_entry(layer) for layer in convolutions] + [pooled, _entry(head)]
    operators.append({"op": "SOFTMAX", "scale": SOFTMAX_SCALE, "zero_point": SOFTMAX_ZERO_POINT})
    scale, zero_point = module.int8.input_quantization
    return {"source": SOURCE, "exact": True, "input": {"scale": float(scale), "zero_point": int(zero_point)},
            "operators": operators}
