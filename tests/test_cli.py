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


def test_validate_prints_a_results_table(capsys, trained_checkpoint, synthetic_small, tmp_path):
    code = main(["validate", "--config", str(REPO / "configs" / "quickstart.yaml"),
                 "--data.data_dir", synthetic_small, "--ckpt_path", str(trained_checkpoint),
                 "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                 "--trainer.default_root_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "val/acc" in out and "val/recall_person" in out


def test_predict_prints_and_writes_csv(capsys, trained_checkpoint, tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 160), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(folder / "sub" / "b.jpg")
    (folder / "notes.txt").write_text("not an image")
    out_csv = tmp_path / "pred.csv"
    assert main(["predict", "--ckpt", str(trained_checkpoint), str(folder), "--output", str(out_csv)]) == 0
    printed = capsys.readouterr().out
    assert "a.png" in printed and "b.jpg" in printed
    rows = list(csv.DictReader(out_csv.open()))
    assert [Path(r["path"]).name for r in rows] == ["a.png", "b.jpg"]
    for row in rows:
        assert row["label"] in ("no_person", "person")
        assert float(row["p_no_person"]) + float(row["p_person"]) == pytest.approx(1.0, abs=1e-5)
