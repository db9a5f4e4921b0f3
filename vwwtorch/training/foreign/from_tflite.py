"""An int8 `.tflite` MobileNetV1's weights, dequantized into PyTorch layouts.

Weights are int8 with a scale per output channel (zero point 0): real = q x scale. Biases are int32
with scale input_scale x weight_scale per channel, which the bias tensor carries itself. The
layouts: CONV_2D [out, kh, kw, in] and DEPTHWISE_CONV_2D [1, kh, kw, channels] (a one-channel
stem held as a depthwise layer has multiplier = out channels), FULLY_CONNECTED [out, in].
"""

from __future__ import annotations

import numpy as np

from vwwtorch.plumbing.errors import UserError
from vwwtorch.contract.tflite import Tensor
from vwwtorch.training.foreign.structure import Layer, Structure
from vwwtorch.training.foreign.weights import LayerWeights


def dequantize(tensor: Tensor, what: str) -> np.ndarray:
    """A constant int8/int32 tensor as float32, scale per channel along its quantized dimension."""
    values = tensor.values()
    if values is None:
        raise UserError(f"{what} has no constant data")
    if tensor.dtype not in ("INT8", "INT32") or not tensor.scales:
        raise UserError(f"{what} is {tensor.dtype} without a scale; import takes int8 weights and int32 biases")
    if any(z != 0 for z in tensor.zero_points):
        raise UserError(f"{what} has a non-zero zero point; int8 weights are quantized symmetrically")
    scales = np.asarray(tensor.scales, dtype=np.float64)
    if len(scales) > 1:
        axis = tensor.quantized_dimension if values.ndim > 1 else 0
        if values.shape[axis] != len(scales):
            raise UserError(f"{what} has {len(scales)} scales for {values.shape[axis]} channels")
        shape = [1] * values.ndim
        shape[axis] = len(scales)
        scales = scales.reshape(shape)
    return (values.astype(np.float64) * scales).astype(np.float32)


def _layout(layer: Layer, values: np.ndarray) -> np.ndarray:
    if layer.kind == "depthwise":
        return values.transpose(3, 0, 1, 2)        # [1, kh, kw, C] -> [C, 1, kh, kw] (also a 1-channel stem)
    if layer.kind == "conv":
        return values.transpose(0, 3, 1, 2)        # [out, kh, kw, in] -> [out, in, kh, kw]
    return values                                  # dense: [out, in] already


def layer_weights(structure: Structure) -> list[LayerWeights]:
    """The 28 layers of `structure` (stem, 13 x (depthwise, pointwise), classifier), float32."""
    out = []
    for number, layer in enumerate(structure.layers):
        name = f"{layer.kind} layer {number} ({layer.output.name or 'unnamed'})"
        values = dequantize(layer.weight, f"{name} weights")
        weight = _layout(layer, values)
        bias = dequantize(layer.bias, f"{name} bias") if layer.bias is not None else None
        out.append(LayerWeights(name, weight, bias))
    return out
