"""Importing trained models from elsewhere: Keras .h5 files against Keras itself, refusals of what does
not fit, and the pretrained registry (install, cache, --from, offline, `pretrained:NAME`).

The Keras models are built here with tf_keras (Keras 2, the format MLPerf's vww_96.h5 is saved in),
with MLPerf's structure, BatchNorm statistics fitted to a batch, and saved with `model.save(.h5)`.
The importer reads them with h5py only; Keras's own predictions are the reference.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from cli_asserts import assert_one_line_error

from vwwtorch.cli import main
from vwwtorch.models.mobilenet_v1 import named_variant

RESOLUTION = 64


def build_keras_mobilenet(path, *, relu6=False, epsilon=1e-3, channels=3, width=0.25, seed=0):
    """MLPerf's VWW structure in tf_keras (own code): conv-BN-act stem, 13 separable blocks, average
    pool, flatten, dense softmax; BatchNorm statistics set to those of a random batch."""
    import tf_keras as k

    from vwwtorch.models.mobilenet_v1 import SEPARABLE_BLOCKS, scaled_depth

    k.utils.set_random_seed(seed)

    def block(x, layer):
        x = k.layers.BatchNormalization(epsilon=epsilon, momentum=0.0)(layer(x))
        return k.layers.ReLU(6.0)(x) if relu6 else k.layers.Activation("relu")(x)

    inputs = k.Input((RESOLUTION, RESOLUTION, channels))
    x = block(inputs, k.layers.Conv2D(scaled_depth(32, width), 3, 2, "same"))
    for base, stride in SEPARABLE_BLOCKS:
        x = block(x, k.layers.DepthwiseConv2D(3, stride, "same"))
        x = block(x, k.layers.Conv2D(scaled_depth(base, width), 1, 1, "same"))
    x = k.layers.Flatten()(k.layers.AveragePooling2D(RESOLUTION // 32)(x))
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax")(x))
    batch = np.random.default_rng(seed).uniform(0, 1, (16, RESOLUTION, RESOLUTION, channels)).astype(np.float32)
    model(batch, training=True)  # momentum 0: the moving statistics become this batch's
    model.save(path)
    return path


@pytest.fixture(scope="module")
def keras_h5(tmp_path_factory):
    return build_keras_mobilenet(tmp_path_factory.mktemp("keras") / "mlperf_like.h5")


def keras_predictions(path, images):
    import tf_keras as k

    return k.models.load_model(path, compile=False).predict(images, verbose=0)


def torch_predictions(ckpt, images):
    from vwwtorch.training.checkpoint import load_classifier

    module = load_classifier(ckpt)
    with torch.no_grad():
        return torch.softmax(module(torch.from_numpy(images).permute(0, 3, 1, 2)), 1).numpy()


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("relu6, epsilon", [(False, 1e-3), (True, 1e-5)])
def test_keras_h5_imports_to_what_keras_computes(tmp_path, capsys, relu6, epsilon):
    h5 = build_keras_mobilenet(tmp_path / "m.h5", relu6=relu6, epsilon=epsilon)
    code, out, err = run_cli(capsys, "import", h5, "--out", tmp_path / "m.ckpt")
    assert code == 0, err
    assert "activation relu6" in out if relu6 else "activation relu," in out
    images = np.random.default_rng(1).uniform(0, 1, (8, RESOLUTION, RESOLUTION, 3)).astype(np.float32)
    expected = keras_predictions(h5, images)
    assert np.ptp(expected[:, 1]) > 0.01, "the reference model must tell images apart"
    np.testing.assert_allclose(torch_predictions(tmp_path / "m.ckpt", images), expected, atol=2e-5)
    hparams = torch.load(tmp_path / "m.ckpt", weights_only=True)["hyper_parameters"]
    assert hparams["head"] == "dense" and hparams["conv_bias"] is True and hparams["input_range"] == "[0, 1]"
    assert hparams["class_names"] == ["no_person", "person"]


def test_keras_epsilon_is_folded_not_ignored(tmp_path, capsys):
    """Mutation: the same file read as if its epsilon were vwwtorch's differs from Keras."""
    from vwwtorch.training.foreign import keras_h5

    h5 = build_keras_mobilenet(tmp_path / "m.h5", epsilon=0.1)
    images = np.random.default_rng(2).uniform(0, 1, (4, RESOLUTION, RESOLUTION, 3)).astype(np.float32)
    expected = keras_predictions(h5, images)
    assert run_cli(capsys, "import", h5, "--out", tmp_path / "ok.ckpt")[0] == 0
    np.testing.assert_allclose(torch_predictions(tmp_path / "ok.ckpt", images), expected, atol=2e-5)
    original = keras_h5._batch_norm
    keras_h5._batch_norm = lambda layer, w, s: original({**layer, "config": {**layer["config"], "epsilon": 1e-3}}, w, s)
    try:
        assert run_cli(capsys, "import", h5, "--out", tmp_path / "wrong.ckpt")[0] == 0
    finally:
        keras_h5._batch_norm = original
    assert np.abs(torch_predictions(tmp_path / "wrong.ckpt", images) - expected).max() > 1e-3


def _edit_config(src, dst, edit):
    import h5py

    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        edit(config["config"]["layers"])
        f.attrs["model_config"] = json.dumps(config)
    return dst


def test_keras_files_that_do_not_fit_are_refused_in_one_line(keras_h5, tmp_path, capsys):
    import h5py

    def valid_padding(layers):
        layers[4]["config"]["padding"] = "valid"          # the first depthwise layer

    def sigmoid(layers):
        layers[3]["config"]["activation"] = "sigmoid"      # the stem's activation layer

    def dropped_classifier(layers):
        del layers[-1]

    cases = [
        (_edit_config(keras_h5, tmp_path / "pad.h5", valid_padding), ("DepthwiseConv2D", "padding 'same'")),
        (_edit_config(keras_h5, tmp_path / "act.h5", sigmoid), ("activation sigmoid", "ReLU or ReLU6")),
        (_edit_config(keras_h5, tmp_path / "head.h5", dropped_classifier), ("Dense classifier",)),
    ]
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    cases.append((tmp_path / "plain.h5", ("without a Keras model",)))
    (tmp_path / "text.h5").write_text("not hdf5")
    cases.append((tmp_path / "text.h5", ("not an HDF5 file",)))
    for path, needles in cases:
        code, _, err = run_cli(capsys, "import", path, "--out", tmp_path / "x.ckpt")
        assert_one_line_error(code, err, str(path), *needles)
        assert not (tmp_path / "x.ckpt").exists()


def test_import_flag_mistakes(keras_h5, tmp_path, capsys):
    out = tmp_path / "x.ckpt"
    (tmp_path / "folder").mkdir()
    for argv, needles in [
        ((tmp_path / "missing.h5",), ("does not exist",)),
        ((tmp_path / "folder",), ("takes an int8 .tflite or a Keras .h5",)),
        ((keras_h5, "--class-names", "a,b,c"), ("3 names", "2 classes")),
        ((keras_h5, "--class-names", "a,"), ("empty name",)),
    ]:
        code, _, err = run_cli(capsys, "import", *argv, "--out", out)
        assert_one_line_error(code, err, *needles)
        assert not out.exists()
    code, out_text, err = run_cli(capsys, "import", keras_h5, "--class-names", "empty,someone", "--out", out)
    assert code == 0, err
    assert torch.load(out, weights_only=True)["hyper_parameters"]["class_names"] == ["empty", "someone"]


# -- the registry ---------------------------------------------------------------------------------

@pytest.fixture
def registry(keras_h5, monkeypatch, tmp_path):
    """One entry made from the Keras file above, served from a URL nothing listens on."""
    from vwwtorch.plumbing.hashing import sha256_file
    from vwwtorch.training.foreign import pretrained

    monkeypatch.setenv("VWWTORCH_CACHE", str(tmp_path / "cache"))
    entry = pretrained.Pretrained(
        name="test-rgb", title="a MobileNetV1 made by the test", source="tests/test_foreign.py",
        files=(pretrained.PinnedFile("mlperf_like.h5", "http://127.0.0.1:9/mlperf_like.h5", sha256_file(keras_h5)),),
        make=lambda files: __import__("vwwtorch.training.foreign.importer", fromlist=["x"]).from_keras(files[0], "[0, 1]"))
    monkeypatch.setattr(pretrained, "REGISTRY", {entry.name: entry})
    return entry


def test_pretrained_get_installs_from_file_then_works_offline(registry, keras_h5, tmp_path, capsys):
    code, _, err = run_cli(capsys, "pretrained", "get", "test-rgb", "--out", tmp_path / "a.ckpt")
    assert_one_line_error(code, err, "cannot download http://127.0.0.1:9/mlperf_like.h5", "--from")
    assert not (tmp_path / "a.ckpt").exists()
    code, out, err = run_cli(capsys, "pretrained", "get", "test-rgb", "--from", keras_h5, "--out", tmp_path / "a.ckpt")
    assert code == 0, err
    # Cached now: no --from, no network.
    code, out, err = run_cli(capsys, "pretrained", "get", "test-rgb", "--out", tmp_path / "b.ckpt")
    assert code == 0, err
    code, listing, _ = run_cli(capsys, "pretrained", "list")
    assert listing.split()[:2] == ["test-rgb", "cached"]
    images = np.random.default_rng(3).uniform(0, 1, (4, RESOLUTION, RESOLUTION, 3)).astype(np.float32)
    np.testing.assert_allclose(torch_predictions(tmp_path / "b.ckpt", images), keras_predictions(keras_h5, images),
                               atol=2e-5)


def test_pretrained_refuses_wrong_files_and_names(registry, tmp_path, capsys):
    (tmp_path / "other.h5").write_bytes(b"something else")
    for argv, needles in [
        (("get", "test-rgb", "--from", tmp_path / "other.h5"), ("none of test-rgb's files",)),
        (("get", "test-rgb", "--from", tmp_path / "absent.h5"), ("does not exist",)),
        (("get", "no-such-model"), ("no pretrained model 'no-such-model'", "test-rgb")),
    ]:
        code, _, err = run_cli(capsys, "pretrained", *argv, "--out", tmp_path / "x.ckpt")
        assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "x.ckpt").exists()


def test_a_corrupted_cached_file_is_not_trusted(registry, keras_h5, tmp_path, capsys):
    from vwwtorch.training.foreign.pretrained import folder

    assert run_cli(capsys, "pretrained", "get", "test-rgb", "--from", keras_h5, "--out", tmp_path / "a.ckpt")[0] == 0
    (folder("test-rgb") / "mlperf_like.h5").write_bytes(b"damaged")
    code, _, err = run_cli(capsys, "pretrained", "get", "test-rgb", "--out", tmp_path / "b.ckpt")
    assert_one_line_error(code, err, "cannot download")   # re-fetched, not used


def test_init_from_pretrained_name_loads_that_backbone(registry, keras_h5):
    from vwwtorch.plumbing.errors import UserError
    from vwwtorch.training.foreign.pretrained import checkpoint_path, install
    from vwwtorch.training.module import VWWClassifier

    install(registry, [keras_h5])
    source = torch.load(checkpoint_path("test-rgb"), weights_only=True)["state_dict"]
    mlperf = dict(in_channels=3, resolution=RESOLUTION, **named_variant("mlperf"))
    module = VWWClassifier(init_from="pretrained:test-rgb", num_classes=3, class_names=["a", "b", "c"], **mlperf)
    before = module.model.classifier.weight.clone()
    module.setup("fit")
    for name, tensor in module.model.features.state_dict().items():
        torch.testing.assert_close(tensor, source[f"model.features.{name}"])
    assert torch.equal(module.model.classifier.weight, before)   # the head stays fresh (3 classes)
    slim = VWWClassifier(init_from="pretrained:test-rgb", in_channels=3)
    with pytest.raises(UserError, match="activation"):
        slim.setup("fit")


# -- the kept ranges ------------------------------------------------------------------------------

def test_source_ranges_align_operators_and_refuse_other_graphs():
    from vwwtorch.bridge.passes.source_ranges import _align
    from vwwtorch.plumbing.errors import UserError

    body = ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "AVERAGE_POOL_2D"]
    # MLPerf's file flattens before its dense layer; vwwtorch's export lets FULLY_CONNECTED do it.
    assert _align(body + ["FULLY_CONNECTED", "SOFTMAX"], body + ["RESHAPE", "FULLY_CONNECTED", "SOFTMAX"], "s") \
        == [0, 1, 2, 3, 5, 6]
    assert _align(body + ["RESHAPE", "FULLY_CONNECTED", "SOFTMAX"], body + ["FULLY_CONNECTED", "SOFTMAX"], "s") \
        == [0, 1, 2, 3, None, 4, 5]
    with pytest.raises(UserError, match=r"differ from s's at operator 1 \(CONV_2D vs DEPTHWISE_CONV_2D\).*--calibrate"):
        _align(["CONV_2D", "CONV_2D"], ["CONV_2D", "DEPTHWISE_CONV_2D"], "s")


def test_a_damaged_quantization_record_is_refused_by_the_checkpoint_door(keras_h5, tmp_path, capsys):
    assert run_cli(capsys, "import", keras_h5, "--out", tmp_path / "ok.ckpt")[0] == 0
    checkpoint = torch.load(tmp_path / "ok.ckpt", weights_only=True)
    good = {"source": "x.tflite", "input": {"scale": 1 / 255, "zero_point": -128},
            "operators": [{"op": "CONV_2D", "scale": 0.02, "zero_point": -128, "weight_scales": [0.1], "bias": [3]}]}
    bad_records = [{"source": "x"}, {**good, "input": {"scale": -1.0, "zero_point": 0}},
                   {**good, "operators": [{**good["operators"][0], "bias": [2 ** 40]}]}]
    torch.save({**checkpoint, "quantization": good}, tmp_path / "good.ckpt")
    for number, record in enumerate(bad_records):
        torch.save({**checkpoint, "quantization": record}, tmp_path / f"bad{number}.ckpt")
        code, _, err = run_cli(capsys, "predict", "--ckpt", tmp_path / f"bad{number}.ckpt", keras_h5)
        assert_one_line_error(code, err, "damaged quantization record")
    from vwwtorch.training.checkpoint import load_exportable

    assert load_exportable(tmp_path / "good.ckpt").source_quantization == good
