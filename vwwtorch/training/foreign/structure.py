"""Recognize a MobileNetV1 in a foreign int8 `.tflite`: the layers, the variant, the quantization.

Two structures are accepted, with any width, resolution (a multiple of 32), 1 or 3 input channels and
any number of classes:
- slim's (TFLM's person_detect.tflite, vwwtorch's own exports): a 3x3 stride-2 stem (CONV_2D, or the
  equivalent DEPTHWISE_CONV_2D over one channel), 13 depthwise-separable blocks, AVERAGE_POOL_2D, a
  1x1 CONV_2D classifier, RESHAPE, SOFTMAX; ReLU6 fused everywhere;
- MLPerf Tiny's VWW reference: the same body with ReLU, then AVERAGE_POOL_2D, RESHAPE,
  FULLY_CONNECTED, SOFTMAX (vwwtorch's exports of that variant have no RESHAPE).
Anything else is refused in one line naming the first operator that does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from vwwtorch.contract.deployment import matching_normalization
from vwwtorch.plumbing.errors import UserError
from vwwtorch.contract.tflite import ModelFile, Operator, Tensor
from vwwtorch.models.mobilenet_v1 import SEPARABLE_BLOCKS, STEM_DEPTH, scaled_depth

FUSED = {0: "none", 1: "relu", 3: "relu6"}   # the schema's ActivationFunctionType values we accept
MOBILENET_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX")
SAME_PADDING = 0


@dataclass
class Layer:
    kind: str                 # "conv" (incl. the 1x1 pointwise), "depthwise", "dense"
    weight: Tensor
    bias: Tensor | None
    stride: int
    output: Tensor


@dataclass
class Structure:
    width: float
    in_channels: int
    resolution: int
    num_classes: int
    activation: str
    head: str                               # "conv" or "dense"
    input_range: str
    layers: list[Layer]                     # stem, 13 x (depthwise, pointwise), classifier

    @property
    def variant(self) -> dict:
        # MLPerf's structure is imported as its Keras layers are: convolutions with a bias.
        return {"activation": self.activation, "conv_bias": self.head == "dense", "head": self.head,
                "input_range": self.input_range}


def _describe(index: int, op: Operator) -> str:
    return f"operator {index} ({op.op})"


def recognize(info: ModelFile, source: str) -> Structure:
    """The MobileNetV1 in `info`, or a one-line UserError naming the first operator that does not fit."""
    norm = _check_input(info, source)
    shape = info.input.shape
    ops = info.operators
    _check_operators(ops, source)
    width = _width(ops, source)
    cursor = _Operators(ops, source)
    activations: set[str] = set()
    layers = _read_body(cursor, width, activations)
    head, index, classifier = _read_head(cursor)
    if cursor.position != len(ops):
        raise UserError(f"{source}: {_describe(cursor.position, ops[cursor.position])} follows the softmax; a "
                        "MobileNetV1 classifier ends there")
    if len(activations) != 1:
        raise UserError(f"{source} mixes activations ({', '.join(sorted(activations))}); the layers of a "
                        "MobileNetV1 share one")
    num_classes = classifier.outputs[0].shape[-1]
    if num_classes < 2:
        raise UserError(f"{source}: {_describe(index, classifier)} is a classifier of {num_classes} classes; "
                        "it needs at least 2")
    layers.append(Layer("conv" if head == "conv" else "dense", classifier.inputs[1],
                        classifier.inputs[2] if len(classifier.inputs) > 2 else None, 1, classifier.outputs[0]))
    return Structure(width=round(width, 6), in_channels=shape[3], resolution=shape[1], num_classes=num_classes,
                     activation=activations.pop(), head=head, input_range=norm.name, layers=layers)


def _check_input(info: ModelFile, source: str):
    """The input's normalization: an int8 classifier over a square camera image, or a UserError."""
    info.require_classifier(source)
    if info.input.dtype != "INT8" or info.output.dtype != "INT8":
        raise UserError(f"{source} is not a full-integer int8 model (input {info.input.dtype}, output "
                        f"{info.output.dtype}); import takes int8 .tflite files and Keras .h5 files")
    shape = info.input.shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[1] % 32 or shape[3] not in (1, 3):
        raise UserError(f"{source}: input shape {list(shape)} is not a square [1, N*32, N*32, 1 or 3] image")
    norm = matching_normalization(info.input.scale or 0.0, info.input.zero_point or 0)
    if norm is None:
        raise UserError(f"{source}: the input quantization (scale {info.input.scale}, zero point "
                        f"{info.input.zero_point}) maps no byte range; it is not a camera model")
    return norm


def _check_operators(ops: list[Operator], source: str) -> None:
    """Every operator is one a MobileNetV1 uses, and its weights have a layer's rank (before any indexing)."""
    ranks = {"CONV_2D": 4, "DEPTHWISE_CONV_2D": 4, "FULLY_CONNECTED": 2}
    for index, op in enumerate(ops):
        if op.op not in MOBILENET_OPS:
            raise UserError(f"{source}: {_describe(index, op)} is not an operator a MobileNetV1 is built from "
                            f"({', '.join(MOBILENET_OPS)})")
        if op.op in ranks and (len(op.inputs[1].shape) != ranks[op.op] or len(op.outputs[0].shape) < 2
                               or len(op.inputs[0].shape) < 2):
            raise UserError(f"{source}: {_describe(index, op)} has weights of shape {list(op.inputs[1].shape)} and "
                            f"output of shape {list(op.outputs[0].shape)}, not a layer's")


def _width(ops: list[Operator], source: str) -> float:
    """The width: from the last block's channels (1024 x width), checked on every layer later."""
    pointwise = [op for op in ops if op.op == "CONV_2D"]
    if not pointwise:
        raise UserError(f"{source} has no CONV_2D; it is not a MobileNetV1")
    body_ops = [op for op in ops if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    last_body = body_ops[26] if len(body_ops) > 26 else body_ops[-1]
    width = last_body.outputs[0].shape[-1] / SEPARABLE_BLOCKS[-1][0]
    if not 0.1 <= width <= 1.0:
        raise UserError(f"{source}: {last_body.outputs[0].shape[-1]} channels before the pool is not a "
                        "MobileNetV1 width between 0.1 and 1.0")
    return width


class _Operators:
    """The operators read front to back; `take` names what a MobileNetV1 expects next."""

    def __init__(self, ops: list[Operator], source: str):
        self.ops = ops
        self.source = source
        self.position = 0

    def take(self, *names: str) -> tuple[int, Operator]:
        if self.position >= len(self.ops):
            raise UserError(f"{self.source} ends after operator {self.position - 1}; a MobileNetV1 goes on with "
                            f"{' or '.join(names)}")
        op = self.ops[self.position]
        if op.op not in names:
            raise UserError(f"{self.source}: {_describe(self.position, op)} does not fit a MobileNetV1 "
                            f"(expected {' or '.join(names)})")
        self.position += 1
        return self.position - 1, op


def _read_body(cursor: _Operators, width: float, activations: set[str]) -> list[Layer]:
    """The stem and the 13 depthwise-separable blocks; each layer's activation goes into `activations`."""
    source = cursor.source
    layers = []
    index, stem = cursor.take("CONV_2D", "DEPTHWISE_CONV_2D")
    if stem.op == "DEPTHWISE_CONV_2D" and stem.inputs[0].shape[-1] != 1:
        raise UserError(f"{source}: {_describe(index, stem)} is a depthwise stem over "
                        f"{stem.inputs[0].shape[-1]} channels; a MobileNetV1 starts with a full convolution")
    layers.append(_conv_layer(source, index, stem, 3, 2, scaled_depth(STEM_DEPTH, width), activations))
    depth = scaled_depth(STEM_DEPTH, width)
    for base, stride in SEPARABLE_BLOCKS:
        index, op = cursor.take("DEPTHWISE_CONV_2D")
        layers.append(_conv_layer(source, index, op, 3, stride, depth, activations))
        depth = scaled_depth(base, width)
        index, op = cursor.take("CONV_2D")
        layers.append(_conv_layer(source, index, op, 1, 1, depth, activations))
    return layers


def _conv_layer(source: str, index: int, op: Operator, kernel: int, stride: int, out_channels: int,
                activations: set[str]) -> Layer:
    weight = op.inputs[1]
    options = op.options
    fused = FUSED.get(getattr(options, "fusedActivationFunction", -1))
    strides = (getattr(options, "strideH", 1), getattr(options, "strideW", 1))
    spatial = weight.shape[1:3]
    if fused not in ("relu", "relu6") or strides != (stride, stride) or tuple(spatial) != (kernel, kernel) \
            or getattr(options, "padding", SAME_PADDING) != SAME_PADDING:
        raise UserError(f"{source}: {_describe(index, op)} does not fit a MobileNetV1 (expected a "
                        f"{kernel}x{kernel} stride-{stride} SAME layer with ReLU or ReLU6, found "
                        f"{spatial[0]}x{spatial[1]} stride {strides[0]}, activation {fused})")
    activations.add(fused)
    kind = "depthwise" if op.op == "DEPTHWISE_CONV_2D" else "conv"
    channels = op.outputs[0].shape[-1]
    if channels != out_channels:
        raise UserError(f"{source}: {_describe(index, op)} has {channels} output channels where a "
                        f"MobileNetV1 of this width has {out_channels}")
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    return Layer(kind, weight, bias, stride, op.outputs[0])


def _read_head(cursor: _Operators) -> tuple[str, int, Operator]:
    """(head kind, index, classifier operator) of pool -> classifier -> softmax, either variant."""
    cursor.take("AVERAGE_POOL_2D")
    index, op = cursor.take("CONV_2D", "RESHAPE", "FULLY_CONNECTED")
    if op.op == "CONV_2D":
        head = "conv"
        classifier = op
        cursor.take("RESHAPE")
    else:
        # FULLY_CONNECTED flattens its input itself; a converter may or may not write the RESHAPE.
        head = "dense"
        index, classifier = (index, op) if op.op == "FULLY_CONNECTED" else cursor.take("FULLY_CONNECTED")
    if FUSED.get(getattr(classifier.options, "fusedActivationFunction", -1)) != "none":
        raise UserError(f"{cursor.source}: {_describe(index, classifier)} is a classifier with a fused activation")
    cursor.take("SOFTMAX")
    return head, index, classifier
