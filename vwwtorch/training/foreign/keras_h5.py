"""A Keras `.h5` MobileNetV1 (MLPerf Tiny's float VWW model and its kind), read with h5py alone.

The file's `model_config` attribute lists the layers in order; `model_weights/<layer>` holds each
layer's arrays in the order its `weight_names` attribute gives (kernel, bias; gamma, beta, moving
mean, moving variance). The accepted structure, with any width, resolution and class count:

    Input -> 27 x (Conv2D or DepthwiseConv2D 'same', [BatchNormalization], ReLU or ReLU6)
          -> AveragePooling2D over the whole map (or GlobalAveragePooling2D) -> [Flatten] -> [Dropout]
          -> Dense (linear or softmax)

with the activation as its own layer (Activation, ReLU) or fused into the convolution, each layer
fed by the one listed before it (a chain: a functional model's `inbound_nodes` are checked). BatchNorm
keeps its real statistics; an epsilon other than vwwtorch's is folded into the variance (or, where
that cannot be, into gamma).
Anything else is refused in one line naming the first layer that does not fit. The file is untrusted
input: every attribute is checked for its type before use, a dataset's size before it is read
(`MAX_WEIGHT_VALUES`), and a link to another file is refused instead of followed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.names import printable
from vwwtorch.models.mobilenet_v1 import BN_EPS, SEPARABLE_BLOCKS, STEM_DEPTH, scaled_depth
from vwwtorch.training.foreign.weights import BatchNormStats, LayerWeights

PASS_THROUGH = ("InputLayer", "Dropout", "Flatten")
# A MobileNetV1-1.0's largest array holds 1024 x 1024 values (the dense head 1024 x classes).
MAX_WEIGHT_VALUES = 16 << 20


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
        if max_value is None:
            return "relu"
        if not isinstance(max_value, (int, float)) or isinstance(max_value, bool):
            return f"ReLU with max_value {printable(repr(max_value))}"
        return "relu6" if float(max_value) == 6.0 else f"relu{max_value:g}"
    value = config.get("activation", "linear")
    return value if isinstance(value, str) else printable(json.dumps(value))


def _pair(value) -> tuple | None:
    """A Keras size or stride: an int or a list of two."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    return tuple(value) if isinstance(value, (list, tuple)) else None


def _weights(group, layer_name: str, source: str, what: str) -> list[np.ndarray]:
    """A layer's arrays in `weight_names` order, each checked before it is read."""
    import h5py

    shown = f"{source}: layer {printable(layer_name)}"
    if not isinstance(group.get(layer_name, getlink=True), (h5py.HardLink, h5py.SoftLink)) \
            or not isinstance(group.get(layer_name), h5py.Group):
        raise UserError(f"{source} has no weights for layer {printable(layer_name)}")
    entry = group[layer_name]
    names = entry.attrs.get("weight_names", [])
    if isinstance(names, (str, bytes)) or not hasattr(names, "__len__") or not len(names):
        raise UserError(f"{shown} lists no weights (expected {what})")
    arrays = []
    for raw in names:
        name = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        link = entry.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise UserError(f"{shown}: weight {printable(name)} is a link to another file, which vwwtorch does "
                            "not follow")
        dataset = entry.get(name) if link is not None else None
        if not isinstance(dataset, h5py.Dataset):
            raise UserError(f"{shown}: weight {printable(name)} is missing from the file")
        if dataset.dtype.kind not in "fiu":
            raise UserError(f"{shown}: weight {printable(name)} holds {dataset.dtype}, not numbers")
        if dataset.size > MAX_WEIGHT_VALUES:
            raise UserError(f"{shown}: weight {printable(name)} of shape {list(dataset.shape)} holds "
                            f"{dataset.size:,} values, more than a MobileNetV1 layer ({MAX_WEIGHT_VALUES:,})")
        try:
            values = np.asarray(dataset[()], dtype=np.float32)
        except (OSError, ValueError, TypeError) as exc:
            raise UserError(f"{shown}: weight {printable(name)} cannot be read ({_first_line(exc)})") from None
        if not np.isfinite(values).all():
            raise UserError(f"{shown}: weight {printable(name)} holds values that are not finite numbers")
        arrays.append(values)
    return arrays


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return printable(text.splitlines()[0][:200]) if text else type(exc).__name__


def _kernel(arrays: list[np.ndarray], ndim: int, shown: str) -> np.ndarray:
    if arrays[0].ndim != ndim:
        raise UserError(f"{shown}: its kernel has shape {list(arrays[0].shape)}, not {ndim}-D")
    return arrays[0]


def _layers_of(handle, source: str) -> list[dict]:
    """The layer list of the file's model_config, each a dict with a class name, a config and a name,
    and wired as a chain (each layer fed by the one before it)."""
    raw = handle.attrs["model_config"]
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    try:
        config = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        config = None
    if config is None:
        raise UserError(f"{source}: its model_config attribute is not JSON text")
    layers = config.get("config", {}).get("layers") if isinstance(config, dict) and isinstance(
        config.get("config"), dict) else None
    if not isinstance(layers, list):
        raise UserError(f"{source}: its model_config lists no layers; save the whole model with model.save('x.h5')")
    for number, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("class_name"), str) \
                or not isinstance(layer.get("config"), dict) or not isinstance(layer["config"].get("name"), str):
            raise UserError(f"{source}: layer {number} of its model_config has no class_name, config or name")
    for before, layer in zip(layers, layers[1:]):
        fed_by = _inbound_names(layer)
        if fed_by is not None and fed_by != [before["config"]["name"]]:
            raise UserError(f"{source}: layer {printable(layer['config']['name'])} ({layer['class_name']}) is fed by "
                            f"{', '.join(map(printable, fed_by)) or 'nothing'}, not by the layer before it "
                            f"({printable(before['config']['name'])}); a MobileNetV1 is a chain")
    return layers


def _inbound_names(layer: dict) -> list[str] | None:
    """The layers feeding `layer` (Keras 2 `[[[name, node, tensor, {}]]]` or Keras 3 `keras_history`),
    None for a Sequential model's layers, which carry no wiring."""
    if "inbound_nodes" not in layer:
        return None
    names: list = []

    def walk(value) -> None:
        if isinstance(value, dict):
            history = value.get("keras_history")
            if isinstance(history, list) and history:
                names.append(str(history[0]))
                return
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int):
                names.append(value[0])
                return
            for item in value:
                walk(item)

    nodes = layer["inbound_nodes"]
    if isinstance(nodes, list) and len(nodes) > 1:
        return ["(a layer used more than once)"]
    walk(nodes)
    return names


def read_keras_h5(path: Path) -> KerasModel:
    """The MobileNetV1 in a Keras `.h5` file; a one-line UserError if it is not one."""
    import h5py

    source = printable(path)
    if not path.is_file():
        raise UserError(f"Keras model {source} does not exist" if not path.exists()
                        else f"{source} is a folder, not a file")
    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise UserError(f"{source} is not an HDF5 file") from None
    with handle:
        if "model_config" not in handle.attrs or not isinstance(handle.get("model_weights"), h5py.Group):
            raise UserError(f"{source} is an HDF5 file without a Keras model (no model_config and "
                            "model_weights); save the whole model with model.save('x.h5')")
        try:
            return _read_layers(_layers_of(handle, source), handle["model_weights"], source)
        except (OSError, RuntimeError) as exc:  # HDF5's own errors: a damaged file
            raise UserError(f"{source} cannot be read as HDF5 ({_first_line(exc)})") from None


def _misfit(source: str, layer: dict, expected: str) -> UserError:
    return UserError(f"{source}: layer {printable(layer['config']['name'])} ({printable(layer['class_name'])}) "
                     f"does not fit a MobileNetV1 (expected {expected})")


class _Layers:
    """The layers after the input, read front to back: the MobileNetV1 is matched in one pass."""

    def __init__(self, layers: list[dict]):
        self.layers = layers
        self.position = 0

    def peek(self) -> dict | None:
        return self.layers[self.position] if self.position < len(self.layers) else None

    def take(self) -> dict:
        self.position += 1
        return self.layers[self.position - 1]

    def next_is(self, *class_names: str) -> bool:
        layer = self.peek()
        return layer is not None and layer["class_name"] in class_names


def _read_layers(layers: list[dict], weights, source: str) -> KerasModel:
    resolution, channels = _input_shape(layers, source)
    queue = _Layers(layers[1:])
    out: list[LayerWeights] = []
    activations: set[str] = set()
    biases: set[bool] = set()
    plan: list[tuple[str, int, int, int | None]] = [("Conv2D", 3, 2, STEM_DEPTH)]
    for base, stride in SEPARABLE_BLOCKS:
        plan += [("DepthwiseConv2D", 3, stride, None), ("Conv2D", 1, 1, base)]
    planned: list[tuple[dict, int | None]] = []
    for kind, kernel, stride, base in plan:
        layer = queue.peek()
        if layer is None:
            raise UserError(f"{source} ends after {len(out)} convolutions; a MobileNetV1 has 27 before its pool")
        conv, activation = _read_conv(queue, weights, source, kind, kernel, stride)
        biases.add(conv.bias is not None)
        activations.add(activation)
        out.append(conv)
        planned.append((layer, base))
    width = _check_width(out, planned, source)
    dense = _read_head(queue, weights, source, resolution)
    out.append(dense)
    if len(activations) != 1:
        raise UserError(f"{source} mixes activations ({', '.join(sorted(activations))}); the layers of a "
                        "MobileNetV1 share one")
    architecture = {"width": round(width, 6), "in_channels": channels, "resolution": resolution,
                    "num_classes": int(dense.weight.shape[0]), "activation": activations.pop(),
                    "conv_bias": True in biases, "head": "dense"}
    return KerasModel(architecture, out)


def _input_shape(layers: list[dict], source: str) -> tuple[int, int]:
    """(resolution, channels) of the input layer, which must be a square image a MobileNetV1 can take."""
    if not layers or layers[0]["class_name"] != "InputLayer":
        raise UserError(f"{source} does not start with an input layer")
    config = layers[0]["config"]
    shape = config.get("batch_input_shape") or config.get("batch_shape") or []
    if not isinstance(shape, list) or len(shape) != 4 \
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape[1:]) \
            or shape[1] != shape[2] or not 32 <= shape[1] <= 4096 or shape[1] % 32 or shape[3] not in (1, 3):
        raise UserError(f"{source}: input shape {printable(repr(shape))} is not a square [N*32, N*32, 1 or 3] image "
                        "(N*32 up to 4096)")
    return int(shape[1]), int(shape[3])


def _read_conv(queue: _Layers, weights, source: str, kind: str, kernel: int,
               stride: int) -> tuple[LayerWeights, str]:
    """One planned convolution with its BatchNormalization and activation (fused or a layer of its own)."""
    layer = queue.take()
    c = layer["config"]
    if layer["class_name"] != kind or _pair(c.get("kernel_size")) != (kernel, kernel) \
            or _pair(c.get("strides")) != (stride, stride) or c.get("padding") != "same" \
            or kind == "DepthwiseConv2D" and c.get("depth_multiplier", 1) != 1:
        raise _misfit(source, layer, f"a {kind} {kernel}x{kernel} stride {stride} with padding 'same'")
    arrays = _weights(weights, c["name"], source, "a kernel and maybe a bias")
    shown = f"{source}: layer {printable(c['name'])}"
    if kind == "Conv2D":
        kernel_values = _kernel(arrays, 4, shown).transpose(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]
    else:
        kernel_values = _kernel(arrays, 4, shown).transpose(2, 3, 0, 1)  # [kh, kw, C, 1] -> [C, 1, kh, kw]
    bias = arrays[1] if c.get("use_bias", True) and len(arrays) > 1 else None
    if bias is not None and bias.shape != kernel_values.shape[:1]:
        raise UserError(f"{shown}: its bias has shape {list(bias.shape)} for {kernel_values.shape[0]} filters")
    fused = _activation(layer)
    stats = None
    if queue.next_is("BatchNormalization"):
        if fused != "linear":
            raise _misfit(source, layer, "no activation before its BatchNormalization")
        stats = _batch_norm(queue.take(), weights, source)
    if fused == "linear":
        act_layer = queue.peek()
        if act_layer is None or act_layer["class_name"] not in ("Activation", "ReLU"):
            raise _misfit(source, act_layer or layer, "an Activation or ReLU layer")
        fused = _activation(queue.take())
    if fused not in ("relu", "relu6"):
        raise UserError(f"{source}: layer {printable(c['name'])} uses activation {printable(str(fused))}; a "
                        "MobileNetV1 uses ReLU or ReLU6")
    return LayerWeights(f"layer {printable(c['name'])}", kernel_values, bias, stats), fused


def _check_width(out: list[LayerWeights], planned: list[tuple[dict, int | None]], source: str) -> float:
    """The width from the last layer (1024 x width), then every layer's filters checked against it."""
    width = out[-1].weight.shape[0] / SEPARABLE_BLOCKS[-1][0]
    if not 0.1 <= width <= 1.0:
        raise UserError(f"{source}: {out[-1].weight.shape[0]} channels before the pool is not a MobileNetV1 "
                        "width between 0.1 and 1.0")
    depth = scaled_depth(STEM_DEPTH, width)
    for (layer, base), weights_of in zip(planned, out):
        depth = scaled_depth(base, width) if base is not None else depth
        if weights_of.weight.shape[0] != depth:
            raise _misfit(source, layer, f"{depth} filters for a MobileNetV1 of width {width:g}")
    return width


def _read_head(queue: _Layers, weights, source: str, resolution: int) -> LayerWeights:
    """The whole-map average pool, pass-through layers, the Dense classifier and an optional softmax."""
    layer = queue.peek()
    if layer is None or layer["class_name"] not in ("AveragePooling2D", "GlobalAveragePooling2D"):
        raise _misfit(source, layer or queue.layers[-1], "an average pool over the whole feature map")
    queue.take()
    size = resolution // 32
    if layer["class_name"] == "AveragePooling2D" and _pair(layer["config"].get("pool_size")) != (size, size):
        raise _misfit(source, layer, f"a {size}x{size} average pool (the whole feature map)")
    while queue.next_is(*PASS_THROUGH):
        queue.take()
    layer = queue.peek()
    if layer is None or layer["class_name"] != "Dense":
        raise _misfit(source, layer or queue.layers[-1], "a Dense classifier")
    queue.take()
    if _activation(layer) not in ("linear", "softmax"):
        raise _misfit(source, layer, "a Dense classifier with a linear or softmax output")
    arrays = _weights(weights, layer["config"]["name"], source, "a kernel and a bias")
    shown = f"{source}: layer {printable(layer['config']['name'])}"
    dense = LayerWeights(f"layer {printable(layer['config']['name'])}", _kernel(arrays, 2, shown).T.copy(),
                         arrays[1] if len(arrays) > 1 else None)
    if dense.weight.shape[0] < 2:
        raise UserError(f"{shown}: a classifier of {dense.weight.shape[0]} classes; it needs at least 2")
    if queue.next_is("Activation") and _activation(queue.peek()) == "softmax":
        queue.take()
    if queue.peek() is not None:
        raise _misfit(source, queue.peek(), "nothing after the classifier")
    return dense


def _batch_norm(layer: dict, weights, source: str) -> BatchNormStats:
    c = layer["config"]
    arrays = _weights(weights, c["name"], source, "gamma, beta, mean and variance")
    scale, center = c.get("scale", True), c.get("center", True)
    expected = 2 + int(bool(scale)) + int(bool(center))
    shown = f"{source}: BatchNormalization {printable(c['name'])}"
    if len(arrays) != expected:
        raise UserError(f"{shown} holds {len(arrays)} arrays, expected {expected}")
    if any(a.ndim != 1 or a.shape != arrays[-1].shape for a in arrays):
        raise UserError(f"{shown} holds arrays of shapes {[list(a.shape) for a in arrays]}; expected one value "
                        "per channel in each")
    epsilon = c.get("epsilon", BN_EPS)
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not epsilon >= 0:
        raise UserError(f"{shown} has epsilon {printable(repr(epsilon))}, not a non-negative number")
    arrays = list(arrays)
    channels = arrays[-1].shape[0]
    gamma = arrays.pop(0) if scale else np.ones(channels, np.float32)
    beta = arrays.pop(0) if center else np.zeros(channels, np.float32)
    mean, variance = arrays
    # The same normalization with vwwtorch's epsilon: var' = var + eps_keras - BN_EPS. Where that would
    # be negative (a smaller epsilon and a near-zero variance), the scale goes into gamma instead.
    denominator = np.sqrt(variance.astype(np.float64) + float(epsilon))
    shifted = denominator ** 2 - BN_EPS
    representable = shifted >= 0
    variance = np.where(representable, shifted, 1.0 - BN_EPS).astype(np.float32)
    gamma = np.where(representable, gamma, gamma / denominator).astype(np.float32)
    return BatchNormStats(gamma, beta, mean, variance)
