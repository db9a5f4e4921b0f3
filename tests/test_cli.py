"""The documented commands: configs print the book recipe, validate prints metrics, predict labels images."""

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vwwtorch.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_book_config_prints_the_book_values(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(REPO / "configs" / "vww_96_grayscale.yaml"), "--print_config"])
    assert exit_info.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    model, data = config["model"], config["data"]
    assert (model["width"], model["in_channels"], model["resolution"]) == (0.25, 1, 96)
    assert (model["learning_rate"], model["lr_decay_factor"], model["epochs_per_decay"]) == (0.045, 0.98, 2.5)
    assert (model["rmsprop_decay"], model["momentum"], model["epsilon"]) == (0.9, 0.9, 1.0)
    assert (model["label_smoothing"], model["weight_decay"]) == (0.1, 4e-05)
    assert config["ema"]["decay"] == 0.9999
    assert data["batch_size"] == 96
    assert data["augmentation"]["crop_area"] == [0.05, 1.0]
    assert config["checkpoint"]["monitor"] == "val/acc" and config["checkpoint"]["save_last"] is True


def test_wake_vision_config_is_the_book_recipe_rescaled_to_train_quality(capsys):
    """The same recipe as the book's config, with the step budget and decay period in train_quality
    epochs: 1M steps of 96 and a decay every 2.5 COCO train2014 epochs (82,783 images)."""
    def printed(name):
        with pytest.raises(SystemExit):
            main(["fit", "--config", str(REPO / "configs" / name), "--print_config"])
        return yaml.safe_load(capsys.readouterr().out)

    book, wake = printed("vww_96_grayscale.yaml"), printed("wake_vision_96_grayscale.yaml")
    train_quality = 1_248_230
    assert wake["data"]["data_dir"] == "data/wake_vision"
    assert wake["trainer"]["max_epochs"] == pytest.approx(1_000_000 * 96 / train_quality, rel=0.05)
    assert wake["model"]["epochs_per_decay"] == pytest.approx(2.5 * 82_783 / train_quality, rel=0.05)
    for key in ("width", "in_channels", "resolution", "learning_rate", "lr_decay_factor", "rmsprop_decay",
                "label_smoothing", "weight_decay"):
        assert wake["model"][key] == book["model"][key], key
    assert wake["data"]["augmentation"] == book["data"]["augmentation"] and wake["ema"] == book["ema"]


def test_validate_prints_a_results_table(capsys, trained_checkpoint, synthetic_small, tmp_path):
    """The table's loss, accuracy, per-class recall and precision are those of the checkpoint's own
    predictions on the validation split, computed here from its logits."""
    import re

    import torch

    from vwwtorch.contract.deployment import normalization
    from vwwtorch.data.format import eval_pixels, open_split
    from vwwtorch.training.checkpoint import load_classifier

    code = main(["validate", "--config", str(REPO / "configs" / "quickstart.yaml"),
                 "--data.data_dir", synthetic_small, "--ckpt_path", str(trained_checkpoint),
                 "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                 "--trainer.default_root_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    printed = {name: float(value) for name, value in re.findall(r"(val/\w+)\W+?([-+.\de]+)", out)}

    model = load_classifier(trained_checkpoint)
    hp = model.hparams
    arrays = open_split(synthetic_small, "val")
    pixels = torch.from_numpy(eval_pixels(arrays, range(len(arrays)), hp.resolution, hp.in_channels))
    labels = np.array(arrays.labels)
    with torch.no_grad():
        logits = model(normalization(hp.input_range).real(pixels.permute(0, 3, 1, 2)))
    predicted = logits.argmax(1).numpy()
    expected = {"val/acc": np.mean(predicted == labels),
                "val/loss": torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels).long()).item()}
    for i, name in enumerate(model.class_names):
        expected[f"val/recall_{name}"] = np.mean(predicted[labels == i] == i)
        expected[f"val/precision_{name}"] = np.mean(labels[predicted == i] == i) if np.any(predicted == i) else 0.0
    for name, value in expected.items():
        assert printed[name] == pytest.approx(value, abs=1e-4), (name, out)
    assert set(printed) == set(expected), out


def test_predict_prints_and_writes_csv(capsys, trained_checkpoint, tmp_path):
    """The CSV holds the model's own softmax: a 120x160 file through the training's eval
    preprocessing (central crop, resize), a 96x96 RGB file (the model's size) as it is, in gray."""
    import torch

    from vwwtorch.data.transforms import eval_transform
    from vwwtorch.training.checkpoint import load_classifier

    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (120, 160), dtype=np.uint8)
    b = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(a).save(folder / "a.png")
    Image.fromarray(b).save(folder / "sub" / "b.png")
    (folder / "notes.txt").write_text("not an image")
    out_csv = tmp_path / "pred.csv"
    assert main(["predict", "--ckpt", str(trained_checkpoint), str(folder), "--output", str(out_csv)]) == 0
    printed = capsys.readouterr().out
    assert "a.png" in printed and "b.png" in printed
    rows = list(csv.DictReader(out_csv.open()))
    assert [Path(r["path"]).name for r in rows] == ["a.png", "b.png"]

    model = load_classifier(trained_checkpoint)
    gray_b = np.asarray(Image.fromarray(b).convert("L"))
    with torch.inference_mode():
        x_a = eval_transform(96, 1)(torch.from_numpy(a)[None])
        x_b = torch.from_numpy(gray_b)[None].to(torch.float32) / 127.5 - 1.0
        expected = torch.softmax(model(torch.stack([x_a, x_b])), dim=1).numpy()
    for row, probs in zip(rows, expected):
        got = [float(row["p_no_person"]), float(row["p_person"])]
        np.testing.assert_allclose(got, probs, atol=2e-6)
        assert row["label"] == ["no_person", "person"][int(probs.argmax())]


def test_predict_feeds_a_checkpoint_and_its_int8_model_the_same_pixels(tmp_path, capsys, monkeypatch):
    """One deployment rule: whatever the file (at the model's size or not), `predict --ckpt` and
    `predict --tflite` hand their models the same pixels (normalized for one, through the byte table
    for the other)."""
    import torch

    from firmware_models import write_models
    from vwwtorch.contract.litert import TFLiteModel
    from vwwtorch.training.module import VWWClassifier

    tflite = write_models(tmp_path / "models", only=("tiny_int8",))["tiny_int8"]   # 32x32x1 int8
    ckpt = tmp_path / "m32.ckpt"
    module = VWWClassifier(resolution=32, class_names=["0", "1"])
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(frames / "at_size.png")
    Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(frames / "photo.png")

    seen = {}
    forward = VWWClassifier.forward
    monkeypatch.setattr(VWWClassifier, "forward", lambda self, x: (seen.setdefault("float", x.clone()),
                                                                   forward(self, x))[1])
    model_inputs = TFLiteModel.model_inputs
    monkeypatch.setattr(TFLiteModel, "model_inputs", lambda self, images: (seen.setdefault("int8", images.copy()),
                                                                           model_inputs(self, images))[1])
    assert main(["predict", "--ckpt", str(ckpt), str(frames)]) == 0
    assert main(["predict", "--tflite", str(tflite), str(frames)]) == 0
    capsys.readouterr()
    float_bytes = np.rint((seen["float"].permute(0, 2, 3, 1).numpy() + 1.0) * 127.5).astype(np.uint8)
    assert seen["int8"].dtype == np.uint8 and seen["int8"].shape == float_bytes.shape == (2, 32, 32, 1)
    np.testing.assert_array_equal(seen["int8"], float_bytes)
    # The file at the model's size went in untouched; the photo was cropped and resized.
    np.testing.assert_array_equal(seen["int8"][0, ..., 0], np.asarray(Image.open(frames / "at_size.png")))
