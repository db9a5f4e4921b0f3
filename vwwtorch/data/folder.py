"""`vwwtorch data folder`: a dataset from one sub-folder of images per class.

Layout in: ``IMAGE_DIR/<class name>/**/<image>``; class names are the sub-folder names, sorted, and
their order is the label order (also written to ``labels.txt``, one name a line).

Split rule: each file goes to val, test or train by a hash of its name, never by a random draw,
so adding or removing other files never moves a file from one split to another (a model evaluated
on the old val split has never trained on it). The name hashed is the path inside the class folder;
everything from ``_nohash_`` on is left out of it, so files named ``alice_nohash_1.jpg``,
``alice_nohash_2.jpg``... (several shots of one subject) always land in the same split.

Decoding: EXIF orientation applied (phone pictures), converted to gray or RGB, then the whole image
resized to a square (aspect ratio not kept, nothing cropped), bilinear, as the VWW builder does.
Files that are not images by their suffix, and images that cannot be decoded, are skipped and listed
in ``OUT/report.json``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vwwtorch.data.format import DatasetWriter
from vwwtorch.plumbing.errors import UserError
from vwwtorch.contract.images import IMAGE_SUFFIXES
from vwwtorch.plumbing.names import printable
from vwwtorch.plumbing.outputs import check_folder, written_as_user_error

NOHASH = "_nohash_"
LABELS_FILE = "labels.txt"
REPORT_FILE = "report.json"
SPLIT_ORDER = ("train", "val", "test")


def split_key(relative_name: str) -> str:
    """The part of a file's name that decides its split (everything before `_nohash_`)."""
    cut = relative_name.find(NOHASH)
    return relative_name if cut < 0 else relative_name[:cut]


def hash_percentage(relative_name: str) -> float:
    """A number in [0, 100) that depends only on the file's name (sha1; stable across runs and machines)."""
    digest = hashlib.sha1(split_key(relative_name).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64 * 100.0


def assign_split(relative_name: str, validation_percentage: float, testing_percentage: float) -> str:
    p = hash_percentage(relative_name)
    if p < validation_percentage:
        return "val"
    if p < validation_percentage + testing_percentage:
        return "test"
    return "train"


@dataclass
class Listing:
    classes: list[str]
    # split -> [(absolute path, "class/relative/name", label)], sorted
    files: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)  # {"file", "reason"}


def list_images(image_dir: Path, validation_percentage: float, testing_percentage: float) -> Listing:
    """Class folders, the split of every image file, and the files that are not images."""
    if not image_dir.exists():
        raise UserError(f"image folder {image_dir} does not exist")
    if not image_dir.is_dir():
        raise UserError(f"{image_dir} is not a folder")
    folders = sorted((p for p in image_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: printable(p.name))
    classes = [printable(p.name) for p in folders]
    if len(classes) < 2:
        found = f"only the class folder {classes[0]!r}" if classes else "no class folders"
        raise UserError(f"{image_dir} has {found}; put each class's images in its own sub-folder "
                        "(at least two classes)")
    listing = Listing(classes=classes, files={s: [] for s in SPLIT_ORDER})
    for label, (folder, name) in enumerate(zip(folders, classes)):
        for path in sorted(folder.rglob("*")):
            relative = printable(path.relative_to(folder).as_posix())
            # OS metadata (.DS_Store, ._foo.jpg, hidden folders) is noise, not a user's mistake.
            if any(part.startswith(".") for part in Path(relative).parts) or not path.is_file():
                continue
            entry = f"{name}/{relative}"
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                listing.skipped.append({"file": entry, "reason": "not an image file (by its suffix)"})
                continue
            split = assign_split(relative, validation_percentage, testing_percentage)
            listing.files[split].append((str(path), entry, label))
    return listing


def decode(path: str, size: int, channels: int) -> np.ndarray:
    """uint8 [size, size, channels]; raises on a file PIL cannot decode."""
    from PIL import Image, ImageOps

    with Image.open(path) as source:
        image = ImageOps.exif_transpose(source)
        if image.mode not in ("L", "RGB"):  # palette, CMYK, 16-bit, alpha...: through RGB
            image = image.convert("RGB")
        image = image.convert("L" if channels == 1 else "RGB")
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if channels == 1 else array


def _decode_job(job: tuple[str, int, int]):
    path, size, channels = job
    try:
        return decode(path, size, channels), None
    # A damaged file can make PIL raise nearly anything; each is a skipped image, with its reason.
    except Exception as exc:  # noqa: BLE001
        return None, f"unreadable image ({type(exc).__name__}: {str(exc).replace(path, '<file>')[:160]})"


def _worker_init() -> None:
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")


@dataclass(frozen=True)
class FolderResult:
    out: Path
    classes: list[str]
    counts: dict[str, dict[str, int]]  # split -> class -> images
    skipped: list[dict]


def build_folder_dataset(image_dir: str | os.PathLike, out: str | os.PathLike, *, validation_percentage: float = 10,
                         testing_percentage: float = 10, image_size: int = 128, channels: int = 1,
                         min_per_class: int = 10, workers: int = 1, overwrite: bool = False,
                         progress: bool = True) -> FolderResult:
    image_dir = Path(image_dir)
    _check_settings(validation_percentage, testing_percentage, image_size, channels, min_per_class, workers)
    out = check_folder(out, overwrite=overwrite)
    listing = list_images(image_dir, validation_percentage, testing_percentage)
    _check_counts(listing, image_dir, min_per_class, "image files")

    with DatasetWriter(out, classes=listing.classes, image_size=(image_size, image_size), channels=channels,
                       provenance=_provenance(image_dir, validation_percentage, testing_percentage, image_size,
                                              channels), overwrite=overwrite) as writer:
        with written_as_user_error(out):
            good = _decode_splits(listing, writer.tmp, image_size, channels, workers, progress)
        _check_counts(listing, image_dir, min_per_class, "readable images", good)
        for split in SPLIT_ORDER:
            if split in good:
                writer.add_split_meta(split, good[split])
        report = {"image_dir": printable(image_dir), "skipped_count": len(listing.skipped),
                  "skipped": sorted(listing.skipped, key=lambda s: s["file"])}
        with written_as_user_error(out):
            (writer.tmp / LABELS_FILE).write_text("".join(f"{c}\n" for c in listing.classes), encoding="utf-8")
            (writer.tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        writer.finish()
    counts = {split: info["per_class"] for split, info in writer.meta["splits"].items()}
    return FolderResult(out=out, classes=listing.classes, counts=counts, skipped=listing.skipped)


def _check_settings(val: float, test: float, size: int, channels: int, min_per_class: int, workers: int) -> None:
    if not (0 <= val < 100 and 0 <= test < 100):
        raise UserError("--validation-percentage and --testing-percentage must be in [0, 100), "
                        f"got {val:g} and {test:g}")
    if val + test >= 100:
        raise UserError(f"--validation-percentage + --testing-percentage is {val + test:g}; it must be below 100 "
                        "so that some images are left for training")
    if not 8 <= size <= 1024:
        raise UserError(f"--image-size must be between 8 and 1024, got {size}")
    if channels not in (1, 3):
        raise UserError(f"--channels must be 1 or 3, got {channels}")
    if min_per_class < 1 or workers < 1:
        raise UserError("--min-per-class and --workers must be at least 1")


def _check_counts(listing: Listing, image_dir: Path, min_per_class: int, what: str,
                  labels: dict[str, np.ndarray] | None = None) -> None:
    counts = np.zeros(len(listing.classes), dtype=np.int64)
    for split, files in listing.files.items():
        split_labels = labels.get(split, np.zeros(0, np.int64)) if labels is not None else [f[2] for f in files]
        counts += np.bincount(np.asarray(split_labels, dtype=np.int64), minlength=len(listing.classes))
    short = [f"{name} ({n})" for name, n in zip(listing.classes, counts.tolist()) if n < min_per_class]
    if short:
        raise UserError(f"class folder(s) in {image_dir} with fewer than --min-per-class {min_per_class} {what}: "
                        + ", ".join(short))
    if labels is not None and "train" not in labels:
        raise UserError(f"no readable image of {image_dir} falls in the train split")


def _decode_splits(listing: Listing, tmp: Path, size: int, channels: int, workers: int,
                   progress: bool) -> dict[str, np.ndarray]:
    """Decode every split into `tmp/<split>/`; returns split -> labels of the images kept."""
    from numpy.lib.format import open_memmap
    from vwwtorch.plumbing.progress import progress_bar

    total = sum(len(f) for f in listing.files.values())
    kept: dict[str, np.ndarray] = {}
    pool = None
    if workers > 1 and total > 64:
        pool = multiprocessing.get_context("spawn").Pool(min(workers, os.cpu_count() or 1), _worker_init)
    try:
        with progress_bar(total=total, unit="img", desc="decoding images", disable=not progress, dynamic_ncols=True) as bar:
            for split in SPLIT_ORDER:
                files = listing.files[split]
                if not files:
                    continue
                folder = tmp / split
                folder.mkdir(parents=True, exist_ok=True)
                # Memory-mapped so a large folder never sits in RAM; rewritten smaller if images were skipped.
                images = open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8,
                                     shape=(len(files), size, size, channels))
                jobs = [(path, size, channels) for path, _, _ in files]
                results = pool.imap(_decode_job, jobs, chunksize=8) if pool else map(_decode_job, jobs)
                labels, ids = [], []
                for (_, entry, label), (array, problem) in zip(files, results):
                    bar.update(1)
                    if problem:
                        listing.skipped.append({"file": entry, "reason": problem})
                        continue
                    images[len(ids)] = array
                    labels.append(label)
                    ids.append(entry)
                if not ids:
                    del images
                    shutil.rmtree(folder)
                    continue
                if len(ids) < len(files):
                    _shrink(folder / "images.npy", images, len(ids))
                else:
                    images.flush()
                del images
                kept[split] = np.asarray(labels, dtype=np.int64)
                np.save(folder / "labels.npy", kept[split])
                np.save(folder / "ids.npy", np.asarray(ids, dtype=str))
    finally:
        if pool is not None:
            pool.terminate()
    return kept


def _shrink(path: Path, images: np.ndarray, count: int) -> None:
    from numpy.lib.format import open_memmap

    smaller = path.with_name("images.small.npy")
    target = open_memmap(smaller, mode="w+", dtype=np.uint8, shape=(count, *images.shape[1:]))
    for start in range(0, count, 1024):
        end = min(start + 1024, count)
        target[start:end] = images[start:end]
    target.flush()
    del target
    os.replace(smaller, path)


def _provenance(image_dir: Path, val: float, test: float, size: int, channels: int) -> dict:
    return {
        "source": "folder",
        "builder": __name__,
        "image_dir": printable(image_dir.resolve()),
        "labels": "class = sub-folder name; labels in sorted name order (labels.txt)",
        "validation_percentage": val,
        "testing_percentage": test,
        "split_rule": "sha1 of the path inside the class folder (up to any '_nohash_') mapped to [0, 100): "
                      "< validation_percentage -> val, < validation + testing -> test, else train",
        "color": "L" if channels == 1 else "RGB",
        "resize": f"EXIF orientation applied, whole image resized to {size}x{size} (aspect ratio not kept, "
                  "no crop), bilinear",
        "ids": "paths relative to image_dir",
    }
