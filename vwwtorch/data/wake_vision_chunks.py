"""Wake Vision's chunk files and the worker pool that writes them.

A chunk is one `.npz` in the work folder holding up to `chunk_size` decoded images with their
labels, ids (file names), splits and fine-grained flags; `decode_chunk` is what a worker runs.
Kept apart from the reading (`wake_vision_sources`) because it is all that worker processes import.
"""

from __future__ import annotations

import json
import multiprocessing
from collections import deque
from pathlib import Path
from typing import Callable

import numpy as np

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.outputs import staged_file
from vwwtorch.data.wake_vision_metadata import SPLITS


def decode_chunk(task: tuple) -> tuple[str, int, int]:
    """Worker entry point: decode one chunk's images and commit the chunk file.

    `task` = (chunk_path, items, size, channels, attribute_count); items are
    (name, bytes or None, path or None, label, split index, flags, error or None). Returns (name,
    written, bad).
    """
    from PIL import Image

    from vwwtorch.contract.images import decode_image

    chunk_path, items, size, channels, attribute_count = task
    images = np.empty((len(items), size, size, channels), dtype=np.uint8)
    names, labels, splits, flags, bad = [], [], [], [], []
    for name, data, path, label, split, row_flags, error in items:
        try:
            if error is not None:
                raise UserError(error)
            image = decode_image(path or name, channels, exif=False, draft=(size, size), data=data)
            array = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
        # A damaged file can make PIL raise nearly anything; each is an unreadable image, with its reason.
        except Exception as exc:  # noqa: BLE001
            reason = str(exc) if isinstance(exc, UserError) else f"cannot read image {name}: {type(exc).__name__}"
            bad.append({"file": name, "split": SPLITS[split], "reason": reason.replace(path or "\0", name)})
            continue
        images[len(names)] = array.reshape(size, size, channels)
        names.append(name)
        labels.append(label)
        splits.append(split)
        flags.append(row_flags)
    count = len(names)
    with staged_file(Path(chunk_path), "wb", checked=True, unique=True) as f:
        np.savez(f, images=images[:count], labels=np.asarray(labels, dtype=np.int64),
                 ids=np.asarray(names, dtype=str) if names else np.zeros(0, dtype="<U1"),
                 splits=np.asarray(splits, dtype=np.int8),
                 attributes=np.asarray(flags, dtype=np.int8).reshape(count, attribute_count),
                 bad=np.array(json.dumps(bad)))
    return Path(chunk_path).name, count, len(bad)


def chunk_summary(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {"labels": npz["labels"], "ids": npz["ids"], "splits": npz["splits"],
                "attributes": npz["attributes"], "bad": json.loads(str(npz["bad"]))}


def chunk_images(path: Path) -> np.ndarray:
    return chunk_field(path, "images")


def chunk_field(path: Path, name: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as npz:
        return npz[name]


def chunk_path(work: Path, source_index: int, chunk: int) -> Path:
    return work / f"source-{source_index:03d}-chunk-{chunk:06d}.npz"


def done_path(work: Path, index: int) -> Path:
    return work / f"source-{index:03d}.done.npz"


def is_committed_chunk(path: Path) -> bool:
    """A chunk file that exists was renamed into place complete; still check it reads back."""
    if not path.exists():
        return False
    try:
        chunk_summary(path)
        return True
    except Exception:  # noqa: BLE001
        path.unlink(missing_ok=True)
        return False


class Dispatcher:
    """Hands chunks to the worker pool with at most `2 x workers` in flight (memory stays flat)."""

    def __init__(self, workers: int, on_done: Callable[[tuple], None]):
        self.on_done = on_done
        self.pending: deque = deque()
        self.limit = 2 * workers
        self.pool = None
        if workers > 1:
            from vwwtorch.data.chunks import worker_init

            # spawn: fresh workers that do not inherit the parent's catalog arrays.
            self.pool = multiprocessing.get_context("spawn").Pool(workers, initializer=worker_init,
                                                                   initargs=(True,))

    def submit(self, task: tuple) -> None:
        if self.pool is None:
            self.on_done(decode_chunk(task))
            return
        self.pending.append(self.pool.apply_async(decode_chunk, (task,)))
        while len(self.pending) >= self.limit:
            self.on_done(self.pending.popleft().get())

    def drain(self) -> None:
        while self.pending:
            self.on_done(self.pending.popleft().get())

    def close(self, *, abort: bool = False) -> None:
        if self.pool is not None:
            (self.pool.terminate if abort else self.pool.close)()
            self.pool.join()

