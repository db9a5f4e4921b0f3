"""The COCO -> Visual Wake Words builder: labels, splits, damaged inputs, resuming, verify and show."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from cli_asserts import assert_one_line_error
from coco_fixture import (
    MINIVAL_IDS,
    SPECS,
    damaged,
    expected,
    make_coco_tree,
    source_pixels,
)
from PIL import Image
from pycocotools.coco import COCO

from vwwtorch.cli import main
from vwwtorch.data.coco_vww_builder import build_vww
from vwwtorch.data.coco_vww import coco_sources
from vwwtorch.data.format import open_split, read_meta

BAD_OK = "0.2"  # the fixture has 3 damaged images out of 20


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    return make_coco_tree(tmp_path_factory.mktemp("coco"))


def _build(coco: Path, out: Path, **kwargs):
    options = dict(workers=1, chunk_size=3, max_bad_fraction=float(BAD_OK), progress=False)
    options.update(kwargs)
    return build_vww(out, coco_sources(coco), **options)


@pytest.fixture(scope="module")
def person_book(coco, tmp_path_factory) -> Path:
    """The uninterrupted reference build every resume test compares against."""
    out = tmp_path_factory.mktemp("ref") / "vww"
    _build(coco, out)
    return out


def _labels(root: Path) -> dict[str, dict[int, int]]:
    meta = read_meta(root)
    result = {}
    for split in meta["splits"]:
        arrays = open_split(root, split, meta)
        result[split] = dict(zip(arrays.ids.tolist(), arrays.labels.tolist()))
    return result


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def reference_labels(annotation_file: Path, class_name: str, threshold: float = 0.005) -> dict[int, int]:
    """Straightforward per-image pycocotools loop, written independently of the builder."""
    coco = COCO(str(annotation_file))
    [cat] = coco.getCatIds(catNms=[class_name])
    labels = {}
    for image_id in coco.getImgIds():
        image = coco.loadImgs(image_id)[0]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=[cat], iscrowd=None))
        labels[image_id] = int(any(a["area"] / (image["width"] * image["height"]) >= threshold for a in anns))
    return labels


def _reference_split(coco: Path, class_name: str, threshold: float = 0.005) -> dict[str, dict[int, int]]:
    bad = damaged()
    result = {}
    for split, source in (("train", "train2014"), ("val", "val2014")):
        labels = reference_labels(coco / "annotations" / f"instances_{source}.json", class_name, threshold)
        result[split] = {i: v for i, v in labels.items() if i not in bad}
    return result


# --- labels and splits -------------------------------------------------------------------------

def test_person_labels_book_split(coco, person_book):
    labels = _labels(person_book)
    assert labels == expected("person", "book")
    # The arrays are ordered by COCO id and open as the trainer opens them.
    meta = read_meta(person_book)
    for split in ("train", "val"):
        arrays = open_split(person_book, split, meta)
        assert arrays.images.shape[1:] == (128, 128, 1) and arrays.images.dtype == np.uint8
        assert list(arrays.ids) == sorted(arrays.ids)
    assert meta["classes"] == ["no_person", "person"]
    assert meta["splits"]["train"]["per_class"] == {"no_person": 5, "person": 6}
    assert meta["splits"]["val"]["per_class"] == {"no_person": 4, "person": 2}
    prov = meta["provenance"]
    assert prov["class_name"] == "person" and prov["small_object_area_threshold"] == 0.005
    assert prov["split"] == "book" and prov["bad_images"] == 3
    import hashlib
    for source in ("train2014", "val2014"):
        digest = hashlib.sha256((coco / "annotations" / f"instances_{source}.json").read_bytes()).hexdigest()
        assert prov["annotations"][source]["sha256"] == digest


def test_labels_match_independent_pycocotools_loop(coco, person_book):
    assert _labels(person_book) == _reference_split(coco, "person")
    # The hand-written expectations agree with the independent loop too, damaged images included.
    for spec in SPECS:
        ann = coco / "annotations" / f"instances_{spec.source}.json"
        assert reference_labels(ann, "person")[spec.image_id] == spec.person, spec.image_id


def test_car_labels_through_cli(coco, tmp_path, capsys):
    out = tmp_path / "cars"
    code = main(["data", "vww", "--coco-dir", str(coco), "--out", str(out), "--class-name", "car",
                 "--workers", "1", "--chunk-size", "4", "--max-bad-fraction", BAD_OK])
    assert code == 0
    assert "wrote VWW dataset" in capsys.readouterr().out
    assert _labels(out) == expected("car", "book") == _reference_split(coco, "car")
    meta = read_meta(out)
    assert meta["classes"] == ["no_car", "car"]
    assert meta["provenance"]["category_id"] == 3


def test_threshold_flag_changes_labels(coco, tmp_path):
    out = tmp_path / "t05"
    _build(coco, out, threshold=0.05)
    labels = _labels(out)
    assert labels == _reference_split(coco, "person", 0.05)
    assert labels["train"][1] == 0  # 0.5% of the image: small at a 5% threshold
    assert labels["val"][101] == 1  # exactly 5%


def test_minival_split(coco, tmp_path):
    out = tmp_path / "minival"
    _build(coco, out, split="minival", minival_ids=coco / "minival_ids.txt")
    labels = _labels(out)
    everything = {**expected("person")["train"], **expected("person")["val"]}
    val_ids = {i for i in MINIVAL_IDS if i in everything}
    assert set(labels["val"]) == val_ids == {3, 6, 101, 104}
    assert set(labels["train"]) == set(everything) - val_ids
    assert labels == expected("person", "minival")
    minival = read_meta(out)["provenance"]["minival_ids"]
    assert minival["ids_listed"] == len(MINIVAL_IDS) and minival["ids_not_in_annotations"] == 1


# --- pixels ------------------------------------------------------------------------------------

def _reference_pixels(spec, size: int, mode: str) -> np.ndarray:
    return np.asarray(Image.fromarray(source_pixels(spec)).convert(mode).resize((size, size), Image.BILINEAR),
                      dtype=np.float32)


def test_stored_pixels_are_the_resized_image(person_book):
    arrays = open_split(person_book, "train")
    specs = {s.image_id: s for s in SPECS}
    for image_id, image in zip(arrays.ids.tolist(), arrays.images):
        want = _reference_pixels(specs[image_id], 128, "L")
        diff = np.abs(image[:, :, 0].astype(np.float32) - want)
        assert diff.mean() < 4, (image_id, diff.mean())  # JPEG + DCT-domain scaling, not a different image


def test_rgb_build_and_grayscale_sources(coco, tmp_path):
    out = tmp_path / "rgb"
    _build(coco, out, channels=3, image_size=48)
    arrays = open_split(out, "val")
    assert arrays.images.shape[1:] == (48, 48, 3)
    specs = {s.image_id: s for s in SPECS}
    for image_id, image in zip(arrays.ids.tolist(), arrays.images):
        spec = specs[image_id]
        if spec.gray:
            assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])
        diff = np.abs(image.astype(np.float32) - _reference_pixels(spec, 48, "RGB"))
        assert diff.mean() < 6, (image_id, diff.mean())


# --- damaged inputs ----------------------------------------------------------------------------

def test_report_lists_bad_files(person_book):
    report = json.loads((person_book / "report.json").read_text())
    assert report["images_listed"] == len(SPECS) and report["bad_count"] == 3
    reasons = {b["image_id"]: b["reason"] for b in report["bad"]}
    assert set(reasons) == set(damaged())
    assert "truncated" in reasons[9]
    assert reasons[10] == "missing file"
    assert "cannot identify image" in reasons[13]
    assert all(not os.path.isabs(b["file"]) and str(person_book.parent) not in b["reason"] for b in report["bad"])


def test_too_many_bad_images_fail_with_exit_2(coco, tmp_path, capsys):
    out = tmp_path / "strict"
    code = main(["data", "vww", "--coco-dir", str(coco), "--out", str(out), "--workers", "1", "--chunk-size", "3"])
    assert_one_line_error(code, capsys.readouterr().err, "--max-bad-fraction", "report.json")
    assert not out.exists()
    report = json.loads((tmp_path / "strict.chunks" / "report.json").read_text())
    assert report["bad_count"] >= 1


@pytest.mark.parametrize("problem, message", [
    ("unknown-class", "valid names: bicycle, car, dog, person, traffic light"),
    ("missing-annotations", "does not exist"),
    ("bad-json", "is not valid JSON"),
    ("not-coco", "is not a COCO instances file"),
    ("no-images", "list no images"),
    ("minival-without-ids", "--minival-ids"),
    ("missing-image-dir", "image folder"),
])
def test_input_problems_are_one_line_errors(coco, tmp_path, capsys, problem, message):
    import shutil

    tree = tmp_path / "coco"
    shutil.copytree(coco / "annotations", tree / "annotations")
    (tree / "train2014").mkdir()
    (tree / "val2014").mkdir()
    args = ["data", "vww", "--coco-dir", str(tree), "--out", str(tmp_path / "out"), "--workers", "1"]
    val_ann = tree / "annotations" / "instances_val2014.json"
    if problem == "unknown-class":
        args += ["--class-name", "unicorn"]
    elif problem == "missing-annotations":
        val_ann.unlink()
    elif problem == "bad-json":
        val_ann.write_text('{"images": [')
    elif problem == "not-coco":
        val_ann.write_text('{"pictures": []}')
    elif problem == "no-images":
        for f in (tree / "annotations").glob("*.json"):
            f.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}))
    elif problem == "minival-without-ids":
        args += ["--split", "minival"]
    elif problem == "missing-image-dir":
        (tree / "val2014").rmdir()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("vwwtorch: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_existing_output_is_not_overwritten(coco, person_book, capsys):
    before = _files(person_book)
    assert main(["data", "vww", "--coco-dir", str(coco), "--out", str(person_book)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _files(person_book) == before


# --- interrupted builds ------------------------------------------------------------------------

class Interrupt(Exception):
    pass


def test_interrupted_build_resumes_to_an_identical_dataset(coco, person_book, tmp_path):
    out = tmp_path / "vww"
    work = tmp_path / "vww.chunks"

    def stop_after_two(name, seen=[]):  # noqa: B006 - counts calls across this build
        seen.append(name)
        if len(seen) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        _build(coco, out, on_chunk=stop_after_two)
    assert not out.exists() and not (tmp_path / ".vww.partial").exists()
    committed = sorted(work.glob("*.npz"))
    assert len(committed) == 2
    # A damaged committed chunk (e.g. disk trouble) is detected and rebuilt, not trusted.
    committed[1].write_bytes(committed[1].read_bytes()[:100])

    resumed = []
    result = _build(coco, out, on_chunk=resumed.append)
    total_chunks = 5 + 2  # 14 train images and 6 val images in chunks of 3
    assert len(resumed) == total_chunks - 1 and committed[0].name not in resumed
    assert result.decoded == len(SPECS) - 3
    assert _files(out) == _files(person_book)
    assert not work.exists()


def test_killed_build_resumes_to_an_identical_dataset(coco, person_book, tmp_path, capsys):
    """SIGKILL in the middle of a 2-worker build (no cleanup at all), then the same CLI command again."""
    out = tmp_path / "vww"
    work = tmp_path / "vww.chunks"
    script = textwrap.dedent("""
        import os, signal, sys
        from vwwtorch.data.coco_vww_builder import build_vww
        from vwwtorch.data.coco_vww import coco_sources
        done = []
        def hook(name):
            done.append(name)
            if len(done) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        build_vww(sys.argv[2], coco_sources(sys.argv[1]), workers=2, chunk_size=3, max_bad_fraction=0.2,
                  progress=False, on_chunk=hook)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(coco), str(out)], start_new_session=True)
    try:
        assert proc.wait(timeout=120) == -signal.SIGKILL
    finally:
        try:  # the build's own worker processes, orphaned by the kill
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not out.exists()
    assert len(list(work.glob("*.npz"))) >= 2
    (work / ".train-00004.npz.partial.999999").write_bytes(b"half a chunk")  # what a kill mid-write leaves

    code = main(["data", "vww", "--coco-dir", str(coco), "--out", str(out), "--workers", "2", "--chunk-size", "3",
                 "--max-bad-fraction", BAD_OK])
    assert code == 0
    assert "resuming:" in capsys.readouterr().out
    assert _files(out) == _files(person_book)
    assert not work.exists()


def test_changed_settings_do_not_mix_with_an_unfinished_build(coco, tmp_path, capsys):
    out = tmp_path / "vww"

    def stop(name):
        raise Interrupt

    with pytest.raises(Interrupt):
        _build(coco, out, on_chunk=stop)
    args = ["data", "vww", "--coco-dir", str(coco), "--out", str(out), "--workers", "1", "--chunk-size", "3",
            "--max-bad-fraction", BAD_OK, "--image-size", "64"]
    assert main(args) == 2
    assert "--restart" in capsys.readouterr().err
    assert main(args + ["--restart"]) == 0
    assert read_meta(out)["image_size"] == [64, 64]


# --- verify and show ---------------------------------------------------------------------------

def test_verify_passes_and_prints_balance(person_book, capsys):
    assert main(["data", "verify", str(person_book)]) == 0
    text = capsys.readouterr().out
    assert "OK: all checks passed" in text
    assert "train" in text and "( 54.5%)" in text and "( 33.3%)" in text


def test_verify_catches_tampered_datasets(person_book, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(person_book, broken)
    labels = np.load(broken / "val" / "labels.npy")
    labels[0] = 7
    np.save(broken / "val" / "labels.npy", labels)
    report = json.loads((broken / "report.json").read_text())
    report["bad"] = report["bad"][:1]
    (broken / "report.json").write_text(json.dumps(report))
    assert main(["data", "verify", str(broken)]) == 2
    captured = capsys.readouterr()
    assert "holds label 7, outside 0..1" in captured.out and "report.json lists 1 bad images" in captured.out
    errors = [line for line in captured.err.splitlines() if line.strip()]
    assert len(errors) == 1 and "failed verification: " in errors[0] and "holds label 7, outside 0..1" in errors[0]
    assert "(and 1 more, listed above)" in errors[0]


def test_show_writes_a_labelled_grid(person_book, tmp_path, capsys):
    out = tmp_path / "sheets" / "grid.png"
    assert main(["data", "show", str(person_book), "--n", "64", "--out", str(out), "--split", "train"]) == 0
    assert "11 images" in capsys.readouterr().out
    with Image.open(out) as sheet:
        # 11 images -> 4 x 3 tiles of 128 px + 2 x 3 px frame (+ 14 px caption below).
        assert sheet.size == (4 * 134, 3 * 148)
        pixels = np.asarray(sheet.convert("RGB"))
    # Tile 0 is id 1 (a person: green frame), tile 1 is id 2 (no person: grey frame).
    assert tuple(pixels[1, 1]) == (40, 190, 60) and tuple(pixels[1, 134 + 1]) == (150, 150, 150)
    assert main(["data", "show", str(person_book), "--out", str(tmp_path / "grid.xyz")]) == 2


def test_unrelated_work_folder_is_never_deleted(coco, tmp_path, capsys):
    work = tmp_path / "vww.chunks"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    args = ["data", "vww", "--coco-dir", str(coco), "--out", str(tmp_path / "vww"), "--max-bad-fraction", BAD_OK]
    assert main(args + ["--restart"]) == 2
    assert "not a vwwtorch build folder" in capsys.readouterr().err
    assert (work / "notes.txt").read_text() == "mine"


def test_built_dataset_trains_with_vwwtorch_fit(person_book, tmp_path, capsys):
    """The builder's output feeds `vwwtorch fit` directly, no conversion step."""
    from vwwtorch.cli import main

    config = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    code = main(["fit", "--config", str(config), "--data.data_dir", str(person_book),
                 "--data.batch_size", "4", "--data.num_workers", "0", "--trainer.max_steps", "3",
                 "--trainer.enable_progress_bar", "false",
                 "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    assert code == 0, capsys.readouterr().err
    assert list((tmp_path / "runs").rglob("last.ckpt"))
