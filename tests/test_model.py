"""MobileNetV1 structure: shapes, slim's channel rounding, TF SAME padding, MACs."""

import numpy as np
import pytest
import torch

from vwwtorch.models.mobilenet_v1 import MobileNetV1, same_padding, scaled_depth
from vwwtorch.models.stats import model_stats


@pytest.mark.parametrize("width", [0.1, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("resolution", [96, 128, 160])
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shapes(width, resolution, channels):
    model = MobileNetV1(width=width, in_channels=channels, resolution=resolution, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, resolution, resolution))
        feats = model.forward_features(torch.randn(2, channels, resolution, resolution))
    assert out.shape == (2, 3)
    assert feats.shape == (2, scaled_depth(1024, width), 1, 1)
    assert model.feature_size == resolution // 32


def test_slim_depth_rounding_and_min_depth():
    assert scaled_depth(32, 0.25) == 8
    assert scaled_depth(64, 0.1) == 8  # int(6.4) = 6 -> min depth 8
    assert scaled_depth(1024, 0.25) == 256
    assert scaled_depth(1000, 0.35) == 350
    convs = [m for m in MobileNetV1(width=0.25).modules() if isinstance(m, torch.nn.Conv2d)]
    # stem + 13 x (depthwise + pointwise) + classifier = 28 convs, as the reference graph (14 + 14).
    assert len(convs) == 28
    assert [c.out_channels for c in convs if c.groups == 1][:4] == [8, 16, 32, 32]


def test_default_model_macs_and_params():
    stats = model_stats(MobileNetV1(), (1, 96, 96))
    assert 7.0e6 < stats.macs < 7.4e6  # the book quotes ~7.2-7.5 M multiply-accumulates
    assert 200_000 < stats.params < 230_000


def test_same_padding_puts_the_odd_pixel_after():
    assert same_padding(96, 3, 2) == (0, 1)
    assert same_padding(95, 3, 2) == (1, 1)
    assert same_padding(48, 3, 1) == (1, 1)


def test_stride2_layers_match_tensorflow_same_padding():
    """Our stem conv equals tf.nn.conv2d(padding='SAME') with the same weights."""
    tf = pytest.importorskip("tensorflow")
    torch.manual_seed(0)
    model = MobileNetV1(width=0.5, in_channels=1, resolution=96).eval()
    stem = model.features[0]
    conv = next(m for m in stem if isinstance(m, torch.nn.Conv2d))
    x = torch.randn(1, 1, 96, 96)
    pad_then_conv = torch.nn.Sequential(*[m for m in stem if not isinstance(m, (torch.nn.BatchNorm2d, torch.nn.ReLU6))])
    with torch.no_grad():
        ours = pad_then_conv(x).permute(0, 2, 3, 1).numpy()
    kernel = conv.weight.detach().permute(2, 3, 1, 0).numpy()  # OIHW -> HWIO
    theirs = tf.nn.conv2d(x.permute(0, 2, 3, 1).numpy(), kernel, strides=2, padding="SAME").numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("bad", [dict(width=0.05), dict(in_channels=2), dict(resolution=100), dict(num_classes=1)])
def test_invalid_arguments_are_rejected(bad):
    with pytest.raises(ValueError):
        MobileNetV1(**bad)
