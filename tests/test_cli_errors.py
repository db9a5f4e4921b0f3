"""Bad input: one clear line on stderr, exit code 2, no traceback."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_dataset
from cli_asserts import assert_one_line_error
from vwwtorch.cli import main

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = str(REPO / "configs" / "quickstart.yaml")


def run_cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


@pytest.fixture
def validate(capsys, trained_checkpoint):
    """`vwwtorch validate` of a good checkpoint on the given dataset: its errors are the dataset's."""
    def run(data_dir, *extra):
        ckpt = [] if "--ckpt_path" in extra else ["--ckpt_path", str(trained_checkpoint)]
        # default_root_dir: LightningCLI writes its config.yaml there.
        return run_cli(capsys, "validate", "--config", QUICKSTART, "--data.data_dir", str(data_dir),
                       "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                       "--trainer.default_root_dir", str(Path(data_dir).parent / "run"), *ckpt, *extra)
    return run


def test_dataset_folder_missing(validate, capsys, tmp_path):
    assert_one_line_error(*validate(tmp_path / "nope"), "does not exist")


def test_dataset_folder_empty(validate, capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(*validate(tmp_path / "empty"), "is empty")


def test_meta_json_missing(validate, capsys, tmp_path):
    root = Path(write_dataset(tmp_path / "d"))
    (root / "meta.json").unlink()
    assert_one_line_error(*validate(root), "meta.json is missing")


@pytest.mark.parametrize("content, needle", [("{not json", "not valid JSON"),
                                             ('{"format": "vwwtorch-dataset", "version": 1}', "classes")])
def test_meta_json_malformed(validate, capsys, tmp_path, content, needle):
    root = Path(write_dataset(tmp_path / "d"))
    (root / "meta.json").write_text(content)
    assert_one_line_error(*validate(root), needle)


def test_image_and_label_counts_differ(validate, capsys, tmp_path):
    root = Path(write_dataset(tmp_path / "d", size=128))
    np.save(root / "val" / "labels.npy", np.zeros(15, dtype=np.int64))
    assert_one_line_error(*validate(root), "16 images, 15 labels")


def test_rgb_data_for_grayscale_model_needs_a_flag(validate, capsys, tmp_path):
    root = write_dataset(tmp_path / "d", size=128, channels=3)
    assert_one_line_error(*validate(root), "convert_channels")


def test_unreadable_image_in_a_folder(capsys, tmp_path, trained_checkpoint):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.zeros((96, 96), dtype=np.uint8)).save(folder / "ok.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    code, err = run_cli(capsys, "predict", "--ckpt", str(trained_checkpoint), str(folder))
    assert_one_line_error(code, err, "broken.jpg")


def test_checkpoint_of_a_different_architecture(validate, capsys, trained_checkpoint, synthetic_small):
    code, err = validate(synthetic_small, "--model.width", "0.5", "--ckpt_path", str(trained_checkpoint))
    assert_one_line_error(code, err, "different architecture", "width=0.25")


def test_missing_and_corrupt_checkpoint(capsys, tmp_path):
    code, err = run_cli(capsys, "predict", "--ckpt", str(tmp_path / "none.ckpt"), str(tmp_path))
    assert_one_line_error(code, err, "does not exist")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"garbage" * 100)
    code, err = run_cli(capsys, "predict", "--ckpt", str(bad), str(tmp_path))
    assert_one_line_error(code, err, "cannot be read")


def test_exit_code_and_message_from_the_installed_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vwwtorch", "data", "synthetic", "--out", str(tmp_path),
                           "--train", "0"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "vwwtorch: error: --train and --val must be positive and --test non-negative"


def test_help_lists_the_commands():
    """Exactly the product's commands, each on its own line of the command list."""
    proc = subprocess.run([sys.executable, "-m", "vwwtorch", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    listed = proc.stdout.split("positional arguments:")[1].split("options:")[0]
    names = [line.split()[0] for line in listed.splitlines()
             if line.startswith("    ") and not line.startswith("      ") and line.strip()]
    assert names == ["fit", "validate", "test", "predict", "data", "report", "quickstart", "config", "import",
                     "pretrained", "export", "parity", "firmware"]
    assert "exit codes: 0 done, 1 a verification gate failed, 2 wrong input" in " ".join(proc.stdout.split())
