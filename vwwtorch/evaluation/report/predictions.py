"""Class probabilities of a model on one dataset split: a PyTorch checkpoint or a deployed `.tflite`.

Both see the same pixels: the evaluation preprocessing of training (central 87.5% crop, resize to
the model's resolution, on the uint8 image, so the result is again bytes). The checkpoint then
gets `byte / 127.5 - 1`; the int8 TFLite model gets what the firmware feeds it, `int8 = byte - 128`
(via `bridge.tflite_runner`, which checks the model's input quantization makes these the same).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2

from vwwtorch.data.format import SplitArrays, check_model_classes, open_split, read_meta
from vwwtorch.data.transforms import eval_transform, scale_to_unit_range
from vwwtorch.contract.errors import UserError


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


def model_bytes_transform(resolution: int, meta: dict, model_channels: int, convert_channels: bool):
    """uint8 [C, H, W] -> uint8 [model C, resolution, resolution]: the eval crop and resize, kept in bytes."""
    if meta["channels"] != model_channels and not convert_channels:
        raise UserError(f"the dataset has {meta['channels']}-channel images but the model takes {model_channels}; "
                        "pass --convert-channels to convert them")
    steps = eval_transform(resolution, min(meta["image_size"]), meta["channels"], model_channels).transforms
    return v2.Compose(steps[:-1])  # all but the final scaling to [-1, 1]


def _batches(arrays: SplitArrays, transform, batch_size: int, desc: str):
    from vwwtorch.contract.progress import progress_bar

    for start in progress_bar(range(0, len(arrays), batch_size), desc=desc, unit="batch",
                      disable=len(arrays) <= batch_size, leave=False):
        chunk = np.array(arrays.images[start:start + batch_size])  # a writable copy of the memory map
        images = torch.from_numpy(chunk).permute(0, 3, 1, 2)  # NHWC -> NCHW
        yield torch.stack([transform(image) for image in images])


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def predict_checkpoint(ckpt: str | os.PathLike, data_dir: str | os.PathLike, split: str, *, batch_size: int = 64,
                       convert_channels: bool = False) -> Predictions:
    from vwwtorch.training.checkpoint import load_classifier

    meta, arrays = open_data(data_dir, split)
    model = load_classifier(ckpt)
    hp = model.hparams
    check_model_classes(model.class_names, hp.num_classes, meta["classes"], f"checkpoint {ckpt}")
    to_bytes = model_bytes_transform(hp.resolution, meta, hp.in_channels, convert_channels)
    outputs = []
    with torch.inference_mode():
        for batch in _batches(arrays, to_bytes, batch_size, "checkpoint"):
            outputs.append(torch.softmax(model(scale_to_unit_range(batch)), dim=1))
    info = {"kind": "checkpoint", "path": str(ckpt), "sha256": sha256(ckpt), "width": hp.width,
            "resolution": hp.resolution, "channels": hp.in_channels,
            "preprocessing": "central 87.5% crop, resize to the model resolution (uint8), x / 127.5 - 1"}
    return Predictions(torch.cat(outputs).numpy(), np.array(arrays.labels, dtype=np.int64),
                       np.asarray(arrays.ids), arrays, list(meta["classes"]), info)


def predict_tflite(tflite: str | os.PathLike, data_dir: str | os.PathLike, split: str, *, batch_size: int = 256,
                   convert_channels: bool = False) -> Predictions:
    from vwwtorch.bridge.tflite_runner import TFLiteModel

    meta, arrays = open_data(data_dir, split)
    model = TFLiteModel(tflite)
    _, height, width, channels = model.input_shape
    if height != width:
        raise UserError(f"{tflite} takes {width}x{height} images; vwwtorch datasets and models are square")
    check_model_classes([], model.num_classes, meta["classes"], f"TFLite model {tflite}")
    to_bytes = model_bytes_transform(height, meta, channels, convert_channels)
    outputs = []
    for batch in _batches(arrays, to_bytes, batch_size, f"TFLite {Path(tflite).name}"):
        camera_bytes = batch.permute(0, 2, 3, 1).contiguous().numpy()  # NHWC uint8, as the firmware gets them
        outputs.append(model.probabilities(camera_bytes))
    kind = "tflite-int8" if model.is_int8 else f"tflite-{model.input_dtype.name}"
    feed = ("int8 = byte - 128 (input scale 1/127.5, zero point -1)" if model.is_int8 and
            model.input_quant.is_reference_input() else f"quantized with the model's input scale/zero point"
            if model.is_int8 else "x / 127.5 - 1")
    info = {"kind": kind, "path": str(tflite), "sha256": sha256(tflite), "resolution": height,
            "channels": channels,
            "preprocessing": f"central 87.5% crop, resize to the model resolution (uint8), {feed}",
            "output": "dequantized with the model's output scale/zero point" if model.is_int8 else "float"}
    return Predictions(np.concatenate(outputs).astype(np.float32), np.array(arrays.labels, dtype=np.int64),
                       np.asarray(arrays.ids), arrays, list(meta["classes"]), info)
