"""MobileNetV1 as tf.slim defines it (`mobilenet_v1.py` in tensorflow/models research/slim).

What makes it slim's and not torchvision-style:
- channel counts are `max(int(depth * width), 8)` (slim's `depth()` with min_depth 8);
- BatchNorm epsilon 1e-3 and ReLU6 after every conv;
- stride-2 convs use TensorFlow SAME padding: for even inputs the extra pixel goes right/bottom,
  so the exported TFLite graph needs no PAD op (PyTorch's symmetric padding would force one);
- the global pool is an average pool with the feature map as kernel (AVERAGE_POOL_2D in TFLite,
  not MEAN), then dropout and a 1x1 conv classifier (CONV_2D, not FULLY_CONNECTED).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (output depth before the width multiplier, stride) for the 13 depthwise-separable blocks.
SEPARABLE_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)
# What must match for weights to load into a model: the architecture, as data.
ARCH_KEYS = ("width", "in_channels", "resolution", "num_classes")
STEM_DEPTH = 32
MIN_DEPTH = 8
BN_EPS = 1e-3


def scaled_depth(depth: int, width: float) -> int:
    """slim's `depth(d) = max(int(d * depth_multiplier), min_depth)`."""
    return max(int(depth * width), MIN_DEPTH)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) along one axis: the odd pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvBNReLU6(nn.Sequential):
    """conv -> BatchNorm -> ReLU6, with TF SAME padding folded into the conv where it is symmetric."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, input_size: int,
                 groups: int = 1, bn_momentum: float = 0.003):
        pad = same_padding(input_size, kernel, stride)
        layers: list[nn.Module] = []
        if pad[0] == pad[1]:
            conv_pad = pad[0]
        else:
            # Asymmetric (right/bottom) padding; an explicit F.pad-style layer that exporters fold
            # into the conv's own padding attribute (ONNX Conv pads are per side).
            layers.append(nn.ZeroPad2d((pad[0], pad[1], pad[0], pad[1])))
            conv_pad = 0
        layers += [
            nn.Conv2d(in_ch, out_ch, kernel, stride, conv_pad, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=bn_momentum),
            nn.ReLU6(inplace=True),
        ]
        super().__init__(*layers)


class MobileNetV1(nn.Module):
    """slim MobileNetV1 classifier.

    Args:
        width: depth multiplier (slim's `depth_multiplier`), 0.1 ... 1.0; 0.25 is the book's model.
        in_channels: 1 (grayscale, the book's choice for the HM01B0 camera) or 3.
        resolution: input height = width, a multiple of 32.
        num_classes: output classes (2 for person / no person).
        dropout: drop probability before the classifier (slim keeps 0.999 -> 0.001).
        bn_momentum: PyTorch BatchNorm momentum = 1 - slim's decay (0.9997 -> 0.0003 is slim's
            training default; larger values settle faster on short runs).
    """

    def __init__(self, width: float = 0.25, in_channels: int = 1, resolution: int = 96,
                 num_classes: int = 2, dropout: float = 0.001, bn_momentum: float = 0.0003):
        super().__init__()
        if not 0.1 <= width <= 1.0:
            raise ValueError(f"width must be in [0.1, 1.0], got {width}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if resolution < 32 or resolution % 32:
            raise ValueError(f"resolution must be a positive multiple of 32, got {resolution}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.width, self.in_channels = width, in_channels
        self.resolution, self.num_classes = resolution, num_classes

        size = resolution
        depth = scaled_depth(STEM_DEPTH, width)
        layers: list[nn.Module] = [ConvBNReLU6(in_channels, depth, 3, 2, size, bn_momentum=bn_momentum)]
        size = math.ceil(size / 2)
        for base_depth, stride in SEPARABLE_BLOCKS:
            out = scaled_depth(base_depth, width)
            layers.append(nn.Sequential(
                ConvBNReLU6(depth, depth, 3, stride, size, groups=depth, bn_momentum=bn_momentum),
                ConvBNReLU6(depth, out, 1, 1, math.ceil(size / stride), bn_momentum=bn_momentum),
            ))
            depth, size = out, math.ceil(size / stride)
        self.features = nn.Sequential(*layers)
        self.feature_size = size
        self.num_features = depth
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(depth, num_classes, 1, bias=True)
        self._init_weights()

    def _init_weights(self) -> None:
        # slim: truncated normal stddev 0.09 for convs; classifier biases start at zero.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.09, a=-0.18, b=0.18)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features [N, C, 1, 1] (the "bottleneck" for transfer learning)."""
        x = self.features(x)
        # Fixed-kernel average pool exports as AVERAGE_POOL_2D (what TFLM's example uses).
        return F.avg_pool2d(x, kernel_size=x.shape[-2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = self.classifier(self.dropout(x))
        return torch.flatten(x, 1)  # logits [N, num_classes]

    def arch(self) -> dict:
        """What must match for a checkpoint to load into this model (ARCH_KEYS)."""
        return {key: getattr(self, key) for key in ARCH_KEYS}
