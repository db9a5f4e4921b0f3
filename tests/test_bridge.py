"""The bridge: checkpoint -> ONNX -> TFLite float32 / int8 -> parity gate, on a model trained for real.

The int8 agreement gate presumes a confident model: a barely trained one has near-tie probabilities,
and a half-trained one has many borderline images that int8 rounding flips, so agreement would
measure luck (and the CPU's kernels, which change the training path). The module therefore trains
the default architecture (MobileNetV1 0.25, 96x96x1) on a task it can learn fully (bright disc or
not, on noisy backgrounds with distractors) until it is confident: validation accuracy of at least
99.5% after an epoch (usually 4-5 epochs), within a bound of 12.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_asserts import assert_one_line_error
from conftest import write_dataset
from vwwtorch.bridge.gates import static_checks
from vwwtorch.bridge.gates.op_set import MOBILENET_OPS

from vwwtorch.cli import main
from vwwtorch.contract.tflite import read_tflite as inspect_tflite

pytestmark = pytest.mark.learning  # the module's tests stand on a model trained here

REFERENCE_INT8_BYTES = 300_568   # TFLM person_detect.tflite
REFERENCE_ARENA_BYTES = 85_264   # what TFLM reports for it
NUM_CALIBRATION = 100


def write_blob_dataset(root, train: int = 1200, val: int = 400, size: int = 128):
    """Label 1: a bright disc somewhere; both classes: illumination gradient, noise, dark bars."""
    from vwwtorch.data.format import DatasetWriter

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    writer = DatasetWriter(root, classes=["no_person", "person"], image_size=(size, size), channels=1,
                           provenance={"source": "tests/test_bridge.py blobs"})
    for split, count in (("train", train), ("val", val)):
        images = np.empty((count, size, size, 1), dtype=np.uint8)
        labels = np.arange(count) % 2
        for i in range(count):
            img = rng.uniform(70, 150) + rng.uniform(-30, 30) * (xx / size - 0.5) + rng.normal(0, 12, (size, size))
            for _ in range(rng.integers(0, 3)):
                x0, y0 = rng.integers(0, size - 30, 2)
                img[y0:y0 + rng.integers(5, 30), x0:x0 + rng.integers(5, 30)] -= rng.uniform(40, 70)
            if labels[i]:
                cx, cy = rng.uniform(30, size - 30, 2)
                radius = rng.uniform(12, 28)
                img[(xx - cx) ** 2 + (yy - cy) ** 2 < radius ** 2] += rng.uniform(60, 100)
            images[i, :, :, 0] = np.clip(img, 0, 255)
        writer.write_split(split, images, labels, np.arange(count))
    return writer.finish()


CONFIDENT_ACCURACY = 0.995
MAX_EPOCHS = 12


def train_until_confident(path, data_dir, **model_args):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping

    from vwwtorch.data.datamodule import VWWDataModule
    from vwwtorch.data.transforms import Augmentation
    from vwwtorch.training.ema import TFWeightEMA
    from vwwtorch.training.module import VWWClassifier

    pl.seed_everything(0)
    model = VWWClassifier(class_names=["no_person", "person"], bn_momentum=0.1, image_log_every_n_steps=0,
                          **model_args)
    data = VWWDataModule(str(data_dir), batch_size=32, num_workers=0, resolution=model.hparams.resolution,
                         channels=model.hparams.in_channels, augmentation=Augmentation(crop_area=(0.35, 1.0)))
    confident = EarlyStopping(monitor="val/acc", mode="max", stopping_threshold=CONFIDENT_ACCURACY,
                              patience=MAX_EPOCHS)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=MAX_EPOCHS, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         num_sanity_val_steps=0, callbacks=[TFWeightEMA(), confident],
                         default_root_dir=str(path.parent))
    trainer.fit(model, data)
    accuracy = float(trainer.callback_metrics["val/acc"])
    assert accuracy >= CONFIDENT_ACCURACY, f"the fixture model reached only {accuracy:.3f} in {MAX_EPOCHS} epochs"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return write_blob_dataset(tmp_path_factory.mktemp("blobs") / "data")


@pytest.fixture(scope="module")
def trained(blobs, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core machine one thread trains several times faster
    try:
        return train_until_confident(tmp_path_factory.mktemp("bridge") / "trained.ckpt", blobs)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def exported(trained, blobs, tmp_path_factory):
    from vwwtorch.bridge.export_run import ExportOptions, export

    out = tmp_path_factory.mktemp("export") / "model"
    outcome = export(ExportOptions(ckpt=trained, data=blobs, out=out, num_calibration=NUM_CALIBRATION,
                                   num_parity=1000, progress=False))
    return outcome


def read_report(folder):
    return json.loads((folder / "parity.json").read_text())


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- the trained model through every gate ---------------------------------------------------------

def test_trained_model_passes_every_gate(exported):
    out, report = exported.folder, exported.report
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.onnx", "model_float32.tflite", "model_int8.tflite", "labels.txt", "parity.json", "parity.md"])
    on_disk = read_report(out)
    assert on_disk["verified"] is True and on_disk["passed"] is True and "failures" not in on_disk
    assert on_disk["data"]["parity_images"] == 400 and on_disk["data"]["parity_split"] == "val"
    assert on_disk["data"]["calibration_images"] == NUM_CALIBRATION
    assert on_disk["data"]["calibration_split"] == "train"
    seams = {s["key"]: s for s in report["seams"]}
    assert set(seams) == {"torch_vs_onnxruntime", "torch_vs_tflite_float32", "torch_vs_tflite_int8",
                          "tflm_vs_tflite_ref"}
    assert all(s["passed"] for s in seams.values())
    assert seams["torch_vs_onnxruntime"]["metrics"]["max_abs_diff"] <= 1e-4
    assert seams["torch_vs_tflite_float32"]["metrics"]["max_abs_diff"] <= 1e-4
    int8 = seams["torch_vs_tflite_int8"]["metrics"]
    assert int8["top1_agreement"] >= 0.99 and int8["accuracy_drop_points"] <= 1.0
    assert int8["float_accuracy"] > 0.9, "the fixture model should have learned the task"
    assert seams["tflm_vs_tflite_ref"]["metrics"] == {"images": 400, "mismatched_images": 0, "max_lsb_diff": 0,
                                                      "allowed_lsb_diff": 0}
    assert (out / "labels.txt").read_text() == "no_person\nperson\n"
    assert "VERIFIED" in (out / "parity.md").read_text()


def test_int8_model_matches_the_reference_deployment(exported):
    """Acceptance 1: the default architecture fits where TFLM's person_detect.tflite fits."""
    data = (exported.folder / "model_int8.tflite").read_bytes()
    info = inspect_tflite(data)
    # The reference's histogram: the first layer (one input channel) is a depthwise conv.
    assert info.op_histogram == {"AVERAGE_POOL_2D": 1, "CONV_2D": 14, "DEPTHWISE_CONV_2D": 14,
                                 "RESHAPE": 1, "SOFTMAX": 1}
    assert info.ops[0] == "DEPTHWISE_CONV_2D" and _first_op_options(data).depthMultiplier == 8
    assert set(info.op_histogram) == set(MOBILENET_OPS) and info.ops[-1] == "SOFTMAX"
    assert info.input.shape == (1, 96, 96, 1) and info.input.dtype == "INT8"
    assert abs(info.input.scale - 1 / 127.5) < 1e-9 and info.input.zero_point == -1
    assert info.output.scale == 1 / 256 and info.output.zero_point == -128
    assert all(len(t.scales) > 1 for _, t in info.weights), "weights must be quantized per channel"
    footprint = exported.report["footprint"]
    assert footprint["int8_bytes"] == len(data) <= REFERENCE_INT8_BYTES
    assert 0 < footprint["tflm_arena_bytes"] <= REFERENCE_ARENA_BYTES


def _first_op_options(data: bytes):
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema.ModelT.InitFromPackedBuf(bytearray(data), 0).subgraphs[0].operators[0].builtinOptions


def test_reexport_through_the_cli_is_byte_identical(exported, trained, blobs, tmp_path, capsys):
    out = tmp_path / "again"
    code, printed, _ = run_cli(capsys, "export", "--ckpt", trained, "--data", blobs, "--out", out,
                               "--num-calibration", NUM_CALIBRATION)
    assert code == 0
    assert "torch vs TFLite int8" in printed and "VERIFIED" in printed
    for name in ("model.onnx", "model_float32.tflite", "model_int8.tflite"):
        assert (out / name).read_bytes() == (exported.folder / name).read_bytes(), name
    assert not list(tmp_path.glob(".again*")), "no temporary folder may be left behind"


def test_parity_command_rechecks_an_int8_model(exported, trained, blobs, tmp_path, capsys):
    code, printed, _ = run_cli(capsys, "parity", "--ckpt", trained, "--tflite",
                               exported.folder / "model_int8.tflite", "--data", blobs,
                               "--out", tmp_path)
    assert code == 0, printed
    report = read_report(tmp_path)
    assert report["verified"] is True
    assert {s["key"] for s in report["seams"]} == {"torch_vs_tflite_int8", "tflm_vs_tflite_ref"}


def test_only_one_channel_convs_become_depthwise():
    """The first-layer rewrite: same outputs, a depthwise op where the conv input has one channel."""
    import tensorflow as tf
    from vwwtorch.bridge.passes.one_channel_depthwise import (
        one_channel_convs_as_depthwise,
    )

    rng = np.random.default_rng(0)
    first = tf.constant(rng.normal(size=(3, 3, 1, 8)).astype(np.float32))
    second = tf.constant(rng.normal(size=(1, 1, 8, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 17, 17, 1], tf.float32)])
    def net(x):
        return tf.nn.conv2d(tf.nn.relu6(tf.nn.conv2d(x, first, 2, "SAME")), second, 1, "VALID")

    function, rewritten = one_channel_convs_as_depthwise(net.get_concrete_function())
    ops = [node.op for node in function.graph.as_graph_def().node]
    assert len(rewritten) == 1 and ops.count("DepthwiseConv2dNative") == 1 and ops.count("Conv2D") == 1
    x = rng.uniform(-1, 1, (1, 17, 17, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(function(tf.constant(x))[0]), net(x).numpy(), rtol=1e-5, atol=1e-5)

    rgb = tf.constant(rng.normal(size=(3, 3, 3, 8)).astype(np.float32))
    rgb_net = tf.function(lambda x: tf.nn.conv2d(x, rgb, 2, "SAME"),
                          input_signature=[tf.TensorSpec([1, 17, 17, 3], tf.float32)]).get_concrete_function()
    assert one_channel_convs_as_depthwise(rgb_net) == (rgb_net, [])


# -- broken conversions are caught ----------------------------------------------------------------

def _negate_classifier_weights(data: bytes) -> bytes:
    """The int8 model with its last conv's weights negated in place: the classes swap."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    convs = [graph.Operators(i) for i in range(graph.OperatorsLength())
             if model.OperatorCodes(graph.Operators(i).OpcodeIndex()).BuiltinCode() == schema.BuiltinOperator.CONV_2D]
    weights = graph.Tensors(convs[-1].Inputs(1))
    view = model.Buffers(weights.Buffer()).DataAsNumpy()
    start = view.ctypes.data - np.frombuffer(data, dtype=np.uint8).ctypes.data
    patched = bytearray(data)
    original = np.frombuffer(data, dtype=np.int8, count=view.size, offset=start)
    patched[start:start + view.size] = np.clip(-original.astype(np.int16), -127, 127).astype(np.int8).tobytes()
    return bytes(patched)


def test_perturbed_int8_model_fails_parity(exported, trained, blobs, tmp_path, capsys):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(_negate_classifier_weights((exported.folder / "model_int8.tflite").read_bytes()))
    report_dir = tmp_path / "report"
    code, printed, err = run_cli(capsys, "parity", "--ckpt", trained, "--tflite", broken, "--data", blobs,
                                 "--num-parity", 100, "--out", report_dir)
    assert code == 1
    assert_one_line_error(code, err, "parity gate failed", "torch vs TFLite int8", "worst images:", exit_code=1)
    report = read_report(report_dir)
    assert "verified" not in report and report["passed"] is False
    int8 = next(s for s in report["seams"] if s["key"] == "torch_vs_tflite_int8")
    assert not int8["passed"] and int8["metrics"]["top1_agreement"] < 0.5
    assert int8["worst"] and int8["worst"][0]["torch_top1"] != int8["worst"][0]["int8_top1"]
    # The corruption is in the weights, not in the runtimes: TFLM still matches the reference kernels.
    tflm = next(s for s in report["seams"] if s["key"] == "tflm_vs_tflite_ref")
    assert tflm["passed"]


def test_wrong_calibration_preprocessing_is_caught(exported, trained, blobs, tmp_path, capsys):
    """Calibrating on ImageNet-normalised pixels (onnx2tf's default) instead of x/127.5-1 must fail the gate."""
    from vwwtorch.bridge.calibration import load_eval_images
    from vwwtorch.bridge.convert import onnx_to_keras, to_int8_tflite

    calib = load_eval_images(blobs, "train", 50, 1, 96, progress=False).images
    imagenet = ((calib + 1) / 2 - 0.449) / 0.226
    keras_model = onnx_to_keras(exported.folder / "model.onnx")
    data = to_int8_tflite(keras_model, imagenet.astype(np.float32))
    checks = {c.name: c for c in static_checks(inspect_tflite(data))}
    assert not checks["input quantization"].passed
    assert checks["output quantization"].passed and checks["op set"].passed

    model = tmp_path / "imagenet_calibrated.tflite"
    model.write_bytes(data)
    code, _, err = run_cli(capsys, "parity", "--ckpt", trained, "--tflite", model, "--data", blobs,
                           "--num-parity", 50)
    assert code == 1 and "input quantization" in err and "1/127.5" in err


# -- other architectures --------------------------------------------------------------------------

def _recalibrated_checkpoint(path, data_dir, **arch):
    """An untrained model whose BatchNorm statistics are fitted to the data, so logits vary by image."""
    from vwwtorch.data.format import open_split
    from vwwtorch.data.transforms import eval_transform
    from vwwtorch.training.module import VWWClassifier

    torch.manual_seed(0)
    module = VWWClassifier(class_names=["a", "b"], **arch)
    hp = module.hparams
    split = open_split(data_dir, "train")
    transform = eval_transform(hp.resolution, hp.in_channels)
    batch = torch.stack([transform(torch.from_numpy(np.array(img)).permute(2, 0, 1)) for img in split.images])
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the batches below
    module.train()
    with torch.no_grad():
        for _ in range(2):
            module(batch)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(hp)}, path)
    return path


def test_width_resolution_and_rgb_variant_exports(tmp_path, capsys):
    data = write_dataset(tmp_path / "rgb", n=32, size=144, channels=3)
    ckpt = _recalibrated_checkpoint(tmp_path / "wide.ckpt", data, width=0.5, in_channels=3, resolution=128)
    out = tmp_path / "out"
    # The model is untrained (near-tie probabilities), so the agreement gate is opened; every other
    # gate (float seams, quantization, op set, TFLM bit-exactness) applies as usual.
    code, printed, err = run_cli(capsys, "export", "--ckpt", ckpt, "--data", data, "--out", out,
                                 "--num-calibration", 32, "--num-parity", 16,
                                 "--min-agreement", 0, "--max-accuracy-drop", 100)
    assert code == 0, err
    report = read_report(out)
    assert report["verified"] is True
    assert report["model"]["width"] == 0.5 and report["model"]["in_channels"] == 3
    info = inspect_tflite((out / "model_int8.tflite").read_bytes())
    assert info.input.shape == (1, 128, 128, 3)
    assert set(info.op_histogram) == set(MOBILENET_OPS)
    # Three input channels: the first layer stays a CONV_2D (only one-channel convs become depthwise).
    assert info.ops[0] == "CONV_2D" and info.op_histogram["DEPTHWISE_CONV_2D"] == 13
    # Width 0.5 has about 4x the weights of 0.25.
    assert info.size > 2 * REFERENCE_INT8_BYTES


# -- predict with the int8 model ------------------------------------------------------------------

def test_predict_tflite_uses_firmware_input_and_agrees_with_torch(exported, trained, blobs, tmp_path,
                                                                  capsys):
    from PIL import Image
    from vwwtorch.bridge.calibration import load_eval_images

    from vwwtorch.training.checkpoint import load_classifier

    images = load_eval_images(blobs, "val", 400, 1, 96, progress=False)
    with torch.inference_mode():
        probs = torch.softmax(load_classifier(trained)(torch.from_numpy(images.images).permute(0, 3, 1, 2)), 1)
    confident = np.flatnonzero(probs.max(1).values.numpy() > 0.8)[:6]
    pixels = images.pixels[confident]
    for i, index in enumerate(confident):
        Image.fromarray(pixels[i, :, :, 0]).save(tmp_path / f"{i}.png")  # model size: fed as is
    code, printed, _ = run_cli(capsys, "predict", "--tflite", exported.folder / "model_int8.tflite", tmp_path)
    assert code == 0
    lines = [line.split() for line in printed.strip().splitlines()]
    # TFLM's camera convention written out here, independently of vwwtorch's byte table: b - 128.
    tensors = (pixels.astype(np.int16) - 128).astype(np.int8)
    # predict shows the device's scores: the tflite_micro runtime's, dequantized (scale 1/256, zero point -128)
    from firmware_models import reference_scores

    raw = reference_scores((exported.folder / "model_int8.tflite").read_bytes(), tensors)
    expected = (raw.astype(np.float64) + 128) / 256
    for i, (path, label, score) in enumerate(lines):
        assert path.endswith(f"{i}.png")
        assert label == ["no_person", "person"][int(probs[confident[i]].argmax())]
        assert float(score) == pytest.approx(float(expected[i].max()), abs=1e-4)


# -- bad input: one line, exit 2, nothing written --------------------------------------------------

@pytest.fixture
def export_args(trained, blobs, tmp_path):
    return ["export", "--ckpt", trained, "--data", blobs, "--out", tmp_path / "out"]


def _replace(args, flag, value):
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


def _nothing_written(tmp_path):
    return not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_missing_and_corrupt_checkpoint(export_args, tmp_path, capsys):
    code, _, err = run_cli(capsys, *_replace(export_args, "--ckpt", tmp_path / "none.ckpt"))
    assert_one_line_error(code, err, "does not exist")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"\x80\x02 not a checkpoint" * 50)
    code, _, err = run_cli(capsys, *_replace(export_args, "--ckpt", corrupt))
    assert_one_line_error(code, err, "cannot be read")
    assert _nothing_written(tmp_path)


def test_checkpoint_of_another_architecture(export_args, tmp_path, capsys):
    foreign = tmp_path / "resnet.ckpt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 4)}, "hyper_parameters": {"layers": 18}}, foreign)
    code, _, err = run_cli(capsys, *_replace(export_args, "--ckpt", foreign))
    assert_one_line_error(code, err, "not a vwwtorch classifier checkpoint")
    mismatched = tmp_path / "mismatched.ckpt"
    state = torch.load(export_args[2], map_location="cpu", weights_only=True)
    state["hyper_parameters"]["width"] = 0.5
    torch.save(state, mismatched)
    code, _, err = run_cli(capsys, *_replace(export_args, "--ckpt", mismatched))
    assert_one_line_error(code, err, "does not fit")
    assert _nothing_written(tmp_path)


def test_missing_dataset_and_wrong_channel_count(export_args, tmp_path, capsys):
    code, _, err = run_cli(capsys, *_replace(export_args, "--data", tmp_path / "nowhere"))
    assert_one_line_error(code, err, "does not exist")
    rgb = write_dataset(tmp_path / "rgb", n=4, size=128, channels=3)
    code, _, err = run_cli(capsys, *_replace(export_args, "--data", rgb))
    assert_one_line_error(code, err, "3-channel", "1-channel")
    small = write_dataset(tmp_path / "small", n=4, size=64, channels=1)
    code, _, err = run_cli(capsys, *_replace(export_args, "--data", small))
    assert_one_line_error(code, err, "64x64", "smaller")
    assert _nothing_written(tmp_path)


def test_zero_calibration_images_and_unwritable_output(export_args, tmp_path, capsys):
    code, _, err = run_cli(capsys, *export_args, "--num-calibration", 0)
    assert_one_line_error(code, err, "--num-calibration")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(capsys, *_replace(export_args, "--out", blocker / "out"))
    assert_one_line_error(code, err, "cannot write --out")
    assert _nothing_written(tmp_path)


def test_existing_output_needs_overwrite(export_args, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    code, _, err = run_cli(capsys, *export_args)
    assert_one_line_error(code, err, "--overwrite")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_parity_refuses_a_float_model(exported, trained, blobs, capsys):
    code, _, err = run_cli(capsys, "parity", "--ckpt", trained, "--tflite",
                           exported.folder / "model_float32.tflite", "--data", blobs)
    assert_one_line_error(code, err, "not a full-integer int8 model")


def test_failed_conversion_leaves_no_partial_output(trained, blobs, tmp_path, monkeypatch, capsys):
    from vwwtorch.bridge import convert

    def broken(*args, **kwargs):
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(convert, "to_int8_tflite", broken)
    with pytest.raises(RuntimeError, match="converter exploded"):
        main(["export", "--ckpt", str(trained), "--data", str(blobs), "--out", str(tmp_path / "out"),
              "--num-calibration", "8", "--num-parity", "8"])
    assert _nothing_written(tmp_path)


# -- foreign int8 models: import, re-export, parity without a checkpoint ----------------------------

def _int8_outputs(path, pixels):
    from vwwtorch.contract.litert import TFLiteModel

    return TFLiteModel(path, reference_kernels=True).raw_outputs(pixels).astype(np.int32)


def test_import_of_an_export_round_trips(exported, blobs, tmp_path, capsys):
    """An int8 export imported (`vwwtorch import`) and re-exported with the kept ranges gives the same
    int8 outputs; calibrating instead (the mutation) gives other ranges."""
    from vwwtorch.bridge.calibration import load_eval_images
    from vwwtorch.contract.litert import TFLiteModel

    source = exported.folder / "model_int8.tflite"
    ckpt = tmp_path / "imported.ckpt"
    code, out, err = run_cli(capsys, "import", source, "--out", ckpt)
    assert code == 0, err
    assert "activation relu6, head conv, inputs [-1, 1]; int8 ranges kept" in out
    data = load_eval_images(blobs, "val", 400, 1, 96, progress=False)
    # The dequantized float model agrees with the int8 model it came from.
    float_top = torch_top1(ckpt, data.images)
    int8_probs = TFLiteModel(source).probabilities(data.pixels)
    assert (float_top == int8_probs.argmax(1)).mean() >= 0.99
    code, _, err = run_cli(capsys, "export", "--ckpt", ckpt, "--data", blobs, "--out", tmp_path / "again",
                           "--num-calibration", 32, "--num-parity", 400, "--source-tflite", source)
    assert code == 0, err
    report = read_report(tmp_path / "again")
    assert report["verified"] is True and report["data"]["int8_ranges"].startswith("kept from model_int8.tflite")
    kept = next(s for s in report["seams"] if s["key"] == "kept_quantization")
    assert kept["passed"] and kept["metrics"]["images"] == 400 and kept["metrics"]["max_lsb_diff"] <= 1
    again = _int8_outputs(tmp_path / "again" / "model_int8.tflite", data.pixels)
    assert np.abs(again - _int8_outputs(source, data.pixels)).max() <= 1
    code, _, err = run_cli(capsys, "export", "--ckpt", ckpt, "--data", blobs, "--out", tmp_path / "calibrated",
                           "--num-calibration", 32, "--num-parity", 400, "--calibrate")
    assert code == 0, err
    ranges = lambda path: [(o.outputs[0].scale, o.outputs[0].zero_point)  # noqa: E731
                           for o in inspect_tflite(path.read_bytes()).operators]
    assert ranges(tmp_path / "calibrated" / "model_int8.tflite") != ranges(source)
    assert ranges(tmp_path / "again" / "model_int8.tflite") == ranges(source)


def test_an_export_that_claims_a_source_but_does_not_keep_it_fails(exported, blobs, tmp_path, capsys, monkeypatch):
    """The kept-quantization gate is the proof: the same re-export with the source's ranges not applied
    (the converter's calibration kept instead: the mutation) is refused, and a file other than the
    source is refused before any work."""
    source = exported.folder / "model_int8.tflite"
    ckpt = tmp_path / "imported.ckpt"
    assert run_cli(capsys, "import", source, "--out", ckpt)[0] == 0
    other = tmp_path / "other.tflite"
    other.write_bytes(_negate_classifier_weights(source.read_bytes()))
    code, _, err = run_cli(capsys, "export", "--ckpt", ckpt, "--data", blobs, "--out", tmp_path / "wrong",
                           "--source-tflite", other)
    assert_one_line_error(code, err, "is not the file the checkpoint was imported with")
    monkeypatch.setattr("vwwtorch.bridge.passes.source_ranges.apply", lambda model, record: None)
    code, _, err = run_cli(capsys, "export", "--ckpt", ckpt, "--data", blobs, "--out", tmp_path / "unkept",
                           "--num-calibration", 32, "--num-parity", 400, "--source-tflite", source)
    assert_one_line_error(code, err, "source model_int8.tflite vs TFLite int8", exit_code=1)


def torch_top1(ckpt, images):
    from vwwtorch.training.checkpoint import load_classifier

    module = load_classifier(ckpt)
    with torch.no_grad():
        return module(torch.from_numpy(images).permute(0, 3, 1, 2)).argmax(1).numpy()


def test_parity_without_a_checkpoint(exported, blobs, tmp_path, capsys):
    model = exported.folder / "model_int8.tflite"
    code, printed, err = run_cli(capsys, "parity", "--tflite", model, "--data", blobs, "--num-parity", 200,
                                 "--out", tmp_path / "alone")
    assert code == 0, err
    report = read_report(tmp_path / "alone")
    assert report["verified"] is True and report["model"]["checkpoint"] is None
    seams = {s["key"]: s for s in report["seams"]}
    assert set(seams) == {"tflite_int8_accuracy", "tflm_vs_tflite_ref"}
    accuracy = seams["tflite_int8_accuracy"]["metrics"]["int8_accuracy"]
    with_ckpt = exported.report["seams"][2]["metrics"]["int8_accuracy"]
    assert accuracy > 0.9 and abs(accuracy - with_ckpt) < 0.05
    assert {c["name"] for c in report["checks"]} >= {"input quantization", "op set", "per-channel int8 weights"}
    # --min-accuracy gates it: just above what the model reaches fails.
    code, _, err = run_cli(capsys, "parity", "--tflite", model, "--data", blobs, "--num-parity", 200,
                           "--min-accuracy", min(accuracy + 0.001, 1.0))
    if accuracy < 1.0:
        assert_one_line_error(code, err, "TFLite int8 accuracy", exit_code=1)


def _with_bias_dimension(data: bytes, dimension: int) -> bytes:
    """The model with every per-channel bias quantized along `dimension`, as TFLM's person_detect is."""
    from vwwtorch.contract.tflite import pack, unpack

    model = unpack(data)
    for tensor in model.subgraphs[0].tensors:
        q = tensor.quantization
        if q is not None and q.scale is not None and len(q.scale) > 1 and len(tensor.shape) == 1:
            q.quantizedDimension = dimension
    return pack(model, len(data))


def test_a_model_litert_refuses_is_repaired_and_the_repair_reported(exported, blobs, tmp_path, capsys):
    model = tmp_path / "qd3.tflite"
    model.write_bytes(_with_bias_dimension((exported.folder / "model_int8.tflite").read_bytes(), 3))
    # What LiteRT does with the file as it is (the mutation the repair undoes).
    from ai_edge_litert.interpreter import Interpreter

    with pytest.raises(Exception):
        Interpreter(model_content=model.read_bytes()).allocate_tensors()
    code, _, err = run_cli(capsys, "parity", "--tflite", model, "--data", blobs, "--num-parity", 100,
                           "--out", tmp_path / "report")
    assert code == 0, err
    report = read_report(tmp_path / "report")
    repairs = report["notes"]["litert_repairs"]
    assert len(repairs) == 28 and all("along dimension 3 set to dimension 0" in r for r in repairs)
    assert "Repaired for LiteRT on load" in (tmp_path / "report" / "parity.md").read_text()
    from PIL import Image

    Image.fromarray(np.full((96, 96), 200, np.uint8)).save(tmp_path / "frame.png")
    code, out, err = run_cli(capsys, "predict", "--tflite", model, tmp_path / "frame.png")
    assert code == 0, err
    assert "frame.png" in out


def _with_activation(data: bytes, index: int, activation: int) -> bytes:
    from vwwtorch.contract.tflite import pack, unpack

    model = unpack(data)
    model.subgraphs[0].operators[index].builtinOptions.fusedActivationFunction = activation
    return pack(model, len(data))


def test_import_refuses_what_is_not_a_mobilenet_in_one_line(exported, tmp_path, capsys):
    source = (exported.folder / "model_int8.tflite").read_bytes()
    cases = {
        "tanh.tflite": (_with_activation(source, 2, 4), ("operator 2 (CONV_2D)", "ReLU or ReLU6")),
        "float.tflite": ((exported.folder / "model_float32.tflite").read_bytes(), ("not a full-integer int8",)),
        "text.tflite": (b"not a model", ("not a TFLite model",)),
    }
    for name, (data, needles) in cases.items():
        (tmp_path / name).write_bytes(data)
        code, _, err = run_cli(capsys, "import", tmp_path / name, "--out", tmp_path / "x.ckpt")
        assert_one_line_error(code, err, *needles)
        assert not (tmp_path / "x.ckpt").exists()


def test_mlperf_variant_exports_to_its_op_set_and_imports_back(tmp_path, capsys):
    """ReLU, convolutions with a bias, a dense head, inputs in [0, 1]: FULLY_CONNECTED (per tensor) and
    the [0, 1] input quantization; the import recognizes the variant from the int8 file alone."""
    data = write_dataset(tmp_path / "rgb", n=32, size=96, channels=3)
    mlperf = dict(in_channels=3, activation="relu", conv_bias=True, head="dense", input_range="[0, 1]")
    ckpt = _recalibrated_checkpoint(tmp_path / "mlperf.ckpt", data, **mlperf)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "export", "--ckpt", ckpt, "--data", data, "--out", out, "--num-calibration", 32,
                           "--num-parity", 16, "--min-agreement", 0, "--max-accuracy-drop", 100)
    assert code == 0, err
    info = inspect_tflite((out / "model_int8.tflite").read_bytes())
    assert info.ops[-3:] == ["AVERAGE_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"]
    dense = [t for op, t in info.weights if op == "FULLY_CONNECTED"]
    assert len(dense) == 1 and len(dense[0].scales) == 1
    assert abs(info.input.scale - 1 / 255) < 1e-9 and info.input.zero_point == -128
    tflm = next(s for s in read_report(out)["seams"] if s["key"] == "tflm_vs_tflite_ref")
    assert tflm["passed"] and tflm["metrics"]["allowed_lsb_diff"] == 1
    code, printed, err = run_cli(capsys, "import", out / "model_int8.tflite", "--out", tmp_path / "back.ckpt")
    assert code == 0, err
    hparams = torch.load(tmp_path / "back.ckpt", weights_only=True)["hyper_parameters"]
    assert {k: hparams[k] for k in mlperf} == mlperf
