"""The on-disk dataset format every vwwtorch data source writes and the trainer reads.

A dataset is a folder::

    meta.json                 classes, image size, channels, per-split counts, provenance
    <split>/images.npy        uint8 [N, H, W, C], memory-mapped at read time
    <split>/labels.npy        int64 [N], 0 <= label < len(classes)
    <split>/ids.npy           int64 or unicode [N]: where each image came from (COCO id, file name)

See docs/dataset_format.md for the full description.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.outputs import (check_folder, os_error_text, publish_folder, staging_path,
                                       written_as_user_error)

FORMAT_NAME = "vwwtorch-dataset"
FORMAT_VERSION = 1
META_FILE = "meta.json"
ARRAY_FILES = ("images.npy", "labels.npy", "ids.npy")


@dataclass(frozen=True)
class SplitArrays:
    """One split, memory-mapped: images stay on disk until indexed."""

    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray  # int64 [N]
    ids: np.ndarray  # [N]

    def __len__(self) -> int:
        return len(self.labels)


def read_meta(root: str | os.PathLike) -> dict[str, Any]:
    """Read and check `meta.json`; every problem is a one-line `UserError`."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise UserError(f"dataset path {root} is not a folder")
    meta_path = root / META_FILE
    if not meta_path.exists() and not meta_path.is_symlink():
        if not any(root.iterdir()):
            raise UserError(f"dataset folder {root} is empty (build one with `vwwtorch data ...`)")
        raise UserError(f"{meta_path} is missing: {root} is not a vwwtorch dataset")
    if meta_path.is_dir():
        raise UserError(f"{meta_path} is a folder, not a file: {root} is damaged")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        what = "empty" if meta_path.stat().st_size == 0 else f"not valid JSON ({exc})"
        raise UserError(f"{meta_path} is {what}: {root} is damaged") from None
    except OSError as exc:
        raise UserError(f"cannot read {meta_path}: {os_error_text(exc)}") from None
    _check_meta(meta, meta_path)
    return meta


def _check_meta(meta: Any, path: Path) -> None:
    def bad(msg: str) -> UserError:
        return UserError(f"{path} is malformed: {msg}")

    if not isinstance(meta, dict):
        raise bad("expected a JSON object")
    if meta.get("format") != FORMAT_NAME:
        raise bad(f"'format' must be {FORMAT_NAME!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise bad(f"unsupported 'version' {meta.get('version')!r} (this vwwtorch reads {FORMAT_VERSION})")
    classes = meta.get("classes")
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)):
        raise bad("'classes' must be a list of at least two names")
    size = meta.get("image_size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise bad("'image_size' must be [height, width]")
    if meta.get("channels") not in (1, 3):
        raise bad("'channels' must be 1 or 3")
    splits = meta.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise bad("'splits' must map split names to counts")
    for name, info in splits.items():
        if not isinstance(info, dict) or not isinstance(info.get("count"), int):
            raise bad(f"split {name!r} needs an integer 'count'")
    attributes = meta.get("attributes")
    if attributes is not None and not (isinstance(attributes, list) and all(isinstance(a, str) for a in attributes)):
        raise bad("'attributes' must be a list of column names")


def open_split(root: str | os.PathLike, split: str, meta: dict[str, Any] | None = None) -> SplitArrays:
    """Memory-map one split and check it against `meta.json`."""
    root = Path(root)
    meta = meta if meta is not None else read_meta(root)
    if split not in meta["splits"]:
        raise UserError(f"dataset {root} has no {split!r} split (it has: {', '.join(meta['splits'])})")
    folder = root / split
    arrays = {}
    for name in ARRAY_FILES:
        path = folder / name
        if not path.exists() and not path.is_symlink():
            raise UserError(f"{path} is missing")
        if path.is_dir():
            raise UserError(f"{path} is a folder, not an array file: {root} is damaged")
        try:
            arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError) as exc:
            what = "empty" if path.stat().st_size == 0 else f"not a readable .npy array ({exc})"
            raise UserError(f"{path} is {what}: {root} is damaged") from None
        except OSError as exc:
            raise UserError(f"cannot read {path}: {os_error_text(exc)}") from None
    images, labels, ids = (arrays[n] for n in ARRAY_FILES)
    h, w = meta["image_size"]
    c = meta["channels"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (h, w, c):
        raise UserError(
            f"{folder / 'images.npy'} holds {images.dtype} {tuple(images.shape)}, "
            f"meta.json promises uint8 [N, {h}, {w}, {c}]"
        )
    count = meta["splits"][split]["count"]
    if not (len(images) == len(labels) == len(ids) == count):
        raise UserError(
            f"split {split!r} of {root} is inconsistent: {len(images)} images, {len(labels)} labels, "
            f"{len(ids)} ids, meta.json count {count}"
        )
    if labels.dtype.kind not in "iu":
        raise UserError(f"{folder / 'labels.npy'} must hold integers, not {labels.dtype}")
    classes = len(meta["classes"])
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < classes:
        outside = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise UserError(f"{folder / 'labels.npy'} holds label {outside}, outside 0..{classes - 1} for the {classes} "
                        f"classes of meta.json: {root} is damaged")
    return SplitArrays(images=images, labels=labels, ids=ids)


ATTRIBUTES_FILE = "attributes.npy"


def open_attributes(root: str | os.PathLike, split: str, meta: dict[str, Any]) -> tuple[list[str], np.ndarray] | None:
    """(column names, int8 [N, A]) of a split's per-image attributes (1 / 0, -1 unknown), or None when
    the dataset has none (Wake Vision's fine-grained flags; see docs/dataset_format.md)."""
    names = meta.get("attributes")
    if not names:
        return None
    path = Path(root) / split / ATTRIBUTES_FILE
    try:
        flags = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"cannot read {path}: {exc}: {root} is damaged") from None
    count = meta["splits"][split]["count"]
    if flags.dtype != np.int8 or flags.shape != (count, len(names)):
        raise UserError(f"{path} holds {flags.dtype} {tuple(flags.shape)}, meta.json promises int8 "
                        f"[{count}, {len(names)}]")
    return list(names), flags


def check_model_classes(model_classes: list[str] | None, num_model_classes: int, data_classes: list[str],
                        source: str) -> None:
    """A model evaluated or calibrated on a dataset must predict the dataset's classes, in its order."""
    if num_model_classes != len(data_classes):
        raise UserError(f"{source} has {num_model_classes} classes but the dataset has {len(data_classes)} "
                        f"({', '.join(data_classes)})")
    named = model_classes and list(model_classes) != [str(i) for i in range(num_model_classes)]
    if named and list(model_classes) != list(data_classes):
        raise UserError(f"{source} was trained on classes {', '.join(model_classes)}, the dataset has "
                        f"{', '.join(data_classes)}")


class NpyAppender:
    """Write a `.npy` file of known shape by appending rows: no process holds the whole array, and
    plain appends (not a memory map) keep the written pages out of this process's resident memory."""

    def __init__(self, path: Path, dtype, shape: tuple[int, ...]):
        self.dtype, self.shape, self.rows = np.dtype(dtype), tuple(shape), 0
        self.handle = open(path, "wb")
        np.lib.format.write_array_header_1_0(self.handle, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                           "fortran_order": False, "shape": self.shape})

    def __enter__(self) -> "NpyAppender":
        return self

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        assert rows.shape[1:] == self.shape[1:], (rows.shape, self.shape)
        self.handle.write(rows.tobytes())
        self.rows += len(rows)

    def __exit__(self, kind, value, traceback) -> None:
        self.handle.close()
        if kind is None and self.rows != self.shape[0]:
            raise AssertionError(f"{self.handle.name}: wrote {self.rows} rows of {self.shape[0]}")


def class_counts(labels: np.ndarray, num_classes: int) -> list[int]:
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).tolist()


class DatasetWriter:
    """Write a dataset atomically: everything goes to a hidden `.<out>.partial/`, renamed at the end.

    The target is checked when the writer is made, before any work. Use it as a context manager: an
    exception, Ctrl-C or SIGTERM inside the block removes the staging folder, and a full disk is one
    clear line. A run killed outright leaves only the staging folder, which the next run replaces.
    """

    def __init__(self, out: str | os.PathLike, *, classes: list[str], image_size: tuple[int, int],
                 channels: int, provenance: dict[str, Any], overwrite: bool = False):
        self.out = check_folder(out, overwrite=overwrite)
        self.tmp = staging_path(self.out)
        with written_as_user_error(self.out):
            if self.tmp.exists():
                shutil.rmtree(self.tmp)
            self.tmp.mkdir()
        self.meta: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "classes": list(classes),
            "image_size": [int(image_size[0]), int(image_size[1])],
            "channels": int(channels),
            "splits": {},
            "provenance": provenance,
        }

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def split_folder(self, split: str) -> Path:
        folder = self.tmp / split
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def open_images(self, split: str, count: int) -> np.ndarray:
        """A writable memory map for `count` images of `split` (filled by the caller, never all in RAM)."""
        h, w = self.meta["image_size"]
        with written_as_user_error(self.out):
            return np.lib.format.open_memmap(self.split_folder(split) / "images.npy", mode="w+", dtype=np.uint8,
                                             shape=(count, h, w, self.meta["channels"]))

    def write_split(self, split: str, images: np.ndarray | None, labels: Iterable[int], ids: Iterable) -> None:
        """Write a split's arrays; `images=None` when they were filled through `open_images`."""
        labels = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels, dtype=np.int64)
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
        folder = self.split_folder(split)
        with written_as_user_error(self.out):
            if images is not None:
                images = np.asarray(images)
                h, w = self.meta["image_size"]
                c = self.meta["channels"]
                assert images.dtype == np.uint8 and images.shape[1:] == (h, w, c), images.shape
                assert len(images) == len(labels) == len(ids)
                np.save(folder / "images.npy", images)
            np.save(folder / "labels.npy", labels)
            np.save(folder / "ids.npy", ids)
        self.add_split_meta(split, labels)

    def add_split_meta(self, split: str, labels: np.ndarray) -> None:
        """Record counts for a split whose arrays were written into `self.tmp / split` by the caller."""
        counts = class_counts(labels, len(self.meta["classes"]))
        self.meta["splits"][split] = {
            "count": int(len(labels)),
            "per_class": dict(zip(self.meta["classes"], counts)),
        }

    def finish(self) -> Path:
        with written_as_user_error(self.out):
            (self.tmp / META_FILE).write_text(json.dumps(self.meta, indent=2) + "\n")
            publish_folder(self.tmp, self.out)
        return self.out


def eval_pixels(arrays: SplitArrays, indices, resolution: int, channels: int, progress: bool = False,
                desc: str = "preprocessing") -> np.ndarray:
    """uint8 [len(indices), resolution, resolution, channels]: dataset images through the deployment
    rule (`vwwtorch.contract.deployment.eval_bytes`), the pixels evaluation and deployment see."""
    import torch

    from vwwtorch.contract.deployment import eval_bytes
    from vwwtorch.plumbing.progress import progress_bar

    indices = np.asarray(indices, dtype=np.int64)
    out = np.empty((len(indices), resolution, resolution, channels), dtype=np.uint8)
    for row, index in enumerate(progress_bar(indices, desc=desc, unit="img", leave=False, disable=not progress)):
        image = torch.from_numpy(np.array(arrays.images[index])).permute(2, 0, 1)
        out[row] = eval_bytes(image, resolution, channels).permute(1, 2, 0).numpy()
    return out
