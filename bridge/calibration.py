"""Images for calibration and parity: dataset images through the deployment rule.

Calibration images come from the train split and parity images from the validation split, so the
gate never judges the int8 model on the very images its ranges were fitted to. Both go through
`vwwtorch.contract.deployment.eval_bytes` (central crop, resize, in bytes), the preprocessing the
model was validated with. The float model sees those bytes normalized (x / 127.5 - 1, NHWC float32
in [-1, 1], what the int8 input quantization is calibrated on); the int8 model sees the same bytes
through its byte-to-int8 table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vwwtorch.contract.deployment import SYMMETRIC, normalization
from vwwtorch.plumbing.errors import UserError

SELECTION_SEED = 0


@dataclass(frozen=True)
class EvalImages:
    pixels: np.ndarray   # uint8 [N, H, W, C]: the deployment rule's bytes
    labels: np.ndarray   # int64 [N]
    ids: np.ndarray      # dataset ids (COCO id, file name, index)
    split: str
    input_range: str = SYMMETRIC.name  # how the float model normalizes the bytes

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def images(self) -> np.ndarray:
        """float32 [N, H, W, C]: the pixels as the float model takes them (x / 127.5 - 1 for [-1, 1])."""
        return normalization(self.input_range).real(self.pixels)


def check_dataset(data_dir: str | Path, channels: int, resolution: int, num_classes: int,
                  class_names: list[str] | None = None) -> dict:
    """meta.json of a dataset that fits the model; a one-line UserError otherwise."""
    from vwwtorch.data.format import check_model_classes, read_meta

    meta = read_meta(data_dir)
    if meta["channels"] != channels:
        raise UserError(f"dataset {data_dir} has {meta['channels']}-channel images but the model takes "
                        f"{channels}-channel input")
    height, width = meta["image_size"]
    if min(height, width) < resolution:
        raise UserError(f"dataset {data_dir} holds {height}x{width} images, smaller than the model's "
                        f"{resolution}x{resolution} input")
    check_model_classes(class_names, num_classes, meta["classes"], "the model")
    return meta


def pick_split(meta: dict, preferred: tuple[str, ...], data_dir: str | Path, purpose: str) -> str:
    for split in preferred:
        if meta["splits"].get(split, {}).get("count", 0) > 0:
            return split
    raise UserError(f"dataset {data_dir} has no non-empty {' or '.join(repr(s) for s in preferred)} split "
                    f"for {purpose} (it has: {', '.join(meta['splits'])})")


def load_eval_images(data_dir: str | Path, split: str, count: int, channels: int, resolution: int,
                     meta: dict | None = None, progress: bool = True,
                     input_range: str = SYMMETRIC.name) -> EvalImages:
    """`count` images of `split` (all if fewer), a fixed pseudo-random subset, preprocessed for eval."""
    from vwwtorch.data.format import eval_pixels, open_split, read_meta

    meta = meta if meta is not None else read_meta(data_dir)
    arrays = open_split(data_dir, split, meta)
    total = len(arrays)
    if total == 0:
        raise UserError(f"split {split!r} of {data_dir} is empty")
    if count >= total:
        indices = np.arange(total)
    else:
        # Sorted so reads walk the memory-mapped file forwards; fixed seed so runs repeat exactly.
        indices = np.sort(np.random.default_rng(SELECTION_SEED).choice(total, size=count, replace=False))
    out = eval_pixels(arrays, indices, resolution, channels, progress, desc=f"preprocessing {split}")
    labels = np.asarray(arrays.labels[indices], dtype=np.int64)
    if labels.min() < 0 or labels.max() >= len(meta["classes"]):
        raise UserError(f"split {split!r} of {data_dir} has labels outside 0..{len(meta['classes']) - 1}")
    return EvalImages(out, labels, np.asarray(arrays.ids[indices]), split, input_range)


def pin_input_range(images: np.ndarray, input_range: str = SYMMETRIC.name) -> tuple[np.ndarray, bool]:
    """Make the calibration set span the model's whole input range ([-1, 1] or [0, 1]).

    The converter takes the int8 input scale from the min and max it sees; the firmware feeds every
    byte 0..255, so the range must be exactly that of bytes 0 and 255 (scale 1/127.5, zero point -1
    for [-1, 1]; 1/255, -128 for [0, 1]). When no calibration image reaches byte 0 or 255, one pixel
    of the first image is set to each end: the input range becomes right and inner-layer ranges
    barely notice. Returns (images, pinned?).
    """
    norm = normalization(input_range)
    low, high = float(images.min()), float(images.max())
    if low <= norm.low and high >= norm.high:
        return images, False
    pinned = images.copy()
    pinned[0, 0, 0, 0] = norm.low
    pinned[0, -1, -1, 0] = norm.high
    return pinned, True
