"""Foreign weights into vwwtorch's MobileNetV1, layer by layer, in PyTorch's layouts.

Both importers (int8 `.tflite`, Keras `.h5`) describe the model as 28 `LayerWeights` in graph order:
the stem, 13 x (depthwise, pointwise), the classifier. A layer without BatchNorm statistics (an
int8 model has them folded into its weights and biases) gets an identity BatchNorm: gamma 1,
beta 0, mean 0 and a variance whose `var + eps` is exactly 1.0 in float32, so that the folding
a re-export does multiplies by exactly 1. Its bias then goes where the variant keeps it: into the
convolution (`conv_bias`) or into BatchNorm's beta (slim).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vwwtorch.plumbing.errors import UserError
from vwwtorch.models.mobilenet_v1 import BN_EPS, MobileNetV1

# float32(1 - eps) + float32(eps) == 1.0 exactly, so 1 / sqrt(var + eps) == 1.0.
IDENTITY_VARIANCE = np.float32(1.0) - np.float32(BN_EPS)


@dataclass
class BatchNormStats:
    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    variance: np.ndarray      # for vwwtorch's epsilon (BN_EPS); importers compensate other epsilons


@dataclass
class LayerWeights:
    name: str                         # for messages: "operator 3 (CONV_2D)", "layer conv2d_1"
    weight: np.ndarray                # PyTorch layout: [out, in/groups, kh, kw], or [out, in] (dense)
    bias: np.ndarray | None
    batch_norm: BatchNormStats | None = None


def _tensor(values: np.ndarray, like: torch.Tensor, what: str) -> torch.Tensor:
    values = np.asarray(values, dtype=np.float32)
    if tuple(values.shape) != tuple(like.shape):
        raise UserError(f"{what} has shape {list(values.shape)} where the model has {list(like.shape)}")
    if not np.isfinite(values).all():
        raise UserError(f"{what} holds values that are not finite numbers")
    return torch.from_numpy(values.copy())


@torch.no_grad()
def load_layers(model: MobileNetV1, layers: list[LayerWeights]) -> None:
    """Copy `layers` (stem, 26 block layers, classifier) into `model`; a UserError if one does not fit."""
    pairs = [(layer.conv, layer.bn) for layer in model.conv_layers()]
    if len(layers) != len(pairs) + 1:
        raise UserError(f"{len(layers)} weighted layers found where a MobileNetV1 has {len(pairs) + 1}")
    for layer, (conv, bn) in zip(layers, pairs):
        conv.weight.copy_(_tensor(layer.weight, conv.weight, layer.name))
        bias = layer.bias if layer.bias is not None else np.zeros(conv.out_channels, np.float32)
        stats = layer.batch_norm or BatchNormStats(
            np.ones(bn.num_features, np.float32), np.zeros(bn.num_features, np.float32),
            np.zeros(bn.num_features, np.float32), np.full(bn.num_features, IDENTITY_VARIANCE))
        if conv.bias is not None:
            conv.bias.copy_(_tensor(bias, conv.bias, f"{layer.name} bias"))
        elif layer.batch_norm is None:
            stats.beta = bias                   # slim: the folded bias is BatchNorm's beta
        else:
            stats.mean = stats.mean - bias      # BN(x + b) with mean m is BN(x) with mean m - b
        bn.weight.copy_(_tensor(stats.gamma, bn.weight, f"{layer.name} BatchNorm gamma"))
        bn.bias.copy_(_tensor(stats.beta, bn.bias, f"{layer.name} BatchNorm beta"))
        bn.running_mean.copy_(_tensor(stats.mean, bn.running_mean, f"{layer.name} BatchNorm mean"))
        bn.running_var.copy_(_tensor(stats.variance, bn.running_var, f"{layer.name} BatchNorm variance"))
    head = layers[-1]
    model.classifier.weight.copy_(_tensor(head.weight, model.classifier.weight, head.name))
    model.classifier.bias.copy_(_tensor(head.bias if head.bias is not None else np.zeros(model.num_classes),
                                        model.classifier.bias, f"{head.name} bias"))
