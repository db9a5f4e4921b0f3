"""Quantization-aware training's model of the int8 network: MobileNetV1 as TFLite computes it.

The int8 network the bridge ships (and TFLM runs) has, for every convolution, BatchNorm folded into
the weights, weights quantized symmetrically per output channel to -127..127, an int32 bias on the
scale input x weight, and an output quantized per tensor (asymmetric int8) with ReLU6/ReLU fused
into its clamp; average pooling keeps its input's quantization; the classifier's logits have their
own; the softmax output is 1/256, -128. The input is the camera byte through the model's table.

`Int8Simulation` holds what training learns beyond the float weights: the range of every layer's
output (an exponential moving average of the batches' minima and maxima, as TensorFlow's QAT keeps
them, or the imported source's own ranges to start from). It computes the network two ways:

- training: float fake quantization (`torch.fake_quantize_per_*_affine`, straight-through
  gradients): weights folded with BatchNorm and quantized per channel, every activation quantized to
  its range. With BatchNorm training, the fold follows the usual recipe for QAT: the weights are
  quantized folded with the running statistics and the output is rescaled and normalised by the
  batch's, so the statistics keep adapting;
- evaluation: the integer network itself, bit for bit as TFLM's reference kernels compute it
  (integer accumulation, TFLite's multipliers and double rounding, `vwwtorch.contract.int8_arithmetic`).
  What validation reports during QAT is therefore the device's accuracy, and `integer_layers` is
  what `vwwtorch export` writes into the int8 file, so the export equals the simulation.

The softmax is not simulated in integers: evaluation returns the dequantized int8 logits, and TFLM's
fixed-point softmax of them is within one step of the float one (the parity gate checks it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vwwtorch.contract.deployment import byte_to_int8, normalization
from vwwtorch.contract.int8_arithmetic import (ACTIVATION_CODES, INT8_MAX, INT8_MIN, INT32_MAX, INT32_MIN,
                                               activation_range, asymmetric_parameters, average_pool_round,
                                               channel_multipliers, dense_multiplier,
                                               multiply_by_quantized_multiplier)
from vwwtorch.models.mobilenet_v1 import ConvBNAct, MobileNetV1

WEIGHT_MAX = 127          # symmetric weights: -127..127 (TFLite leaves -128 unused)
RANGE_MOMENTUM = 0.01     # the moving average of each output's range, per training step
BATCH = 32                # images per pass of the integer network (its int64 maps stay in cache)
SOFTMAX_SCALE, SOFTMAX_ZERO_POINT = 1.0 / 256.0, -128


@dataclass
class IntegerLayer:
    """One weighted op of the int8 network, as the file stores it and the kernel computes it."""

    kind: str                     # "conv", "depthwise" or "dense"
    weight: np.ndarray            # int8, PyTorch layout ([out, in/groups, kh, kw] or [out, in])
    weight_scales: np.ndarray     # float32, one per output channel (one for dense)
    bias: np.ndarray              # int32, on input scale x weight scale
    input: tuple[float, int]      # (scale, zero point)
    output: tuple[float, int]
    activation: str               # the fused activation: RELU6, RELU or NONE
    stride: int = 1
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)   # left, right, top, bottom (zeros in real terms)
    groups: int = 1

    @property
    def activation_limits(self) -> tuple[int, int]:
        return activation_range(ACTIVATION_CODES[self.activation], *self.output)

    def multipliers(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "dense":
            m, s = dense_multiplier(self.input[0], float(self.weight_scales[0]), self.output[0])
            return torch.tensor([m], dtype=torch.int64), torch.tensor([s], dtype=torch.int64)
        m, s = channel_multipliers(self.input[0], self.weight_scales, self.output[0], len(self.bias))
        return torch.from_numpy(m.astype(np.int64)), torch.from_numpy(s.astype(np.int64))

    def run(self, q: torch.Tensor) -> torch.Tensor:
        """int8 values (int64 tensor, NCHW or NC) -> this op's int8 output, as TFLM computes it."""
        x = q - self.input[1]                          # real zero is integer zero: padding adds nothing
        weight = torch.from_numpy(self.weight)
        if self.kind == "dense":
            acc = (x.to(torch.float64) @ weight.T.to(torch.float64)).to(torch.int64)   # exact below 2**53
        else:
            acc = integer_conv(F.pad(x, self.padding), weight, self.stride, self.groups)
        shape = (1, -1, 1, 1) if acc.dim() == 4 else (1, -1)
        acc = acc + torch.from_numpy(self.bias.astype(np.int64)).view(shape)
        multiplier, shift = self.multipliers()
        out = multiply_by_quantized_multiplier(acc, multiplier.view(shape), shift.view(shape)) + self.output[1]
        low, high = self.activation_limits
        return out.clamp(low, high)


def integer_conv(x: torch.Tensor, weight: torch.Tensor, stride: int, groups: int) -> torch.Tensor:
    """A convolution of integer-valued tensors (NCHW, already padded), exactly, as int64.

    One shifted slice of the input per kernel tap, multiplied channel by channel (depthwise) or
    through a matrix product; no transform (Winograd, FFT) that would round. The products are at most
    255 x 127, so float32 holds every partial sum exactly while a layer sums fewer than 518 of them
    (2**24 / 32385); wider layers sum in float64 (exact below 2**53)."""
    out_channels, per_group, kh, kw = weight.shape
    height = (x.shape[2] - kh) // stride + 1
    width = (x.shape[3] - kw) // stride + 1
    depthwise = groups > 1
    if depthwise and per_group != 1:
        raise ValueError("grouped convolutions other than depthwise are not part of MobileNetV1")
    if depthwise and out_channels != x.shape[1]:
        x = x.repeat_interleave(out_channels // x.shape[1], dim=1)   # depth multiplier
    dtype = torch.float32 if per_group * kh * kw < 518 else torch.float64
    x, weight = x.to(dtype), weight.to(dtype)
    acc = torch.zeros(x.shape[0], out_channels, height, width, dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            tap = x[:, :, i:i + stride * (height - 1) + 1:stride, j:j + stride * (width - 1) + 1:stride]
            if depthwise:
                acc += tap * weight[:, 0, i, j].view(1, -1, 1, 1)
            else:
                acc += torch.einsum("nchw,oc->nohw", tap, weight[:, :, i, j])
    return acc.to(torch.int64)


def _fold(layer: ConvBNAct) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(folded weight, folded bias, per-channel factor gamma / sqrt(var + eps)) with the running statistics."""
    conv, bn = layer.conv, layer.bn
    factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    weight = conv.weight * factor.view(-1, 1, 1, 1)
    bias = bn.bias + (conv_bias - bn.running_mean) * factor
    return weight, bias, factor


def weight_scales(weight: torch.Tensor, per_channel: bool = True) -> torch.Tensor:
    """Symmetric int8 scales (float32): the largest magnitude of each output channel (or of the tensor)
    over 127. An all-zero channel takes the layer's smallest other scale, which keeps its bias precise."""
    flat = weight.detach().reshape(weight.shape[0], -1) if per_channel else weight.detach().reshape(1, -1)
    scales = (flat.abs().amax(dim=1).to(torch.float64) / WEIGHT_MAX).to(torch.float32)
    positive = scales[scales > 0]
    fallback = positive.min() if len(positive) else torch.tensor(1.0)
    return torch.where(scales > 0, scales, fallback)


def _quantize_weight(weight: torch.Tensor, scales: torch.Tensor) -> np.ndarray:
    shape = (-1,) + (1,) * (weight.dim() - 1) if len(scales) > 1 else (1,) * weight.dim()
    q = torch.round(weight.detach().to(torch.float64) / scales.to(torch.float64).view(shape))
    return q.clamp(-WEIGHT_MAX, WEIGHT_MAX).to(torch.int8).numpy()


def _quantize_bias(bias: torch.Tensor, input_scale: float, scales: torch.Tensor) -> np.ndarray:
    step = np.float64(np.float32(input_scale)) * scales.to(torch.float64).numpy()
    q = np.round(bias.detach().to(torch.float64).numpy() / step)
    return np.clip(q, INT32_MIN, INT32_MAX).astype(np.int32)


def _padding(layer: ConvBNAct) -> tuple[int, int, int, int]:
    pad = layer.pad.padding if layer.pad is not None else (0, 0, 0, 0)
    p = layer.conv.padding[0]
    return pad[0] + p, pad[1] + p, pad[2] + p, pad[3] + p


def _fake_quantize(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    # float32 also under mixed precision: the fake-quantization kernels take no bf16
    return torch.fake_quantize_per_tensor_affine(x.float(), scale, zero_point, INT8_MIN, INT8_MAX)


def _fake_quantize_weight(weight: torch.Tensor, per_channel: bool) -> torch.Tensor:
    scales = weight_scales(weight, per_channel).to(weight.device)
    if not per_channel:
        return torch.fake_quantize_per_tensor_affine(weight, float(scales[0]), 0, -WEIGHT_MAX, WEIGHT_MAX)
    zeros = torch.zeros(len(scales), dtype=torch.int32, device=weight.device)
    return torch.fake_quantize_per_channel_affine(weight, scales, zeros, 0, -WEIGHT_MAX, WEIGHT_MAX)


class Int8Simulation(nn.Module):
    """The int8 network of a MobileNetV1 (see the module docstring). Holds the output ranges; the
    weights are the model's, passed to every call, so checkpoints keep one copy of them."""

    def __init__(self, model: MobileNetV1, momentum: float = RANGE_MOMENTUM):
        super().__init__()
        layers = len(model.conv_layers())
        # Row i: the output range (low, high) of convolution i; the last row: the logits'.
        # float64, so that ranges set from a source's (scale, zero point) give them back exactly.
        self.register_buffer("ranges", torch.zeros(layers + 1, 2, dtype=torch.float64))
        self.register_buffer("observed", torch.zeros(layers + 1, dtype=torch.bool))
        self.momentum = momentum
        # Training quantizes every activation to its range; during a QAT delay (from scratch, while
        # the ranges of a random network settle) only the weights are, and the ranges are observed.
        self.quantize_activations = True
        self.input_range = model.input_range
        norm = normalization(model.input_range)
        self.input_quantization = asymmetric_parameters(norm.low, norm.high)
        self.activation = "RELU6" if model.activation == "relu6" else "RELU"

    # -- ranges -----------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether every output has a range (observed in training or set from a source)."""
        return bool(self.observed.all())

    def output_quantization(self, index: int) -> tuple[float, int]:
        low, high = self.ranges[index].tolist()
        return asymmetric_parameters(low, high)

    def set_output_quantization(self, index: int, scale: float, zero_point: int) -> None:
        """Start output `index` from a known int8 quantization (an imported model's)."""
        self.ranges[index, 0] = (INT8_MIN - zero_point) * float(scale)
        self.ranges[index, 1] = (INT8_MAX - zero_point) * float(scale)
        self.observed[index] = True

    @torch.no_grad()
    def _observe(self, index: int, y: torch.Tensor) -> None:
        low, high = y.min().to(torch.float64), y.max().to(torch.float64)
        if not self.observed[index]:
            self.ranges[index, 0], self.ranges[index, 1] = low, high
            self.observed[index] = True
        else:
            self.ranges[index, 0] += self.momentum * (low - self.ranges[index, 0])
            self.ranges[index, 1] += self.momentum * (high - self.ranges[index, 1])

    def _quantize_output(self, index: int, y: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._observe(index, y)
            if not self.quantize_activations:
                return y
        return _fake_quantize(y, *self.output_quantization(index))

    # -- the two forms ------------------------------------------------------------------------------
    def forward(self, model: MobileNetV1, x: torch.Tensor) -> torch.Tensor:
        """Logits: fake-quantized floats in training, the integer network's (dequantized) in eval."""
        return self.fake_quantized(model, x) if self.training else self.integer_logits(model, x)

    def fake_quantized(self, model: MobileNetV1, x: torch.Tensor) -> torch.Tensor:
        x = _fake_quantize(x, *self.input_quantization)
        layers = model.conv_layers()
        for index, layer in enumerate(layers):
            x = self._quantize_output(index, layer.act(self._folded_conv(layer, x)))
        x = F.avg_pool2d(x, kernel_size=x.shape[-2:])
        if self.quantize_activations:
            x = _fake_quantize(x, *self.output_quantization(len(layers) - 1))  # pooling keeps its input's
        x = model.dropout(x)
        head = model.classifier
        weight = _fake_quantize_weight(head.weight, per_channel=model.head == "conv")
        if model.head == "dense":
            logits = F.linear(torch.flatten(x, 1), weight, head.bias)
        else:
            logits = torch.flatten(F.conv2d(x, weight, head.bias), 1)
        return self._quantize_output(len(layers), logits)

    @staticmethod
    def _folded_conv(layer: ConvBNAct, x: torch.Tensor) -> torch.Tensor:
        """conv + BatchNorm with the folded weights fake-quantized. The BatchNorm module's own mode
        decides its statistics: in inference mode this is exactly conv(x, q(w f)) + folded bias; in
        training mode the output is rescaled by 1/f and normalised by the batch (QAT's usual fold)."""
        weight, _, factor = _fold(layer)
        conv = layer.conv
        if layer.pad is not None:
            x = layer.pad(x)
        y = F.conv2d(x, _fake_quantize_weight(weight, per_channel=True), None, conv.stride, conv.padding,
                     conv.dilation, conv.groups)
        safe = torch.where(factor.abs() > 1e-12, factor, torch.ones_like(factor))
        y = y / safe.view(1, -1, 1, 1)
        if conv.bias is not None:
            y = y + conv.bias.view(1, -1, 1, 1)
        return layer.bn(y)

    # -- the integer network -------------------------------------------------------------------------
    @torch.no_grad()
    def integer_layers(self, model: MobileNetV1) -> list[IntegerLayer]:
        """Every weighted op of the int8 network (the 27 convolutions and the classifier) with its
        integer weights, biases and quantization: what the export writes and the simulation runs."""
        if not self.ready:
            raise ValueError("the int8 simulation has no range for some layers yet (no QAT step was taken)")
        out = []
        quantization = self.input_quantization
        for index, layer in enumerate(model.conv_layers()):
            weight, bias, _ = _fold(layer)
            scales = weight_scales(weight)
            conv = layer.conv
            output = self.output_quantization(index)
            out.append(IntegerLayer(
                kind="depthwise" if conv.groups > 1 else "conv", weight=_quantize_weight(weight, scales),
                weight_scales=scales.numpy(), bias=_quantize_bias(bias, quantization[0], scales),
                input=quantization, output=output, activation=self.activation, stride=conv.stride[0],
                padding=_padding(layer), groups=conv.groups))
            quantization = output
        head = model.classifier
        dense = model.head == "dense"
        scales = weight_scales(head.weight, per_channel=not dense)
        out.append(IntegerLayer(
            kind="dense" if dense else "conv", weight=_quantize_weight(head.weight, scales),
            weight_scales=scales.numpy(),
            bias=_quantize_bias(head.bias, quantization[0], scales.expand(head.out_features if dense
                                                                             else head.out_channels)),
            input=quantization, output=self.output_quantization(len(out)), activation="NONE"))
        return out

    def input_int8(self, x: torch.Tensor) -> torch.Tensor:
        """The int8 input the device feeds for float input `x`: back to camera bytes (the float input
        is byte / divisor + offset), then through the model's byte table."""
        norm = normalization(self.input_range)
        pixels = ((x.detach().to(torch.float64) - norm.offset) * norm.divisor).round().clamp(0, 255).to(torch.int64)
        table = torch.from_numpy(byte_to_int8(*self.input_quantization).astype(np.int64))
        return table[pixels]

    @torch.no_grad()
    def integer_outputs(self, model: MobileNetV1, x: torch.Tensor) -> torch.Tensor:
        """The int8 logits (int64 tensor [N, classes]) of the integer network for float input `x`."""
        layers = self.integer_layers(model)
        return torch.cat([self._integer_batch(layers, self.input_int8(part.cpu()))
                          for part in x.split(BATCH)]) if len(x) else torch.zeros(0, layers[-1].bias.size,
                                                                                  dtype=torch.int64)

    @staticmethod
    def _integer_batch(layers: list[IntegerLayer], q: torch.Tensor) -> torch.Tensor:
        for layer in layers[:-1]:
            q = layer.run(q)
        q = average_pool_round(q.sum(dim=(2, 3)), q.shape[2] * q.shape[3])
        head = layers[-1]
        q = head.run(q if head.kind == "dense" else q[:, :, None, None])
        return q.reshape(len(q), -1)

    def integer_logits(self, model: MobileNetV1, x: torch.Tensor) -> torch.Tensor:
        """The integer network's logits, dequantized (float32, on `x`'s device)."""
        scale, zero_point = self.output_quantization(len(model.conv_layers()))
        q = self.integer_outputs(model, x)
        return ((q - zero_point).to(torch.float32) * np.float32(scale)).to(x.device)


def softmax_int8(logits: torch.Tensor) -> torch.Tensor:
    """int8 probabilities (the model's output quantization, 1/256 and -128) of float logits."""
    q = torch.round(torch.softmax(logits.to(torch.float64), dim=1) / SOFTMAX_SCALE) + SOFTMAX_ZERO_POINT
    return q.clamp(INT8_MIN, INT8_MAX).to(torch.int64)
