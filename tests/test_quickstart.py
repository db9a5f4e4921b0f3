"""`vwwtorch quickstart` end to end (shortened): data, training, validation, export, artifacts, summary."""

import json

from vwwtorch.cli import main

EXPORTED = {"model.onnx", "model_float32.tflite", "model_int8.tflite", "labels.txt", "parity.json", "parity.md"}


def test_quickstart_writes_data_checkpoints_logs_and_export(tmp_path, capsys):
    out = tmp_path / "qs"
    code = main(["quickstart", "--out", str(out), "--epochs", "1", "--train-images", "480"])
    captured = capsys.readouterr()
    printed = captured.out
    assert (out / "data" / "meta.json").is_file()
    assert list((out / "runs").rglob("events.out.tfevents.*"))
    best = list((out / "runs").rglob("best-*.ckpt"))
    assert best and list((out / "runs").rglob("last.ckpt"))
    assert "quickstart finished" in printed and str(best[0]) in printed and "val/acc" in printed

    # [4/4]: the best checkpoint went through the bridge. One epoch on 480 images is far from a
    # trained model, so the gate may refuse it; exit code, summary and parity.json must then agree.
    assert "[4/4] exporting" in printed
    assert {p.name for p in (out / "export").iterdir()} == EXPORTED
    report = json.loads((out / "export" / "parity.json").read_text())
    assert report["model"]["checkpoint"] == str(best[0])
    if report["passed"]:
        assert code == 0 and report["verified"] is True and "parity verified" in printed
    else:
        assert code == 1 and "verified" not in report and "NOT verified" in printed
        assert "parity gate failed" in captured.err.strip().splitlines()[-1]

    # A second run reuses the dataset instead of regenerating it; --no-export stops after validation.
    stamp = (out / "data" / "train" / "images.npy").stat().st_mtime_ns
    assert main(["quickstart", "--out", str(out), "--epochs", "1", "--train-images", "480", "--no-export"]) == 0
    printed = capsys.readouterr().out
    assert "reusing it" in printed and "[3/3] validating" in printed and "[4/" not in printed
    assert (out / "data" / "train" / "images.npy").stat().st_mtime_ns == stamp
