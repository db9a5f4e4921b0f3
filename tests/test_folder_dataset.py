"""`vwwtorch data folder`: stable hash splits, labels.txt, skipped files, and a dataset that trains."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from cli_asserts import assert_one_line_error
from vwwtorch.cli import main
from vwwtorch.data.folder import assign_split, build_folder_dataset, list_images
from vwwtorch.data.format import open_split, read_meta
from vwwtorch.data.verify import verify_dataset

CLASSES = ("bars_h", "bars_v", "disc")


def shape_image(kind: int, rng: np.random.Generator, size: int = 48) -> Image.Image:
    """Bright horizontal bars, vertical bars or a disc on a dark background, with noise."""
    bg = rng.uniform(20, 110)
    image = Image.fromarray(np.full((size, size), bg, np.uint8))
    draw = ImageDraw.Draw(image)
    tone = int(bg + rng.uniform(80, 140))
    if kind < 2:
        period, offset = int(rng.integers(8, 14)), int(rng.integers(0, 8))
        for p in range(offset - period, size, period):
            box = [0, p, size, p + period // 2 - 1] if kind == 0 else [p, 0, p + period // 2 - 1, size]
            draw.rectangle(box, fill=tone)
    else:
        r = rng.uniform(10, 18)
        cx, cy = rng.uniform(r, size - r, 2)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tone)
    noisy = np.asarray(image, np.float32) + rng.normal(0, 6, (size, size))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_class_folders(root: Path, per_class: int, seed: int = 0, start: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for kind, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + per_class):
            shape_image(kind, rng).save(root / name / f"{name}_{i:03d}.png")
    return root


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_hash_split_is_stable_when_files_are_added(tmp_path):
    root = write_class_folders(tmp_path / "images", per_class=40)
    before = list_images(root, 20, 10)
    write_class_folders(root, per_class=40, seed=1, start=40)  # more files in every class
    after = list_images(root, 20, 10)
    def split_of(listing):
        return {entry: split for split, files in listing.files.items() for _, entry, _ in files}

    old, new = split_of(before), split_of(after)
    assert len(old) == 120 and len(new) == 240
    assert all(new[entry] == split for entry, split in old.items())
    # The rule depends on nothing but the name: same answer in any order, any call.
    assert all(assign_split(entry.split("/", 1)[1], 20, 10) == split for entry, split in new.items())


def test_hash_split_fractions_and_nohash_groups():
    names = [f"img_{i:05d}.jpg" for i in range(6000)]
    splits = [assign_split(n, 10, 20) for n in names]
    assert abs(splits.count("val") / 6000 - 0.10) < 0.015
    assert abs(splits.count("test") / 6000 - 0.20) < 0.02
    for subject in ("alice", "bob", "carol", "dave"):
        group = {assign_split(f"{subject}_nohash_{k}.jpg", 30, 30) for k in range(20)}
        assert len(group) == 1, (subject, group)


def test_build_writes_the_dataset_labels_and_skipped_files(tmp_path, capsys):
    root = write_class_folders(tmp_path / "images", per_class=12)
    (root / "disc" / "notes.txt").write_text("not an image")
    (root / "bars_v" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "bars_h" / ".DS_Store").write_bytes(b"\0\0")  # OS metadata: ignored silently
    out = tmp_path / "ds"
    code, printed, err = run_cli(capsys, "data", "folder", "--image-dir", root, "--out", out, "--image-size", 40,
                                 "--validation-percentage", 25, "--testing-percentage", 25, "--min-per-class", 5,
                                 "--workers", 1)
    assert code == 0, err
    assert "skipped 2 file(s)" in printed
    assert (out / "labels.txt").read_text().splitlines() == list(CLASSES)
    report = json.loads((out / "report.json").read_text())
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"disc/notes.txt", "bars_v/broken.jpg"}
    assert "not an image" in reasons["disc/notes.txt"] and "unreadable" in reasons["bars_v/broken.jpg"]

    meta = read_meta(out)
    assert meta["classes"] == list(CLASSES) and meta["image_size"] == [40, 40] and meta["channels"] == 1
    assert verify_dataset(out).ok
    seen = {}
    for split in meta["splits"]:
        arrays = open_split(out, split, meta)
        for image, label, entry in zip(arrays.images, arrays.labels, arrays.ids.tolist()):
            name, file = entry.split("/", 1)
            assert CLASSES[label] == name and assign_split(file, 25, 25) == split
            seen[entry] = image
    assert len(seen) == 36  # every readable image, each exactly once
    # Pixels are the file decoded and resized whole to 40x40 (bilinear).
    expected = np.asarray(Image.open(root / "disc" / "disc_003.png").convert("L").resize((40, 40), Image.BILINEAR))
    np.testing.assert_array_equal(seen["disc/disc_003.png"][:, :, 0], expected)


def test_exif_orientation_is_applied(tmp_path):
    root = tmp_path / "images"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # bright left half as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": the bright half ends up on top
    Image.fromarray(pixels).save(root / "a" / "phone.jpg", exif=exif, quality=95)
    Image.fromarray(pixels).save(root / "b" / "plain.jpg", quality=95)
    out = build_folder_dataset(root, tmp_path / "ds", validation_percentage=0, testing_percentage=0,
                               image_size=16, channels=3, min_per_class=1, progress=False).out
    arrays = open_split(out, "train")
    by_id = dict(zip(arrays.ids.tolist(), arrays.images))
    phone, plain = by_id["a/phone.jpg"].mean(axis=2), by_id["b/plain.jpg"].mean(axis=2)
    assert phone[:4].mean() > 200 and phone[-4:].mean() < 50  # top bright, bottom dark
    assert plain[:, :4].mean() > 200 and plain[:, -4:].mean() < 50  # left bright, as stored


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared 2-core machine: one thread is faster and deterministic
    yield
    torch.set_num_threads(threads)


@pytest.mark.learning
def test_three_class_folder_dataset_trains_to_90_percent(tmp_path, capsys, one_thread):
    import pytorch_lightning as pl

    from vwwtorch.data.datamodule import VWWDataModule
    from vwwtorch.data.transforms import Augmentation
    from vwwtorch.training.ema import TFWeightEMA
    from vwwtorch.training.module import VWWClassifier

    root = write_class_folders(tmp_path / "images", per_class=100)
    out = tmp_path / "ds"
    code, _, err = run_cli(capsys, "data", "folder", "--image-dir", root, "--out", out, "--image-size", 36,
                           "--validation-percentage", 25, "--testing-percentage", 0, "--workers", 1)
    assert code == 0, err
    pl.seed_everything(0, verbose=False)
    model = VWWClassifier(resolution=32, bn_momentum=0.1, num_classes=3, class_names=list(CLASSES),
                          image_log_every_n_steps=0)
    still = Augmentation(crop_area=(1, 1), crop_aspect=(1, 1), hflip=False, brightness=0, contrast=0)
    data = VWWDataModule(str(out), batch_size=16, num_workers=0, resolution=32, augmentation=still)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=10, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, use_distributed_sampler=False,
                         num_sanity_val_steps=0, callbacks=[TFWeightEMA(0.99)])
    trainer.fit(model, data)
    result = trainer.validate(model, data, verbose=False)[0]
    assert data.num_classes == 3 and read_meta(out)["splits"]["val"]["count"] >= 60
    assert result["val/acc"] >= 0.9, result


def test_one_class_folder_is_an_error(tmp_path, capsys):
    root = tmp_path / "images"
    (root / "cats").mkdir(parents=True)
    Image.new("L", (8, 8)).save(root / "cats" / "a.png")
    code, _, err = run_cli(capsys, "data", "folder", "--image-dir", root, "--out", tmp_path / "ds")
    assert_one_line_error(code, err, "only the class folder 'cats'", "at least two")
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.partial").exists()


def test_empty_class_folder_is_an_error(tmp_path, capsys):
    root = write_class_folders(tmp_path / "images", per_class=12)
    (root / "empty").mkdir()
    code, _, err = run_cli(capsys, "data", "folder", "--image-dir", root, "--out", tmp_path / "ds")
    assert_one_line_error(code, err, "fewer than --min-per-class 10", "empty (0)")


def test_unreadable_images_count_against_min_per_class(tmp_path, capsys):
    root = write_class_folders(tmp_path / "images", per_class=5)
    for i in range(4):  # disc: 5 files, 1 readable
        (root / "disc" / f"disc_{i:03d}.png").write_bytes(b"garbage")
    code, _, err = run_cli(capsys, "data", "folder", "--image-dir", root, "--out", tmp_path / "ds",
                           "--min-per-class", 4, "--workers", 1)
    assert_one_line_error(code, err, "readable images", "disc (1)")
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.partial").exists()


@pytest.mark.parametrize("val, test", [(50, 50), (90, 20), (-5, 10)])
def test_percentages_must_leave_training_images(tmp_path, capsys, val, test):
    root = write_class_folders(tmp_path / "images", per_class=2)
    code, _, err = run_cli(capsys, "data", "folder", "--image-dir", root, "--out", tmp_path / "ds",
                           "--validation-percentage", val, "--testing-percentage", test)
    assert_one_line_error(code, err, "percentage")
