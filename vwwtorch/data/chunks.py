"""Decode one chunk of images and commit it as one file; this is the code the worker processes run.

Decoding: every image is decoded once and resized as a whole to a square `size` x `size` (aspect
ratio not kept, nothing cropped). Cropping here would throw away the parts of the picture that may
hold the object that decided the label; the trainer crops at train time instead (as slim's
preprocessing does on the book's full-size images). For 640x480 COCO pictures the squash is a 4:3
-> 1:1 stretch, which random-aspect crops at train time cover anyway.

Speed: `Image.draft()` lets libjpeg scale by 1/2, 1/4 or 1/8 in the DCT domain while decoding
(never below the requested size) and, for grayscale, skip the colour conversion, producing the
luma channel directly (same ITU-R 601 weights as PIL's `convert("L")`, rounding may differ by 1).
That roughly halves the decode time of a 640x480 JPEG. The final resize is PIL's antialiased
bilinear. EXIF orientation is ignored on purpose: COCO's annotations refer to the stored pixels.

A chunk file `<name>.npz` holds `images` (uint8 [k, size, size, C]), `labels`, `ids` (int64 [k])
and `bad` (a JSON list of the images that could not be decoded). It is written under a staging
name, flushed to disk and renamed, so a chunk file that exists is complete.
"""

from __future__ import annotations

import json
import signal
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from vwwtorch.plumbing.outputs import staged_file

CHUNK_SUFFIX = ".npz"


def decode_image(path: str, size: int, channels: int, fast: bool = True) -> np.ndarray:
    """uint8 [size, size, channels] from an image file (missing/corrupt files raise)."""
    mode = "L" if channels == 1 else "RGB"
    with Image.open(path) as source:
        if fast:
            source.draft(mode, (size, size))  # JPEG only; a no-op for other formats
        image = source
        if image.mode not in ("L", "RGB"):  # CMYK, palette, 16-bit...: go through RGB
            image = image.convert("RGB")
        image = image.convert(mode) if image.mode != mode else image
        image.load()  # decode now, inside the `with`, so truncation errors surface here
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if channels == 1 else array


def _reason(exc: BaseException, path: str, file: str) -> str:
    if isinstance(exc, FileNotFoundError):
        return "missing file"
    # PIL names the absolute path in its messages; keep reports machine-independent.
    return f"{type(exc).__name__}: {exc}".replace(path, file)


def build_chunk(task: tuple) -> tuple[str, int, list[dict]]:
    """Worker entry point: decode a chunk's images and commit the chunk file.

    `task` is (chunk_path, items, size, channels, fast) with items [(image_id, path, file, label)].
    Returns (chunk name, images written, bad entries) so the parent never handles pixel data.
    """
    chunk_path, items, size, channels, fast = task
    images = np.empty((len(items), size, size, channels), dtype=np.uint8)
    ids, labels, bad = [], [], []
    for image_id, path, file, label in items:
        try:
            images[len(ids)] = decode_image(path, size, channels, fast)
        # Anything a damaged file makes PIL raise is a bad image; a real bug here would mark every
        # image bad and trip --max-bad-fraction, with the error text in report.json.
        except Exception as exc:  # noqa: BLE001
            bad.append({"image_id": int(image_id), "file": file, "reason": _reason(exc, path, file)})
            continue
        ids.append(image_id)
        labels.append(label)
    write_chunk(Path(chunk_path), images[: len(ids)], np.asarray(labels, dtype=np.int64),
                np.asarray(ids, dtype=np.int64), bad)
    return Path(chunk_path).name, len(ids), bad


def write_chunk(path: Path, images: np.ndarray, labels: np.ndarray, ids: np.ndarray, bad: list[dict]) -> None:
    # Staged under a name with the pid: a leftover worker of a killed build cannot clobber ours.
    with staged_file(path, "wb", checked=True, unique=True) as f:
        np.savez(f, images=images, labels=labels, ids=ids, bad=np.array(json.dumps(bad)))


def read_chunk_summary(path: Path) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(labels, ids, bad) of a committed chunk without loading its images."""
    with np.load(path, allow_pickle=False) as npz:
        return npz["labels"], npz["ids"], json.loads(str(npz["bad"]))


def read_chunk_images(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as npz:
        return npz["images"]


def worker_init(pool_worker: bool = False) -> None:
    # COCO has JPEGs with odd EXIF blocks; PIL's warnings about them would flood the progress bar.
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
    if pool_worker:
        # Ctrl-C reaches the whole process group; the parent alone handles it (and stops the pool),
        # instead of every worker printing its own KeyboardInterrupt traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
