"""`vwwtorch quickstart` end to end (shortened): data, training, validation, export, firmware, summary."""

import json
import shutil

import numpy as np

from vwwtorch.cli import main

EXPORTED = {"model.onnx", "model_float32.tflite", "model_int8.tflite", "labels.txt", "parity.json", "parity.md"}
GENERATED = {"model_data.cc", "model_data.h", "model_settings.cc", "model_settings.h", "model_ops.cc",
             "model_ops.h", "model.mk", "model_info.json"}


def _can_build(board: str) -> bool:
    """Whether the firmware stage can build and run `board` here (dependencies cached, tools installed)."""
    from vwwtorch.contract.errors import UserError
    from vwwtorch.firmware.boards import get_board
    from vwwtorch.firmware.deps import require

    spec = get_board(board)
    tools = [f"{spec.toolchain_prefix}g++", "make"] + ([spec.emulator] if spec.emulator else [])
    try:
        require(board)
    except UserError:
        return False
    return all(shutil.which(tool) for tool in tools)


def _firmware_scores(build_dir, tensors):
    from vwwtorch.firmware.run import run_tensors

    return np.array([image.scores for image in run_tensors(build_dir, tensors, timeout=300).images])


def _runtime_scores(model: bytes, tensors):
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model)
    rows = []
    for tensor in tensors:
        interpreter.set_input(tensor[None], 0)
        interpreter.invoke()
        rows.append(np.asarray(interpreter.get_output(0)).reshape(-1))
    return np.stack(rows)


def test_quickstart_writes_data_checkpoints_logs_export_and_firmware(tmp_path, capsys):
    out = tmp_path / "qs"
    code = main(["quickstart", "--out", str(out), "--epochs", "1", "--train-images", "480"])
    captured = capsys.readouterr()
    printed = captured.out
    assert (out / "data" / "meta.json").is_file()
    assert list((out / "runs").rglob("events.out.tfevents.*"))
    best = list((out / "runs").rglob("best-*.ckpt"))
    assert best and list((out / "runs").rglob("last.ckpt"))
    assert "quickstart finished" in printed and str(best[0]) in printed and "val/acc" in printed

    # [4/5]: the best checkpoint went through the bridge. One epoch on 480 images is far from a
    # trained model, so the gate may refuse it; exit code, summary and parity.json must then agree.
    assert "[4/5] exporting" in printed and "[5/5] firmware" in printed
    assert {p.name for p in (out / "export").iterdir()} == EXPORTED
    report = json.loads((out / "export" / "parity.json").read_text())
    assert report["model"]["checkpoint"] == str(best[0])
    if not report["passed"]:
        assert code == 1 and "verified" not in report and "NOT verified" in printed
        assert "parity gate failed" in captured.err.strip().splitlines()[-1]
        # Only a verified model becomes firmware.
        assert "skipped: the int8 model did not pass the parity gate" in printed
        assert not (out / "firmware").exists()
    else:
        assert code == 0, captured.err
        assert report["verified"] is True and "parity verified" in printed
        # [5/5]: the generated sources are those of the exported model, whatever is installed.
        model = (out / "export" / "model_int8.tflite").read_bytes()
        sources = out / "firmware" / "model"
        assert GENERATED <= {p.name for p in sources.iterdir()}
        info = json.loads((sources / "model_info.json").read_text())
        assert info["model_bytes"] == len(model) and (info["rows"], info["channels"]) == (96, 1)
        # Each board either ran, with the TFLM runtime's scores, or says which command to run.
        from vwwtorch.firmware.pipeline import dataset_pixels

        tensors = (dataset_pixels(out / "data", 8, 96, 1).astype(np.int16) - 128).astype(np.int8)
        expected = _runtime_scores(model, tensors)
        for board in ("host", "qemu_m4"):
            line = next(line for line in printed.splitlines() if line.strip().startswith(f"firmware {board}"))
            if _can_build(board):
                assert "scores equal the TFLM runtime" in line, line
                assert np.array_equal(_firmware_scores(out / "firmware" / board, tensors), expected)
            else:
                assert "skipped" in line and ("vwwtorch firmware deps" in line or "install" in line), line

    # A second run reuses the dataset instead of regenerating it; --no-export stops after validation.
    stamp = (out / "data" / "train" / "images.npy").stat().st_mtime_ns
    assert main(["quickstart", "--out", str(out), "--epochs", "1", "--train-images", "480", "--no-export"]) == 0
    printed = capsys.readouterr().out
    assert "reusing it" in printed and "[3/3] validating" in printed and "[4/" not in printed
    assert (out / "data" / "train" / "images.npy").stat().st_mtime_ns == stamp
