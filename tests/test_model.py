"""MobileNetV1 structure: shapes, slim's channel rounding, TF SAME padding, MACs."""

import numpy as np
import pytest
import torch

from vwwtorch.models.mobilenet_v1 import VARIANTS, MobileNetV1, named_variant, same_padding, scaled_depth
from vwwtorch.models.stats import model_stats


# The paper's Table 1, written out here rather than read from the model: output depth, stride.
PAPER_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5, (1024, 2), (1024, 1)]


def paper_parameters(width: float, channels: int, classes: int) -> int:
    """Trainable parameters by the paper's layer shapes: 3x3 convs without bias, BatchNorm's gamma and
    beta, a 1x1 classifier with bias; depths max(int(d * width), 8) as slim rounds them."""
    depth = lambda d: max(int(d * width), 8)  # noqa: E731
    prev = depth(32)
    total = 9 * channels * prev + 2 * prev
    for d, _ in PAPER_BLOCKS:
        out = depth(d)
        total += 9 * prev + 2 * prev + prev * out + 2 * out
        prev = out
    return total + prev * classes + classes


def reference_forward(model: MobileNetV1, x: torch.Tensor) -> torch.Tensor:
    """The network computed layer by layer with torch.nn.functional and TensorFlow's SAME padding
    (out = ceil(in / stride), the odd padding pixel after), from the model's weights only."""
    F = torch.nn.functional
    convs = [m for m in model.features.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.features.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for conv, bn in zip(convs, norms):
        k, s = conv.kernel_size[0], conv.stride[0]
        size = x.shape[-1]
        total = max((-(-size // s) - 1) * s + k - size, 0)
        x = F.pad(x, (total // 2, total - total // 2) * 2)
        x = F.conv2d(x, conv.weight, None, s, 0, groups=conv.groups)
        x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        x = x.clamp(0, 6)
    x = x.mean(dim=(2, 3))
    return x @ model.classifier.weight.flatten(1).T + model.classifier.bias


@pytest.mark.parametrize("width", [0.1, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("resolution", [96, 128, 160])
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shapes(width, resolution, channels):
    torch.manual_seed(0)
    model = MobileNetV1(width=width, in_channels=channels, resolution=resolution, num_classes=3).eval()
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5), bn.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(2, channels, resolution, resolution)
    with torch.no_grad():
        out = model(x)
        feats = model.forward_features(x)
        expected = reference_forward(model, x)
    assert out.shape == (2, 3)
    assert feats.shape == (2, scaled_depth(1024, width), 1, 1)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    assert sum(p.numel() for p in model.parameters()) == paper_parameters(width, channels, 3)


def test_parameter_count_matches_the_paper():
    """MobileNetV1 1.0 on ImageNet: 4.2 M parameters in the paper; 4,231,976 trainable exactly
    (Keras's MobileNet reports the same), and 470,072 at width 0.25."""
    assert paper_parameters(1.0, 3, 1000) == 4_231_976
    assert sum(p.numel() for p in MobileNetV1(width=1.0, in_channels=3, num_classes=1000).parameters()) == 4_231_976
    assert sum(p.numel() for p in MobileNetV1(width=0.25, in_channels=3, num_classes=1000).parameters()) == 470_072


def test_named_variants():
    assert named_variant("slim") == VARIANTS
    mlperf = MobileNetV1(in_channels=3, **named_variant("mlperf"))
    assert (mlperf.activation, mlperf.conv_bias, mlperf.head, mlperf.input_range) == ("relu", True, "dense", "[0, 1]")
    with pytest.raises(ValueError, match="slim, mlperf"):
        named_variant("resnet")


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


def test_mlperf_variant_has_the_keras_reference_parameters():
    """MLPerf's variant (ReLU, conv biases, dense head) has exactly the trainable parameters and
    BatchNorm statistics of the same model built in Keras (tf_keras, MLPerf's structure)."""
    pytest.importorskip("tf_keras")
    from test_foreign import build_keras_mobilenet

    import tf_keras as k

    model = MobileNetV1(in_channels=3, resolution=64, **named_variant("mlperf"))
    assert isinstance(model.classifier, torch.nn.Linear)
    assert not any(isinstance(m, torch.nn.ReLU6) for m in model.modules())
    assert all(m.bias is not None for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    ours = sum(p.numel() for p in model.parameters()) + sum(
        m.running_mean.numel() + m.running_var.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        keras = k.models.load_model(build_keras_mobilenet(f"{tmp}/m.h5"), compile=False)
    assert ours == keras.count_params()
    slim = MobileNetV1(in_channels=3, resolution=64)
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("bad", [dict(activation="gelu"), dict(head="mlp"), dict(input_range="[0, 255]")])
def test_invalid_variants_are_rejected(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        MobileNetV1(**bad)


def test_a_checkpoint_with_a_damaged_variant_is_refused(tmp_path):
    from vwwtorch.plumbing.errors import UserError
    from vwwtorch.training.checkpoint_file import read_checkpoint

    base = {"width": 0.25, "in_channels": 1, "resolution": 96, "num_classes": 2}
    for key, value in (("activation", "gelu"), ("conv_bias", "yes"), ("head", 3), ("input_range", "[0, 2]")):
        torch.save({"state_dict": {}, "hyper_parameters": {**base, key: value}}, tmp_path / "c.ckpt")
        with pytest.raises(UserError, match=f"damaged hyper-parameter {key}="):
            read_checkpoint(tmp_path / "c.ckpt")
