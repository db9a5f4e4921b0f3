"""Class probabilities of a model on one dataset split: a PyTorch checkpoint or a deployed `.tflite`.

Both see the same pixels: the deployment rule's bytes (`vwwtorch.contract.deployment.eval_bytes`:
central 87.5% crop, resize to the model's resolution, gray/RGB, in uint8). The checkpoint then gets
them normalized (`byte / 127.5 - 1`); an int8 TFLite model gets what the firmware feeds it, the
byte-to-int8 table derived from its input quantization (`vwwtorch.contract.litert`), run in TFLM's
own runtime, so that its figures are the device's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vwwtorch.contract.deployment import byte_to_int8, normalization
from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.hashing import sha256_file
from vwwtorch.data.format import SplitArrays, check_model_classes, eval_pixels, open_split, read_meta


@dataclass
class Predictions:
    probs: np.ndarray  # float32 [N, classes]
    labels: np.ndarray  # int64 [N]
    ids: np.ndarray  # [N]
    arrays: SplitArrays  # the split, for the contact sheet
    classes: list[str]
    model: dict = field(default_factory=dict)  # what was evaluated, for report.json


def open_data(data_dir: str | os.PathLike, split: str) -> tuple[dict, SplitArrays]:
    meta = read_meta(data_dir)
    arrays = open_split(data_dir, split, meta)
    if len(arrays) == 0:
        raise UserError(f"split {split!r} of {data_dir} is empty")
    return meta, arrays


def check_channels(meta: dict, model_channels: int, convert_channels: bool) -> None:
    if meta["channels"] != model_channels and not convert_channels:
        raise UserError(f"the dataset has {meta['channels']}-channel images but the model takes {model_channels}; "
                        "pass --convert-channels to convert them")


def _pixel_batches(arrays: SplitArrays, resolution: int, channels: int, batch_size: int, desc: str):
    """uint8 NHWC batches of the split through the deployment rule."""
    from vwwtorch.plumbing.progress import progress_bar

    for start in progress_bar(range(0, len(arrays), batch_size), desc=desc, unit="batch",
                              disable=len(arrays) <= batch_size, leave=False):
        yield eval_pixels(arrays, range(start, min(start + batch_size, len(arrays))), resolution, channels)


PREPROCESSING = "central 87.5% crop, resize to the model resolution (uint8)"


def predict_checkpoint(ckpt: str | os.PathLike, data_dir: str | os.PathLike, split: str, *, batch_size: int = 64,
                       convert_channels: bool = False) -> Predictions:
    from vwwtorch.training.checkpoint import load_classifier

    meta, arrays = open_data(data_dir, split)
    model = load_classifier(ckpt)
    hp = model.hparams
    check_model_classes(model.class_names, hp.num_classes, meta["classes"], f"checkpoint {ckpt}")
    check_channels(meta, hp.in_channels, convert_channels)
    outputs = []
    norm = normalization(model.model.input_range)
    with torch.inference_mode():
        for pixels in _pixel_batches(arrays, hp.resolution, hp.in_channels, batch_size, "checkpoint"):
            images = norm.real(torch.from_numpy(pixels).permute(0, 3, 1, 2))
            outputs.append(torch.softmax(model(images), dim=1))
    info = {"kind": "checkpoint", "path": str(ckpt), "sha256": sha256_file(ckpt), "width": hp.width,
            "resolution": hp.resolution, "channels": hp.in_channels,
            "preprocessing": f"{PREPROCESSING}, {norm.formula}"}
    return Predictions(torch.cat(outputs).numpy(), np.array(arrays.labels, dtype=np.int64),
                       np.asarray(arrays.ids), arrays, list(meta["classes"]), info)


def predict_tflite(tflite: str | os.PathLike, data_dir: str | os.PathLike, split: str, *, batch_size: int = 256,
                   convert_channels: bool = False) -> Predictions:
    from vwwtorch.contract.litert import TFLiteModel

    meta, arrays = open_data(data_dir, split)
    model = TFLiteModel(tflite, device_kernels=True)  # an int8 model: the device's own kernels (TFLM)
    _, height, width, channels = model.input_shape
    if height != width:
        raise UserError(f"{tflite} takes {width}x{height} images; vwwtorch datasets and models are square")
    check_model_classes([], model.num_classes, meta["classes"], f"TFLite model {tflite}")
    check_channels(meta, channels, convert_channels)
    if model.is_int8:  # refused here, before any image is read, if it has no byte mapping
        table = byte_to_int8(model.input_quant.scale, model.input_quant.zero_point, f"TFLite model {tflite}")
    outputs = [model.probabilities(pixels)
               for pixels in _pixel_batches(arrays, height, channels, batch_size, f"TFLite {Path(tflite).name}")]
    kind = "tflite-int8" if model.is_int8 else f"tflite-{model.input_dtype.name}"
    if model.is_int8:
        offsets = sorted(set((table.astype(int) - np.arange(256)).tolist()))
        sign = "-" if offsets[0] < 0 else "+"
        rule = f"int8 = byte {sign} {abs(offsets[0])}" if len(offsets) == 1 else "int8 from the byte table"
        feed = (f"{rule} (input scale {model.input_quant.scale:.6g}, zero point {model.input_quant.zero_point}, "
                "as the firmware feeds it)")
    else:
        feed = "x / 127.5 - 1"
    info = {"kind": kind, "path": str(tflite), "sha256": sha256_file(tflite), "resolution": height,
            "channels": channels, "preprocessing": f"{PREPROCESSING}, {feed}",
            "output": "dequantized with the model's output scale/zero point" if model.is_int8 else "float",
            "kernels": model.kernels}
    return Predictions(np.concatenate(outputs).astype(np.float32), np.array(arrays.labels, dtype=np.int64),
                       np.asarray(arrays.ids), arrays, list(meta["classes"]), info)
