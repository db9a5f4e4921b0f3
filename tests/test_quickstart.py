"""`vwwtorch quickstart` end to end (shortened): data, training, validation, artifacts, summary."""

from vwwtorch.cli import main


def test_quickstart_writes_data_checkpoints_and_logs(tmp_path, capsys):
    out = tmp_path / "qs"
    code = main(["quickstart", "--out", str(out), "--epochs", "1", "--train-images", "480"])
    printed = capsys.readouterr().out
    assert code == 0
    assert (out / "data" / "meta.json").is_file()
    assert list((out / "runs").rglob("events.out.tfevents.*"))
    best = list((out / "runs").rglob("best-*.ckpt"))
    assert best and list((out / "runs").rglob("last.ckpt"))
    assert "quickstart finished" in printed and str(best[0]) in printed and "val/acc" in printed

    # A second run reuses the dataset instead of regenerating it.
    stamp = (out / "data" / "train" / "images.npy").stat().st_mtime_ns
    assert main(["quickstart", "--out", str(out), "--epochs", "1", "--train-images", "480"]) == 0
    assert "reusing it" in capsys.readouterr().out
    assert (out / "data" / "train" / "images.npy").stat().st_mtime_ns == stamp
