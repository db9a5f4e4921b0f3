"""A Keras `.h5` MobileNetV1 (MLPerf Tiny's float VWW model and its kind), read with h5py alone.

The file's `model_config` attribute lists the layers in order; `model_weights/<layer>` holds each
layer's arrays in the order its `weight_names` attribute gives (kernel, bias; gamma, beta, moving
mean, moving variance). The accepted structure, with any width, resolution and class count:

    Input -> 27 x (Conv2D or DepthwiseConv2D 'same', [BatchNormalization], ReLU or ReLU6)
          -> AveragePooling2D over the whole map (or GlobalAveragePooling2D) -> [Flatten] -> [Dropout]
          -> Dense (linear or softmax)

with the activation as its own layer (Activation, ReLU) or fused into the convolution. BatchNorm
keeps its real statistics; an epsilon other than vwwtorch's is folded into the variance (or, where
that cannot be, into gamma).
Anything else is refused in one line naming the first layer that does not fit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vwwtorch.contract.errors import UserError
from vwwtorch.models.mobilenet_v1 import BN_EPS, SEPARABLE_BLOCKS, STEM_DEPTH, scaled_depth
from vwwtorch.training.foreign.weights import BatchNormStats, LayerWeights

PASS_THROUGH = ("InputLayer", "Dropout", "Flatten")
CONV_LAYERS = ("Conv2D", "DepthwiseConv2D")


@dataclass
class KerasModel:
    architecture: dict
    layers: list[LayerWeights]


def _activation(layer: dict) -> str | None:
    """'relu', 'relu6', 'linear', 'softmax' for an activation layer or a layer's fused activation."""
    config = layer["config"]
    if layer["class_name"] == "ReLU":
        max_value = config.get("max_value")
        if config.get("negative_slope", 0) or config.get("threshold", 0):
            return "leaky"
        return "relu" if max_value is None else ("relu6" if float(max_value) == 6.0 else f"relu{max_value}")
    value = config.get("activation", "linear")
    return value if isinstance(value, str) else json.dumps(value)


def _weights(group, layer_name: str, source: str) -> list[np.ndarray]:
    if layer_name not in group:
        raise UserError(f"{source} has no weights for layer {layer_name}")
    entry = group[layer_name]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in entry.attrs.get("weight_names", [])]
    return [np.asarray(entry[name], dtype=np.float32) for name in names]


def read_keras_h5(path: Path) -> KerasModel:
    """The MobileNetV1 in a Keras `.h5` file; a one-line UserError if it is not one."""
    import h5py

    source = str(path)
    if not path.is_file():
        raise UserError(f"Keras model {path} does not exist" if not path.exists() else f"{path} is a folder, not a file")
    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise UserError(f"{source} is not an HDF5 file") from None
    with handle:
        if "model_config" not in handle.attrs or "model_weights" not in handle:
            raise UserError(f"{source} is an HDF5 file without a Keras model (no model_config and "
                            "model_weights); save the whole model with model.save('x.h5')")
        config = json.loads(handle.attrs["model_config"])
        layers = config.get("config", {}).get("layers", [])
        return _read_layers(layers, handle["model_weights"], source)


def _read_layers(layers: list[dict], weights, source: str) -> KerasModel:
    def fail(layer: dict, expected: str) -> UserError:
        return UserError(f"{source}: layer {layer['config'].get('name')} ({layer['class_name']}) does not fit "
                         f"a MobileNetV1 (expected {expected})")

    if not layers or layers[0]["class_name"] != "InputLayer":
        raise UserError(f"{source} does not start with an input layer")
    config = layers[0]["config"]
    shape = config.get("batch_input_shape") or config.get("batch_shape") or []
    if len(shape) != 4 or shape[1] != shape[2] or not shape[1] or shape[1] % 32 or shape[3] not in (1, 3):
        raise UserError(f"{source}: input shape {shape} is not a square [N*32, N*32, 1 or 3] image")
    resolution, channels = int(shape[1]), int(shape[3])

    queue = [layer for layer in layers[1:]]
    position = 0

    def peek() -> dict | None:
        return queue[position] if position < len(queue) else None

    def take() -> dict:
        nonlocal position
        position += 1
        return queue[position - 1]

    out: list[LayerWeights] = []
    activations: set[str] = set()
    biases: set[bool] = set()
    plan: list[tuple[str, int, int, int | None]] = [("Conv2D", 3, 2, STEM_DEPTH)]
    for base, stride in SEPARABLE_BLOCKS:
        plan += [("DepthwiseConv2D", 3, stride, None), ("Conv2D", 1, 1, base)]
    planned: list[tuple[dict, int | None]] = []
    for kind, kernel, stride, base in plan:
        layer = peek()
        if layer is None:
            raise UserError(f"{source} ends after {len(out)} convolutions; a MobileNetV1 has 27 before its pool")
        take()
        c = layer["config"]
        if layer["class_name"] != kind or tuple(c.get("kernel_size", ())) != (kernel, kernel) \
                or tuple(c.get("strides", ())) != (stride, stride) or c.get("padding") != "same" \
                or kind == "DepthwiseConv2D" and c.get("depth_multiplier", 1) != 1:
            raise fail(layer, f"a {kind} {kernel}x{kernel} stride {stride} with padding 'same'")
        arrays = _weights(weights, c["name"], source)
        if kind == "Conv2D":
            kernel_values = arrays[0].transpose(3, 2, 0, 1)        # [kh, kw, in, out] -> [out, in, kh, kw]
        else:
            kernel_values = arrays[0].transpose(2, 3, 0, 1)        # [kh, kw, C, 1] -> [C, 1, kh, kw]
        bias = arrays[1] if c.get("use_bias", True) and len(arrays) > 1 else None
        biases.add(bias is not None)
        fused = _activation(layer)
        stats = None
        if peek() is not None and peek()["class_name"] == "BatchNormalization":
            if fused != "linear":
                raise fail(layer, "no activation before its BatchNormalization")
            stats = _batch_norm(take(), weights, source)
        if fused == "linear":
            act_layer = peek()
            if act_layer is None or act_layer["class_name"] not in ("Activation", "ReLU"):
                raise fail(act_layer or layer, "an Activation or ReLU layer")
            fused = _activation(take())
        if fused not in ("relu", "relu6"):
            raise UserError(f"{source}: layer {c['name']} uses activation {fused}; a MobileNetV1 uses ReLU or ReLU6")
        activations.add(fused)
        out.append(LayerWeights(f"layer {c['name']}", kernel_values, bias, stats))
        planned.append((layer, base))

    # The width from the last layer (1024 x width), then every layer's filters checked against it.
    width = out[-1].weight.shape[0] / SEPARABLE_BLOCKS[-1][0]
    if not 0.1 <= width <= 1.0:
        raise UserError(f"{source}: {out[-1].weight.shape[0]} channels before the pool is not a MobileNetV1 "
                        "width between 0.1 and 1.0")
    depth = scaled_depth(STEM_DEPTH, width)
    for (layer, base), weights_of in zip(planned, out):
        depth = scaled_depth(base, width) if base is not None else depth
        if weights_of.weight.shape[0] != depth:
            raise fail(layer, f"{depth} filters for a MobileNetV1 of width {width:g}")
    layer = peek()
    if layer is None or layer["class_name"] not in ("AveragePooling2D", "GlobalAveragePooling2D"):
        raise fail(layer or queue[-1], "an average pool over the whole feature map")
    take()
    size = resolution // 32
    if layer["class_name"] == "AveragePooling2D" and tuple(layer["config"].get("pool_size", ())) != (size, size):
        raise fail(layer, f"a {size}x{size} average pool (the whole feature map)")
    while peek() is not None and peek()["class_name"] in PASS_THROUGH:
        take()
    layer = peek()
    if layer is None or layer["class_name"] != "Dense":
        raise fail(layer or queue[-1], "a Dense classifier")
    take()
    if _activation(layer) not in ("linear", "softmax"):
        raise fail(layer, "a Dense classifier with a linear or softmax output")
    arrays = _weights(weights, layer["config"]["name"], source)
    dense = LayerWeights(f"layer {layer['config']['name']}", arrays[0].T.copy(), arrays[1] if len(arrays) > 1 else None)
    out.append(dense)
    if peek() is not None and peek()["class_name"] == "Activation" and _activation(peek()) == "softmax":
        take()
    if peek() is not None:
        raise fail(peek(), "nothing after the classifier")
    if len(activations) != 1:
        raise UserError(f"{source} mixes activations ({', '.join(sorted(activations))}); the layers of a "
                        "MobileNetV1 share one")
    architecture = {"width": round(width, 6), "in_channels": channels, "resolution": resolution,
                    "num_classes": int(dense.weight.shape[0]), "activation": activations.pop(),
                    "conv_bias": True in biases, "head": "dense"}
    return KerasModel(architecture, out)


def _batch_norm(layer: dict, weights, source: str) -> BatchNormStats:
    c = layer["config"]
    arrays = _weights(weights, c["name"], source)
    scale, center = c.get("scale", True), c.get("center", True)
    expected = 2 + int(bool(scale)) + int(bool(center))
    if len(arrays) != expected:
        raise UserError(f"{source}: BatchNormalization {c['name']} holds {len(arrays)} arrays, expected {expected}")
    arrays = list(arrays)
    channels = arrays[-1].shape[0]
    gamma = arrays.pop(0) if scale else np.ones(channels, np.float32)
    beta = arrays.pop(0) if center else np.zeros(channels, np.float32)
    mean, variance = arrays
    # The same normalization with vwwtorch's epsilon: var' = var + eps_keras - BN_EPS. Where that would
    # be negative (a smaller epsilon and a near-zero variance), the scale goes into gamma instead.
    denominator = np.sqrt(variance.astype(np.float64) + float(c.get("epsilon", BN_EPS)))
    shifted = denominator ** 2 - BN_EPS
    representable = shifted >= 0
    variance = np.where(representable, shifted, 1.0 - BN_EPS).astype(np.float32)
    gamma = np.where(representable, gamma, gamma / denominator).astype(np.float32)
    return BatchNormStats(gamma, beta, mean, variance)
