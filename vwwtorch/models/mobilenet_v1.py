"""MobileNetV1 as tf.slim defines it (`mobilenet_v1.py` in tensorflow/models research/slim), with the
options that other trained VWW models need: one model class, its variants as data.

What makes it slim's and not torchvision-style:
- channel counts are `max(int(depth * width), 8)` (slim's `depth()` with min_depth 8);
- BatchNorm epsilon 1e-3 and ReLU6 after every conv;
- stride-2 convs use TensorFlow SAME padding: for even inputs the extra pixel goes right/bottom,
  so the exported TFLite graph needs no PAD op (PyTorch's symmetric padding would force one);
- the global pool is an average pool with the feature map as kernel (AVERAGE_POOL_2D in TFLite,
  not MEAN), then dropout and a 1x1 conv classifier (CONV_2D, not FULLY_CONNECTED).

The variants (`VARIANTS`; slim's is the default; `named_variant` by name): MLPerf Tiny's VWW reference (Keras) uses ReLU,
convolutions with a bias before each BatchNorm, a dense head (FULLY_CONNECTED) and inputs in [0, 1]
(x / 255) instead of [-1, 1]. The input range is the model's contract with its data: training,
evaluation and deployment normalize bytes by it (`vwwtorch.contract.deployment`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vwwtorch.contract.deployment import NORMALIZATIONS

# (output depth before the width multiplier, stride) for the 13 depthwise-separable blocks.
SEPARABLE_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)
# What must match for weights to load into a model: the architecture, as data.
ARCH_KEYS = ("width", "in_channels", "resolution", "num_classes")
# The variant options and their defaults (slim's MobileNetV1); checkpoints without them are slim's.
VARIANTS = {"activation": "relu6", "conv_bias": False, "head": "conv", "input_range": "[-1, 1]"}
ACTIVATIONS = {"relu6": nn.ReLU6, "relu": nn.ReLU}
HEADS = ("conv", "dense")
INPUT_RANGES = tuple(NORMALIZATIONS)  # the deployment contract names them
# The published models' variants by name, so code that means "MLPerf's" says so once.
NAMED_VARIANTS = {
    "slim": dict(VARIANTS),
    "mlperf": {"activation": "relu", "conv_bias": True, "head": "dense", "input_range": "[0, 1]"},
}
STEM_DEPTH = 32
MIN_DEPTH = 8
BN_EPS = 1e-3


def named_variant(name: str) -> dict:
    """The variant options of a published model ("slim", "mlperf"): MobileNetV1(**named_variant(...))."""
    if name not in NAMED_VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose one of: {', '.join(NAMED_VARIANTS)}")
    return dict(NAMED_VARIANTS[name])


def scaled_depth(depth: int, width: float) -> int:
    """slim's `depth(d) = max(int(d * depth_multiplier), min_depth)`."""
    return max(int(depth * width), MIN_DEPTH)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) along one axis: the odd pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvBNAct(nn.Sequential):
    """conv -> BatchNorm -> ReLU6 (or ReLU), with TF SAME padding folded into the conv where it is
    symmetric."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, input_size: int,
                 groups: int = 1, bn_momentum: float = 0.003, activation: str = "relu6", bias: bool = False):
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
            nn.Conv2d(in_ch, out_ch, kernel, stride, conv_pad, groups=groups, bias=bias),
            nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=bn_momentum),
            ACTIVATIONS[activation](inplace=True),
        ]
        super().__init__(*layers)

    # The parts by role, for code that computes the layer another way (the int8 simulation).
    @property
    def pad(self) -> nn.ZeroPad2d | None:
        return self[0] if isinstance(self[0], nn.ZeroPad2d) else None

    @property
    def conv(self) -> nn.Conv2d:
        return self[-3]

    @property
    def bn(self) -> nn.BatchNorm2d:
        return self[-2]

    @property
    def act(self) -> nn.Module:
        return self[-1]


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
        activation: "relu6" (slim) or "relu" (MLPerf).
        conv_bias: convolutions with a bias before their BatchNorm (MLPerf's Keras layers).
        head: "conv", a 1x1 convolution (slim; CONV_2D), or "dense", a linear layer on the pooled
            features (MLPerf; FULLY_CONNECTED).
        input_range: the real range camera bytes map to: "[-1, 1]" (x / 127.5 - 1, slim) or
            "[0, 1]" (x / 255, MLPerf).
    """

    def __init__(self, width: float = 0.25, in_channels: int = 1, resolution: int = 96,
                 num_classes: int = 2, dropout: float = 0.001, bn_momentum: float = 0.0003,
                 activation: str = VARIANTS["activation"], conv_bias: bool = VARIANTS["conv_bias"],
                 head: str = VARIANTS["head"], input_range: str = VARIANTS["input_range"]):
        super().__init__()
        if not 0.1 <= width <= 1.0:
            raise ValueError(f"width must be in [0.1, 1.0], got {width}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if resolution < 32 or resolution % 32:
            raise ValueError(f"resolution must be a positive multiple of 32, got {resolution}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        if input_range not in INPUT_RANGES:
            raise ValueError(f"input_range must be one of {', '.join(INPUT_RANGES)}, got {input_range!r}")
        self.width, self.in_channels = width, in_channels
        self.resolution, self.num_classes = resolution, num_classes
        self.activation, self.conv_bias, self.head, self.input_range = activation, bool(conv_bias), head, input_range
        block = dict(bn_momentum=bn_momentum, activation=activation, bias=self.conv_bias)

        size = resolution
        depth = scaled_depth(STEM_DEPTH, width)
        layers: list[nn.Module] = [ConvBNAct(in_channels, depth, 3, 2, size, **block)]
        size = math.ceil(size / 2)
        for base_depth, stride in SEPARABLE_BLOCKS:
            out = scaled_depth(base_depth, width)
            layers.append(nn.Sequential(
                ConvBNAct(depth, depth, 3, stride, size, groups=depth, **block),
                ConvBNAct(depth, out, 1, 1, math.ceil(size / stride), **block),
            ))
            depth, size = out, math.ceil(size / stride)
        self.features = nn.Sequential(*layers)
        self.num_features = depth
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(depth, num_classes, 1, bias=True) if head == "conv" else \
            nn.Linear(depth, num_classes, bias=True)
        self._init_weights()

    def _init_weights(self) -> None:
        # slim: truncated normal stddev 0.09 for convs; classifier biases start at zero.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.09, a=-0.18, b=0.18)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features [N, C, 1, 1] (the "bottleneck" for transfer learning)."""
        x = self.features(x)
        # Fixed-kernel average pool exports as AVERAGE_POOL_2D (what TFLM's example uses).
        return F.avg_pool2d(x, kernel_size=x.shape[-2:])

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits [N, num_classes] from pooled features [N, C, 1, 1]."""
        features = self.dropout(features)
        if self.head == "dense":
            return self.classifier(torch.flatten(features, 1))
        return torch.flatten(self.classifier(features), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.forward_features(x))

    def conv_layers(self) -> list[ConvBNAct]:
        """Every convolution of the backbone with its BatchNorm and activation, in graph order: the
        stem, then each separable block's depthwise and pointwise layers."""
        return [m for m in self.features.modules() if isinstance(m, ConvBNAct)]

    def arch(self) -> dict:
        """What must match for a checkpoint to load into this model: ARCH_KEYS and the variant."""
        return {key: getattr(self, key) for key in (*ARCH_KEYS, *VARIANTS)}
