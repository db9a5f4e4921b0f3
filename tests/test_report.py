"""`vwwtorch report`: figures equal a direct computation, PNGs are real charts, int8 agrees with parity."""

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from cli_asserts import assert_one_line_error
from test_folder_dataset import CLASSES, write_class_folders
from vwwtorch.cli import main
from vwwtorch.data.datamodule import VWWDataModule
from vwwtorch.data.folder import build_folder_dataset
from vwwtorch.data.format import open_split, read_meta
from vwwtorch.data.transforms import Augmentation, eval_transform
from vwwtorch.evaluation.report.metrics import compute_report, threshold_for_fpr
from vwwtorch.evaluation.report.plots import FIGURE_PIXELS, confusion_matrix_figure, pr_figure, roc_figure
from vwwtorch.evaluation.report.sheet import sheet_size
from vwwtorch.training.checkpoint import load_classifier
from vwwtorch.training.ema import TFWeightEMA
from vwwtorch.training.module import VWWClassifier

POSITIVE = "disc"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-class folder dataset and a checkpoint trained on it briefly: right often, wrong sometimes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    images = write_class_folders(root / "images", per_class=60, seed=3)
    data = build_folder_dataset(images, root / "ds", validation_percentage=40, testing_percentage=0,
                                image_size=36, min_per_class=1, progress=False).out
    pl.seed_everything(0, verbose=False)
    model = VWWClassifier(resolution=32, bn_momentum=0.1, num_classes=3, class_names=list(CLASSES),
                          image_log_every_n_steps=0)
    still = Augmentation(crop_area=(1, 1), crop_aspect=(1, 1), hflip=False, brightness=0, contrast=0)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, use_distributed_sampler=False,
                         num_sanity_val_steps=0, callbacks=[TFWeightEMA(0.99)], default_root_dir=str(root))
    module = VWWDataModule(str(data), batch_size=16, num_workers=0, resolution=32, augmentation=still)
    trainer.fit(model, module)
    ckpt = root / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    val_acc = trainer.validate(model, module, verbose=False)[0]["val/acc"]
    torch.set_num_threads(threads)
    return SimpleNamespace(root=root, data=data, ckpt=ckpt, val_acc=val_acc)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_predictions(folder: Path):
    rows = list(csv.DictReader((folder / "predictions.csv").open()))
    probs = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows])
    labels = np.array([CLASSES.index(r["label"]) for r in rows])
    return rows, probs, labels


@pytest.fixture(scope="module")
def float_report(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("float") / "report"
    assert main(["report", "--ckpt", str(trained.ckpt), "--data", str(trained.data), "--split", "val",
                 "--out", str(out), "--positive-class", POSITIVE, "--fpr", "0", "0.05", "0.2"]) == 0
    return out


# -- direct computations, independent of torchmetrics --------------------------------------------------
def direct_auc(scores, positive):
    """Probability that a random positive outscores a random negative, ties counting half."""
    pos, neg = scores[positive], scores[~positive]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return (greater + 0.5 * ties) / (len(pos) * len(neg))


def direct_average_precision(scores, positive):
    ap, previous_recall = 0.0, 0.0
    for t in np.unique(scores)[::-1]:
        predicted = scores >= t
        recall = (predicted & positive).sum() / positive.sum()
        precision = (predicted & positive).sum() / predicted.sum()
        ap += (recall - previous_recall) * precision
        previous_recall = recall
    return ap


def test_report_figures_match_a_direct_computation(trained, float_report):
    report = json.loads((float_report / "report.json").read_text())
    rows, probs, labels = read_predictions(float_report)

    # The probabilities are the checkpoint's on the eval preprocessing of every val image, in order.
    meta = read_meta(trained.data)
    arrays = open_split(trained.data, "val", meta)
    model = load_classifier(trained.ckpt)
    transform = eval_transform(32, 1)
    with torch.inference_mode():
        x = torch.stack([transform(torch.from_numpy(np.array(im)).permute(2, 0, 1)) for im in arrays.images])
        direct = torch.softmax(model(x), 1).numpy()
    np.testing.assert_allclose(probs, direct, atol=2e-6)
    np.testing.assert_array_equal(labels, arrays.labels)
    assert [r["id"] for r in rows] == arrays.ids.tolist()

    predicted = direct.argmax(1)
    assert report["images"] == len(labels) == meta["splits"]["val"]["count"]
    assert report["accuracy"] == pytest.approx((predicted == labels).mean(), abs=1e-6)
    assert report["accuracy"] == pytest.approx(trained.val_acc, abs=1e-6)  # what `vwwtorch validate` reports
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, (labels, predicted), 1)
    assert report["confusion_matrix"]["counts"] == confusion.tolist()
    for k, name in enumerate(CLASSES):
        tp = confusion[k, k]
        precision = tp / confusion[:, k].sum() if confusion[:, k].sum() else 0.0
        recall = tp / confusion[k].sum()
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        got = report["per_class"][name]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((precision, recall, f1), abs=1e-6)
        assert got["support"] == confusion[k].sum()

    pos = CLASSES.index(POSITIVE)
    scores, positive = direct[:, pos].astype(np.float32), labels == pos
    assert report["positive_class"] == POSITIVE and report["positive_index"] == pos
    assert report["roc"]["auc"] == pytest.approx(direct_auc(scores, positive), abs=1e-4)
    assert report["pr"]["average_precision"] == pytest.approx(direct_average_precision(scores, positive), abs=1e-4)
    for row in report["threshold_table"] + report["fpr_targets"]:
        chosen = scores >= row["threshold"]
        tp, fp = int((chosen & positive).sum()), int((chosen & ~positive).sum())
        assert (row["tp"], row["fp"]) == (tp, fp)
        assert (row["fn"], row["tn"]) == (positive.sum() - tp, (~positive).sum() - fp)
        assert row["tpr"] == pytest.approx(tp / positive.sum()) and row["fpr"] == pytest.approx(fp / (~positive).sum())
    assert [r["threshold"] for r in report["threshold_table"]] == pytest.approx([0.1 * i for i in range(1, 10)])
    # The threshold for each target FPR: the most permissive one that keeps FPR within the target.
    for target in report["fpr_targets"]:
        allowed = [t for t in np.unique(scores) if (scores[~positive] >= t).mean() <= target["target_fpr"]]
        if allowed:
            assert target["threshold"] == pytest.approx(float(min(allowed)))
        assert target["fpr"] <= target["target_fpr"]
    errors = report["most_confident_errors"]
    wrong = np.flatnonzero(predicted != labels)
    assert len(errors) == min(32, len(wrong)) and len(wrong) > 0
    confidences = [e["confidence"] for e in errors]
    assert confidences == sorted(confidences, reverse=True)
    assert confidences[0] == pytest.approx(direct[wrong].max(1).max(), abs=1e-6)
    for e in errors:
        assert e["id"] == arrays.ids[e["index"]] and CLASSES[labels[e["index"]]] == e["true"] != e["predicted"]
    assert (float_report / "confusion_matrix.txt").read_text().splitlines()[2].split()[1:] == \
        [str(c) for c in confusion[0]]


def test_metrics_on_hand_made_scores():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8], [0.2, 0.8], [0.5, 0.5]], np.float32)
    labels = np.array([0, 0, 1, 1, 1, 0])
    report = compute_report(probs, labels, np.arange(6), ["no", "yes"], 1, thresholds=[0.5], fpr_targets=[0, 0.34, 1])
    # Positives 0.35, 0.8, 0.8 against negatives 0.1, 0.4, 0.5: 7 of 9 pairs ordered right.
    assert report["roc"]["auc"] == pytest.approx(7 / 9)
    assert report["accuracy"] == pytest.approx(5 / 6)  # only image 2 is wrong; the 0.5/0.5 tie is class 0
    assert report["threshold_table"][0] == {"threshold": 0.5, "tp": 2, "fp": 1, "tn": 2, "fn": 1, "tpr": 2 / 3,
                                            "fpr": 1 / 3, "precision": 2 / 3}
    zero, third, everything = report["fpr_targets"]
    assert zero["threshold"] == pytest.approx(0.8) and (zero["tp"], zero["fp"]) == (2, 0)
    assert third["threshold"] == pytest.approx(0.5, abs=1e-6) and (third["tp"], third["fp"]) == (2, 1)
    assert everything["threshold"] == pytest.approx(0.1) and everything["tpr"] == 1.0
    assert [(e["index"], e["predicted"], e["confidence"]) for e in report["most_confident_errors"]] == \
        [(2, "no", pytest.approx(0.65))]
    # A negative tied with the top positive score: nothing can be predicted positive at FPR 0.
    assert threshold_for_fpr(np.array([0.9, 0.9], np.float32), np.array([True, False]), 0.0) > 0.9


def test_pngs_are_labelled_charts_of_the_expected_size(trained, float_report):
    report = json.loads((float_report / "report.json").read_text())
    for name in ("confusion_matrix.png", "roc.png", "pr.png"):
        with Image.open(float_report / name) as image:
            assert image.format == "PNG" and image.size == FIGURE_PIXELS, name
            pixels = np.asarray(image.convert("RGB"))
        assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, name  # not blank
    for figure, x, y in ((confusion_matrix_figure(report), "Predicted class", "True class"),
                         (roc_figure(report), "False positive rate", "True positive rate (recall of disc)"),
                         (pr_figure(report), "Recall (true positive rate of disc)", "Precision")):
        ax = figure.axes[0]
        assert (ax.get_xlabel(), ax.get_ylabel()) == (x, y)
        assert ax.get_title()
    with Image.open(float_report / "misclassified.png") as sheet:
        assert sheet.size == sheet_size(len(report["most_confident_errors"]), 36)
        tile = np.asarray(sheet.convert("RGB"))[3:3 + 112, 3:3 + 112]
    first = report["most_confident_errors"][0]
    stored = open_split(trained.data, "val").images[first["index"]][:, :, 0]
    expected = np.asarray(Image.fromarray(stored).resize((112, 112), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(tile[:, :, 0], expected)  # the first tile is the worst error's image


def test_int8_report_agrees_with_the_parity_tool(trained, tmp_path, capsys):
    export = tmp_path / "export"
    code, _, err = run_cli(capsys, "export", "--ckpt", trained.ckpt, "--data", trained.data, "--out", export,
                           "--num-calibration", 60, "--num-parity", 1000, "--min-agreement", 0,
                           "--max-accuracy-drop", 100)
    assert code == 0, err[-2000:]
    tflite = export / "model_int8.tflite"
    code, _, err = run_cli(capsys, "parity", "--ckpt", trained.ckpt, "--tflite", tflite, "--data", trained.data,
                           "--out", tmp_path / "parity", "--min-agreement", 0, "--max-accuracy-drop", 100)
    assert code == 0, err[-2000:]
    parity = json.loads((tmp_path / "parity" / "parity.json").read_text())
    seam = next(s for s in parity["seams"] if s["key"] == "torch_vs_tflite_int8")["metrics"]

    int8_out, float_out = tmp_path / "int8", tmp_path / "float"
    for flag, model, out in (("--tflite", tflite, int8_out), ("--ckpt", trained.ckpt, float_out)):
        code, printed, err = run_cli(capsys, "report", flag, model, "--data", trained.data, "--split", "val",
                                     "--out", out, "--positive-class", POSITIVE)
        assert code == 0, err
    int8, fl = (json.loads((f / "report.json").read_text()) for f in (int8_out, float_out))
    assert int8["model"]["kind"] == "tflite-int8" and "byte - 128" in int8["model"]["preprocessing"]
    assert "TFLM runtime" in int8["model"]["kernels"]
    assert parity["data"]["parity_split"] == "val" and parity["data"]["parity_images"] == int8["images"]
    # Same images, same counts: the int8 report is the device's, so its accuracy is the TFLM gate's
    # (equal up to torchmetrics' float32; one image would be 1/n apart).
    assert int8["accuracy"] == pytest.approx(parity["notes"]["tflm_accuracy"], abs=1e-6)
    assert fl["accuracy"] == pytest.approx(seam["float_accuracy"], abs=1e-6)
    # Image by image: what the tflite_micro runtime itself gives on the firmware's inputs (b - 128).
    from firmware_models import reference_scores
    from vwwtorch.bridge.calibration import load_eval_images

    pixels = load_eval_images(trained.data, "val", int8["images"], 1, 32, progress=False).pixels
    tflm = (reference_scores(tflite.read_bytes(), (pixels.astype(np.int16) - 128).astype(np.int8)).astype(np.float64)
            + 128) / 256
    _, int8_probs, _ = read_predictions(int8_out)
    np.testing.assert_allclose(int8_probs, tflm, atol=1e-6)


def test_bad_input_is_one_clear_line(trained, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["report", "--ckpt", trained.ckpt, "--data", trained.data, "--out", out]
    assert_one_line_error(*run_cli(capsys, *base, "--split", "test")[::2], "no 'test' split")
    assert_one_line_error(*run_cli(capsys, *base, "--positive-class", "cat")[::2], "'cat' is not a class")
    assert_one_line_error(*run_cli(capsys, *base, "--fpr", "1.5")[::2], "--fpr")
    assert_one_line_error(*run_cli(capsys, "report", "--ckpt", tmp_path / "none.ckpt", "--data", trained.data,
                                   "--out", out)[::2], "does not exist")
    assert_one_line_error(*run_cli(capsys, "report", "--tflite", tmp_path / "none.tflite", "--data", trained.data,
                                   "--out", out)[::2], "does not exist")
    assert_one_line_error(*run_cli(capsys, "report", "--ckpt", trained.ckpt, "--data", tmp_path / "nodata",
                                   "--out", out)[::2], "does not exist")
    two = tmp_path / "two"
    for name in ("a", "b"):
        (two / "images" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (36, 36), 40 * i).save(two / "images" / name / f"{i}.png")
    build_folder_dataset(two / "images", two / "ds", validation_percentage=0, testing_percentage=0,
                         image_size=36, min_per_class=1, progress=False)
    assert_one_line_error(*run_cli(capsys, "report", "--ckpt", trained.ckpt, "--data", two / "ds", "--split",
                                   "train", "--out", out)[::2], "has 3 classes but the dataset has 2")
    assert not out.exists() and not (tmp_path / "out.partial").exists()  # nothing half-written
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(*run_cli(capsys, *base)[::2], "already exists")
    assert (out / "keep.txt").read_text() == "mine"
