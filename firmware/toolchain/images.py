"""Turn image files into the int8 input tensors the firmware reads (raw bytes, HWC).

Same convention as the camera path on the board: a pixel byte b becomes `byte_to_input[b]`, the
table `firmware generate` derived from the model's input quantization (the deployment rule,
`vwwtorch.contract.deployment`; b - 128 for the usual models). Images must already have the
model's size: resizing would hide a mismatch between what was trained and what is deployed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vwwtorch.plumbing.errors import UserError
from vwwtorch.contract.images import IMAGE_SUFFIXES, decode_image

RAW_SUFFIXES = {".bin", ".raw", ".int8"}


def _from_array(array: np.ndarray, rows: int, cols: int, channels: int, source: str,
                byte_to_input: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        array = byte_to_input[array]
    elif array.dtype != np.int8:
        raise UserError(f"{source}: array of {array.dtype}; expected uint8 pixels or int8 tensors")
    if array.ndim == 2 and channels == 1:
        array = array[:, :, None]
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[1:] != (rows, cols, channels):
        raise UserError(f"{source}: shape {list(array.shape)} does not hold "
                        f"{rows}x{cols}x{channels} images (the model's input)")
    return array


def load_tensors(path: str | Path, rows: int, cols: int, channels: int, byte_to_input) -> np.ndarray:
    """int8 array (N, rows, cols, channels) from one file: image, .npy, or raw int8 tensors."""
    path = Path(path)
    byte_to_input = np.asarray(byte_to_input, dtype=np.int8)
    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise UserError(f"cannot read {path}: {exc}") from None
        return _from_array(array, rows, cols, channels, str(path), byte_to_input)
    if suffix in RAW_SUFFIXES:
        data = np.fromfile(path, dtype=np.int8)
        per_image = rows * cols * channels
        if data.size == 0 or data.size % per_image:
            raise UserError(f"{path}: {data.size} bytes is not a whole number of "
                            f"{rows}x{cols}x{channels} int8 tensors ({per_image} bytes each)")
        return data.reshape(-1, rows, cols, channels)
    if suffix not in IMAGE_SUFFIXES:
        raise UserError(f"{path}: unknown image type {suffix or '(none)'}; use "
                        f"{', '.join(sorted(IMAGE_SUFFIXES | RAW_SUFFIXES | {'.npy'}))}")
    image = decode_image(path, channels)
    if image.size != (cols, rows):
        raise UserError(f"image {path} is {image.size[0]}x{image.size[1]}; the model takes "
                        f"{cols}x{rows} (resize it first)")
    array = np.asarray(image, dtype=np.uint8)
    return _from_array(array, rows, cols, channels, str(path), byte_to_input)
