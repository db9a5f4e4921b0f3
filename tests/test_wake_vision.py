"""`vwwtorch data wake-vision` and `report --by`: against a small Wake Vision in the published formats.

The reference is the files themselves: labels and flags are read back from the CSVs with the csv
module, pixels decoded with plain PIL, sha256 with hashlib, subset figures counted from
predictions.csv. A build killed with SIGKILL and rerun must give byte-identical files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import wake_vision_files as wvf
from cli_asserts import assert_one_line_error
from vwwtorch.cli import main
from vwwtorch.data.format import open_attributes, open_split, read_meta

SIZE = 32
REPO = Path(__file__).resolve().parents[1]
UNLISTED = "999999_00000000ff_o.jpg"


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error(capsys, *argv):
    code, _, err = run_cli(capsys, *argv)
    return code, err


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """CSVs and three archives with one of each problem: missing, unreadable, unlisted, duplicate,
    a row without a person label, a blank flag, a non-image member and a member inside a folder."""
    root = tmp_path_factory.mktemp("wake_vision")
    splits = wvf.make_splits(seed=1)
    val, test, train = splits["val"].rows, splits["test"].rows, splits["train"].rows
    # A row kept only for a distance subset: person and every flag -1 except `far`.
    ghost = {c: "-1" for c in wvf.EVAL_HEADER[1:]} | {"filename": "424242_abcdef0123_o.jpg", "far": "1"}
    val.append(wvf.Row(ghost["filename"], ghost, wvf.picture(np.random.default_rng(5), 0)))
    val[0].values["dark"] = ""  # blank: unknown
    missing = train[7]
    missing.pixels = None
    test[3].corrupt = True
    csvs = wvf.write_csvs(root / "csv", splits)

    def entries(rows):
        return [(r.filename, wvf.member_bytes(r)) for r in rows if r.pixels is not None]

    first = entries(train[:30])
    first[2] = ("photos/" + first[2][0], first[2][1])  # a member inside a folder: matched by its base name
    second = entries(train[30:]) + [(UNLISTED, wvf.jpeg(train[0].pixels)), entries(train[:1])[0]]
    third = entries(val) + [("README.txt", b"not an image")] + entries(test)
    archives = wvf.write_archives(root / "archives", [first, second, third])
    return SimpleNamespace(root=root, splits=splits, csvs=csvs, archives=archives, missing=missing.filename,
                           corrupt=test[3].filename, ghost=ghost["filename"], blank=val[0].filename)


def build_args(published, out, *extra):
    return ["data", "wake-vision", "--metadata", *published.csvs.values(), "--images", *published.archives,
            "--out", out, "--image-size", SIZE, "--chunk-size", 7, "--max-bad-fraction", 0.05, *extra]


@pytest.fixture(scope="module")
def built(published, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "wv"
    assert main([str(a) for a in build_args(published, out, "--workers", 2)]) == 0
    return out


def csv_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row["filename"]: row for row in csv.DictReader(f)}


def test_labels_flags_and_pixels_match_the_published_files(published, built):
    meta = read_meta(built)
    assert meta["classes"] == ["no_person", "person"]
    assert meta["attributes"] == wvf.EVAL_HEADER[2:]  # the published column order
    for split in ("train", "val", "test"):
        rows = csv_rows(published.csvs[split])
        source = {r.filename: r for r in published.splits[split].rows}
        arrays = open_split(built, split, meta)
        names, flags = open_attributes(built, split, meta)
        expected = {name for name, row in rows.items() if row["person"] in ("0", "1")} - {
            published.missing, published.corrupt}
        assert sorted(map(str, arrays.ids)) == sorted(expected)
        for index, ident in enumerate(map(str, arrays.ids)):
            row = rows[ident]
            assert arrays.labels[index] == int(row["person"])
            for j, column in enumerate(names):
                assert flags[index, j] == (int(row[column]) if row.get(column, "") != "" else -1), (ident, column)
            np.testing.assert_array_equal(arrays.images[index], wvf.expected_pixels(source[ident], SIZE))
    val_names, val_flags = open_attributes(built, "val", meta)
    ids = list(map(str, open_split(built, "val", meta).ids))
    assert val_flags[ids.index(published.blank), val_names.index("dark")] == -1


def test_problems_are_reported_and_sources_hashed(published, built):
    report = json.loads((built / "report.json").read_text())
    assert report["missing_count"] == 1 and report["missing_examples"] == [published.missing]
    assert report["unreadable_count"] == 1 and report["unreadable"][0]["file"] == published.corrupt
    assert report["unlisted_count"] == 1 and report["unlisted_examples"] == [UNLISTED]
    assert report["duplicate_count"] == 1
    assert report["unlabelled_rows"] == 1  # the distance-only row with person -1
    listed = sum(1 for s in published.splits.values() for r in s.rows if r.values["person"] in ("0", "1"))
    assert report["images_listed"] == listed and report["bad_count"] == 2
    provenance = read_meta(built)["provenance"]
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
               for p in [*published.csvs.values(), *published.archives]}
    recorded = {m["file"]: m["sha256"] for m in provenance["metadata"] + provenance["images"]}
    assert recorded == digests
    assert not built.with_name("wv.chunks").exists()


def test_problems_beyond_the_allowed_fraction_are_one_line_and_leave_nothing(published, tmp_path, capsys):
    out = tmp_path / "wv"
    args = build_args(published, out, "--workers", 1)
    args[args.index("--max-bad-fraction") + 1] = 0.01  # 2 bad of 118 listed
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, "missing (1) or unreadable (1)")
    assert "report.json" in err and not out.exists()
    # Unlisted members alone: only the validation CSV against the archives holding everything.
    assert "wv.chunks/report.json" in err and (tmp_path / "wv.chunks" / "report.json").is_file()  # to resume
    out = tmp_path / "val_only"
    args = ["data", "wake-vision", "--metadata", published.csvs["val"], "--images", *published.archives,
            "--out", out, "--image-size", SIZE, "--workers", 1]
    assert_one_line_error(*error(capsys, *args), "--allow-unlisted")
    code, printed, err = run_cli(capsys, *args, "--allow-unlisted")
    assert code == 0, err
    assert "images in --images that no CSV lists" in printed
    assert len(open_split(out, "val")) == len(published.splits["val"].rows) - 1  # the ghost row has no label


KILLER = """
import os, sys
from vwwtorch.data.wake_vision import build_wake_vision
seen = []
def on_chunk(name):
    seen.append(name)
    if len(seen) == int(sys.argv[1]):
        os.kill(os.getpid(), 9)
csvs, archives = sys.argv[3].split(","), sys.argv[4].split(",")
build_wake_vision(sys.argv[2], csvs, archives, image_size=32, chunk_size=7, max_bad_fraction=0.05, workers=1,
                  progress=False, on_chunk=on_chunk)
"""


@pytest.mark.parametrize("kill_after", [2, 8])  # inside the first archive; inside the second
def test_sigkill_then_rerun_gives_byte_identical_files(published, built, tmp_path, capsys, kill_after):
    out = tmp_path / "wv"
    done = subprocess.run([sys.executable, "-c", KILLER, str(kill_after), str(out),
                           ",".join(map(str, published.csvs.values())), ",".join(map(str, published.archives))],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    work = out.with_name("wv.chunks")
    assert len(list(work.glob("*chunk*.npz"))) == kill_after and not out.exists()
    code, printed, err = run_cli(capsys, *build_args(published, out, "--workers", 2))
    assert code == 0, err
    decoded = int(printed.split("decoded ")[1].split()[0])
    assert decoded < 118 - 7  # it resumed instead of starting over
    ours = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert ours == sorted(p.relative_to(built) for p in built.rglob("*") if p.is_file())
    for relative in ours:
        assert (out / relative).read_bytes() == (built / relative).read_bytes(), relative


def test_hugging_face_parquet_shards_carry_their_own_labels(published, tmp_path):
    from vwwtorch.data.wake_vision import build_wake_vision

    columns = wvf.EVAL_HEADER[1:]
    val, test = published.splits["val"].rows, published.splits["test"].rows
    readable_test = [r for r in test if not r.corrupt]
    shards = [wvf.write_parquet(tmp_path / "hf" / "validation-00000-of-00002.parquet", val[:15], columns),
              wvf.write_parquet(tmp_path / "hf" / "validation-00001-of-00002.parquet", val[15:], columns),
              wvf.write_parquet(tmp_path / "hf" / "test-00000-of-00001.parquet", readable_test, columns)]
    result = build_wake_vision(tmp_path / "wv", [], shards, image_size=SIZE, workers=1, chunk_size=5,
                               progress=False)
    meta = read_meta(result.out)
    assert meta["attributes"] == wvf.EVAL_HEADER[2:]  # published order, not the shards' alphabetical one
    assert result.report["unlabelled_rows"] == 1  # the ghost row
    for split, rows in (("val", val), ("test", readable_test)):
        arrays = open_split(result.out, split, meta)
        names, flags = open_attributes(result.out, split, meta)
        labelled = [r for r in rows if r.values["person"] in ("0", "1")]
        assert list(map(str, arrays.ids)) == [r.filename for r in labelled]  # shard order kept
        for index, row in enumerate(labelled):
            assert arrays.labels[index] == int(row.values["person"])
            assert list(flags[index]) == [int(row.values[c]) if row.values[c] != "" else -1 for c in names]
            np.testing.assert_array_equal(arrays.images[index], wvf.expected_pixels(row, SIZE))


def test_mistakes_are_one_clear_line(published, tmp_path, capsys):
    out = tmp_path / "wv"
    base = ["data", "wake-vision", "--out", out]
    no_label = tmp_path / "wake_vision_validation.csv"
    no_label.write_text("filename,label\na.jpg,1\n")
    assert_one_line_error(*error(capsys, *base, "--metadata", no_label, "--images", published.archives[2]),
                          "no 'person' column")
    two = tmp_path / "two" / "wake_vision_test.csv"
    two.parent.mkdir()
    two.write_text("filename,person,far\na_o.jpg,1,2\n")
    assert_one_line_error(*error(capsys, *base, "--metadata", two, "--images", published.archives[2]),
                          "holds 2")
    unnamed = tmp_path / "labels.csv"
    unnamed.write_text("filename,person\na.jpg,1\n")
    assert_one_line_error(*error(capsys, *base, "--metadata", unnamed, "--images", published.archives[2]),
                          "train=PATH")
    assert_one_line_error(*error(capsys, *base, "--metadata", published.csvs["val"], "--images",
                                   tmp_path / "nowhere.tar.gz"), "does not exist")
    zipped = tmp_path / "images.zip"
    zipped.write_bytes(b"PK")
    assert_one_line_error(*error(capsys, *base, "--metadata", published.csvs["val"], "--images", zipped),
                          "is not a folder, a .tar")
    assert_one_line_error(*error(capsys, *base, "--images", published.archives[0]), "--metadata")
    overlap = tmp_path / "wake_vision_train_bbox.csv"
    overlap.write_text("filename,person,depiction,body_part\n"
                       f"{published.splits['train'].rows[0].filename},1,0,1\n")
    assert_one_line_error(*error(capsys, *base, "--metadata", published.csvs["train"], overlap,
                                   "--images", published.archives[0]), "listed more than once")
    truncated = tmp_path / "wake-vision-train-99.tar.gz"
    truncated.write_bytes(published.archives[0].read_bytes()[:3000])
    assert_one_line_error(*error(capsys, *base, "--metadata", published.csvs["train"], "--images", truncated,
                                   "--workers", 1), "cannot read archive")
    assert not out.exists()


# -- training on the result and the fine-grained report ------------------------------------------------

def direct_subsets(predictions: Path, csv_path: Path, columns: list[str]) -> dict[str, dict]:
    """Accuracy, person precision and recall per column, counted from predictions.csv and the CSV."""
    flags = csv_rows(csv_path)
    rows = list(csv.DictReader(predictions.open()))
    figures = {}
    for column in columns:
        member = [r for r in rows if flags[r["id"]][column] == "1"]
        right = sum(r["label"] == r["predicted"] for r in member)
        said = [r for r in member if r["predicted"] == "person"]
        truly = [r for r in member if r["label"] == "person"]
        tp = sum(r["label"] == "person" for r in said)
        figures[column] = {"images": len(member), "accuracy": right / len(member) if member else None,
                           "precision": tp / len(said) if said else None,
                           "recall": tp / len(truly) if truly else None}
    return figures


def test_fit_then_report_by_family_for_checkpoint_and_int8(published, built, tmp_path, capsys):
    config = REPO / "configs" / "quickstart.yaml"
    code, _, err = run_cli(capsys, "fit", "--config", config, "--data.data_dir", built, "--data.batch_size", 8,
                           "--data.num_workers", 0, "--trainer.max_epochs", 2, "--model.resolution", 32,
                           "--trainer.enable_progress_bar", "false",
                           "--trainer.logger.init_args.save_dir", tmp_path / "runs")
    assert code == 0, err[-2000:]
    ckpt = next((tmp_path / "runs").rglob("last.ckpt"))
    code, _, err = run_cli(capsys, "export", "--ckpt", ckpt, "--data", built, "--out", tmp_path / "export",
                           "--num-calibration", 40, "--min-agreement", 0, "--max-accuracy-drop", 100)
    assert code == 0, err[-2000:]
    by = "gender,age,distance,lighting,depiction"
    families = {"gender": ["predominantly_female", "predominantly_male", "gender_unknown"],
                "age": ["young", "middle_age", "older", "age_unknown"],
                "distance": ["near", "medium_distance", "far"],
                "lighting": ["dark", "normal_lighting", "bright"],
                "depiction": ["person_depiction", "non-person_depiction", "non-person_non-depiction"]}
    for flag, model in (("--ckpt", ckpt), ("--tflite", tmp_path / "export" / "model_int8.tflite")):
        out = tmp_path / f"report{flag}"
        code, printed, err = run_cli(capsys, "report", flag, model, "--data", built, "--split", "test",
                                     "--out", out, "--by", by)
        assert code == 0, err
        report = json.loads((out / "report.json").read_text())
        section = report["fine_grained"]
        assert [g["name"] for g in section["groups"]] == list(families)
        direct = direct_subsets(out / "predictions.csv", published.csvs["test"], sum(families.values(), []))
        for group in section["groups"]:
            assert [s["name"] for s in group["subsets"]] == families[group["name"]]
            for s in group["subsets"]:
                d = direct[s["name"]]
                assert s["images"] == d["images"] and s["images"] > 0
                for key in ("accuracy", "precision", "recall"):
                    assert s[key] == pytest.approx(d[key]) if d[key] is not None else s[key] is None
            accuracies = [direct[c]["accuracy"] for c in families[group["name"]]]
            assert group["gap"]["accuracy"] == pytest.approx(max(accuracies) - min(accuracies))
        largest = max(section["groups"], key=lambda g: g["gap"]["accuracy"])
        assert section["largest_gap"]["group"] == largest["name"]
        assert "gender/predominantly_female" in printed
        assert Image.open(out / "fine_grained.png").size == (640, 560)
    # Without --by the section is there by default; on a dataset without attributes --by is refused.
    code, _, err = run_cli(capsys, "report", "--ckpt", ckpt, "--data", built, "--split", "val",
                           "--out", tmp_path / "default")
    assert code == 0, err
    assert "fine_grained" in json.loads((tmp_path / "default" / "report.json").read_text())
    assert_one_line_error(*error(capsys, "report", "--ckpt", ckpt, "--data", built, "--out", tmp_path / "bad",
                                   "--by", "height"), "not an attribute")


def test_folders_of_images_and_a_split_given_by_name(published, tmp_path):
    """`--images DIR` (nested, any order) and `--metadata val=PATH` for a CSV whose name says nothing."""
    from vwwtorch.data.wake_vision import build_wake_vision

    rows = published.splits["val"].rows
    for i, row in enumerate(rows):
        if row.pixels is not None:
            folder = tmp_path / "images" / ("a" if i % 2 else "b/c")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / row.filename).write_bytes(wvf.member_bytes(row))
    renamed = tmp_path / "labels.csv"
    renamed.write_bytes(published.csvs["val"].read_bytes())
    result = build_wake_vision(tmp_path / "wv", [f"val={renamed}"], [tmp_path / "images"], image_size=SIZE,
                               workers=1, progress=False)
    meta = read_meta(result.out)
    assert list(meta["splits"]) == ["val"]
    arrays = open_split(result.out, "val", meta)
    labelled = {r.filename: r for r in rows if r.values["person"] in ("0", "1")}
    assert sorted(map(str, arrays.ids)) == sorted(labelled)
    for index, ident in enumerate(map(str, arrays.ids)):
        assert arrays.labels[index] == int(labelled[ident].values["person"])
        np.testing.assert_array_equal(arrays.images[index], wvf.expected_pixels(labelled[ident], SIZE))
    assert result.report["unlabelled_rows"] == 1 and result.report["unlisted_count"] == 0
