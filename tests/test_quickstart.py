"""`vwwtorch quickstart` end to end (shortened): data, training, validation, export, firmware, summary.

The quickstart runs on a task it learns fully (bright disc or not) instead of the built-in scenes,
which take minutes: the model is then confident and its export must pass every gate, on any CPU.
"""

import contextlib
import io
import json
import os
import sys
import tempfile
import warnings

import numpy as np
import pytest
from firmware_models import require_firmware_deps, require_tools
from test_bridge import write_blob_dataset

from vwwtorch.cli import main

EXPORTED = {"model.onnx", "model_float32.tflite", "model_int8.tflite", "labels.txt", "parity.json", "parity.md"}
GENERATED = {"model_data.cc", "model_data.h", "model_settings.cc", "model_settings.h", "model_ops.cc",
             "model_ops.h", "model_kernels.cc", "model.mk", "model_info.json"}


def _firmware_scores(build_dir, tensors):
    from vwwtorch.firmware.toolchain.run import run_tensors

    return np.array([image.scores for image in run_tensors(build_dir, tensors, timeout=300).images])


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """`vwwtorch quickstart` on a dataset it learns fully in a few epochs, placed where the quickstart
    reuses it: the model it trains is confident, so its export must pass every gate on any CPU."""
    out = tmp_path_factory.mktemp("quickstart") / "qs"
    write_blob_dataset(out / "data", train=3000, val=400)
    printed, errors = io.StringIO(), io.StringIO()
    # Everything that would reach a console's stderr: Python's, native code's (file descriptor 2) and
    # warnings (which pytest would otherwise collect for itself).
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors), _native_stderr() as native, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        code = main(["quickstart", "--out", str(out), "--epochs", "6"])
    shown = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
    return out, code, printed.getvalue(), errors.getvalue() + native.read().decode(errors="replace") + shown


@contextlib.contextmanager
def _native_stderr():
    """File descriptor 2 pointed at a temporary file for the block; yields a buffer that holds, after
    the block, what was written there."""
    sys.stderr.flush()
    saved = os.dup(2)
    written = io.BytesIO()
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield written
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            written.write(sink.read())
            written.seek(0)


@pytest.mark.learning
def test_quickstart_trains_exports_verified_and_generates_firmware(quickstart):
    out, code, printed, errors = quickstart
    assert code == 0, errors[-3000:]
    # A run that works prints nothing on stderr: no LiteRT delegate line, no library warnings.
    assert not errors.strip(), errors[-3000:]
    assert "already there, reusing it" in printed
    assert list((out / "runs").rglob("events.out.tfevents.*"))
    best = list((out / "runs").rglob("best-*.ckpt"))
    assert best and list((out / "runs").rglob("last.ckpt"))
    assert "quickstart finished" in printed and str(best[0]) in printed
    val_acc = float(next(line.split()[-1] for line in printed.splitlines() if line.strip().startswith("val/acc")))
    assert val_acc >= 0.99
    # [4/5]: the best checkpoint went through the bridge and passed every gate.
    assert "[4/5] exporting" in printed and "[5/5] firmware" in printed
    assert {p.name for p in (out / "export").iterdir()} == EXPORTED
    report = json.loads((out / "export" / "parity.json").read_text())
    assert report["model"]["checkpoint"] == str(best[0])
    assert report["verified"] is True and "parity verified" in printed
    # [5/5]: the generated sources are those of the exported model, whatever is installed.
    model = (out / "export" / "model_int8.tflite").read_bytes()
    sources = out / "firmware" / "model"
    assert GENERATED <= {p.name for p in sources.iterdir()}
    info = json.loads((sources / "model_info.json").read_text())
    assert info["model_bytes"] == len(model) and (info["rows"], info["channels"]) == (96, 1)


def test_quickstart_firmware_scores_equal_the_tflm_runtime(quickstart):
    """Each board that runs here built and ran the exported model with the TFLM runtime's scores."""
    from vwwtorch.firmware.boards import boards_that_run_here
    from vwwtorch.firmware.quickstart_stage import dataset_pixels

    from vwwtorch.contract.tflm import tflm_scores

    out, code, printed, _ = quickstart
    assert code == 0
    for board in boards_that_run_here():
        require_firmware_deps(board.name)
        require_tools(f"{board.toolchain_prefix}g++", "make", *([board.emulator] if board.emulator else []))
    model = (out / "export" / "model_int8.tflite").read_bytes()
    tensors = (dataset_pixels(out / "data", 8, 96, 1).astype(np.int16) - 128).astype(np.int8)  # TFLM's b - 128
    expected = tflm_scores(model, tensors)
    for board in boards_that_run_here():
        line = next(line for line in printed.splitlines() if line.strip().startswith(f"firmware {board.name}"))
        assert "scores equal the TFLM runtime" in line, line
        assert np.array_equal(_firmware_scores(out / "firmware" / board.name, tensors), expected), board.name


def test_a_second_run_reuses_the_data_and_stops_after_validation(quickstart, capsys):
    out = quickstart[0]
    stamp = (out / "data" / "train" / "images.npy").stat().st_mtime_ns
    assert main(["quickstart", "--out", str(out), "--epochs", "1", "--no-export"]) == 0
    printed = capsys.readouterr().out
    assert "reusing it" in printed and "[3/3] validating" in printed and "[4/" not in printed
    assert (out / "data" / "train" / "images.npy").stat().st_mtime_ns == stamp


def test_without_firmware_dependencies_the_quickstart_says_what_to_run(tmp_path, monkeypatch):
    """The firmware stage of a verified model, on a machine without the firmware dependencies: the
    sources are generated and every board says which command installs what it lacks."""
    from firmware_models import write_models
    from vwwtorch.firmware.boards import boards_that_run_here
    from vwwtorch.firmware.quickstart_stage import firmware_stage

    monkeypatch.setenv("VWWTORCH_CACHE", str(tmp_path / "empty-cache"))
    tiny = write_models(tmp_path / "models", only=("tiny_int8",))["tiny_int8"]
    pixels = np.zeros((2, 32, 32, 1), np.uint8)
    outcome = firmware_stage(tiny, tmp_path / "fw", pixels)
    assert [b.board for b in outcome.boards] == [b.name for b in boards_that_run_here()]
    for board in outcome.boards:
        assert board.scores_match is None and "`vwwtorch firmware deps" in board.note, board.note
    assert GENERATED <= {p.name for p in outcome.model_dir.iterdir()}
