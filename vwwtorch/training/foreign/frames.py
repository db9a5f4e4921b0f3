"""The real frames the published person detectors ship with, as camera bytes.

TFLM's `examples/person_detection/testdata/person.bmp` and `no_person.bmp` are 96x96 8-bit BMPs whose
bytes are the model's int8 input tensor, not pixels: TFLM's own test feeds them to the model as they
are. Viewed as a picture, every value below zero wraps around to 128..255. The camera byte of each
pixel is therefore the int8 value + 128 (the firmware feeds byte b as b - 128).

MLPerf Tiny's `vww/vww_inputs.cc` holds two float inputs of 96x96x3 values each. Only the first 9216
values of each are given (the rest are zero-initialized): input 0 is TFLM's person frame as int8/127,
value for value; input 1 is all zeros. Their camera bytes are round(127 x value) + 128, one plane;
an RGB model gets it on all three channels.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vwwtorch.plumbing.errors import UserError

SIZE = 96
_NUMBER = re.compile(r"-?\d+\.\d*(?:[eE][-+]?\d+)?")


def tflm_testdata_frame(bmp: Path) -> np.ndarray:
    """uint8 [96, 96]: the camera bytes of a TFLM testdata BMP (its bytes are int8 tensor values)."""
    from PIL import Image

    values = np.frombuffer(Image.open(bmp).tobytes(), dtype=np.int8)
    if values.size != SIZE * SIZE:
        raise UserError(f"{bmp} holds {values.size} values, not a 96x96 frame")
    return (values.astype(np.int16) + 128).astype(np.uint8).reshape(SIZE, SIZE)


def mlperf_input_frames(source: Path) -> list[np.ndarray]:
    """uint8 [96, 96] per input of MLPerf's `vww_inputs.cc`: round(127 x value) + 128."""
    text = source.read_text(errors="replace")
    start = text.find("g_vww_inputs")
    body = text[text.find("{", start) + 1:] if start >= 0 else ""
    frames = []
    for block in body.split("{")[1:]:
        values = np.array([float(v) for v in _NUMBER.findall(block.split("}")[0])], dtype=np.float64)
        if values.size < SIZE * SIZE:
            raise UserError(f"{source}: an input with {values.size} values; expected at least {SIZE * SIZE}")
        frame = np.zeros(SIZE * SIZE) if not values.any() else values[:SIZE * SIZE]
        frames.append((np.clip(np.round(frame * 127), -128, 127) + 128).astype(np.uint8).reshape(SIZE, SIZE))
    if not frames:
        raise UserError(f"{source} holds no g_vww_inputs arrays")
    return frames
