"""The deployment rule, written once: how a camera byte becomes the model's input.

1. The picture, in bytes. Evaluation looks at the central 87.5% of the image (a square on its short
   side), resized to the model's resolution with antialiasing, converted to gray or RGB, and the
   result is again uint8: `eval_bytes`. Training's validation, export calibration and parity,
   reports and the firmware's reference images all go through it. An image file that already has
   the model's size is a frame prepared that way (a camera frame the firmware reduced, TFLM's test
   frames), so `input_bytes` takes it as it is and treats any other file with `eval_bytes`:
   `predict` feeds the same pixels to a checkpoint and to its int8 export.

2. The float model's input. The byte b becomes a real number by the model's normalization:
   slim's and vwwtorch's [-1, 1] (b / 127.5 - 1) or MLPerf Tiny's [0, 1] (b / 255).

3. The int8 model's input. A full-integer model stores its input as int8 with a scale and a zero
   point. `byte_to_int8` derives the byte-to-int8 table from them: the normalization whose range
   the quantization covers (255 steps of the scale span it, and its ends lie within one step of
   the int8 range's), then q = r / scale + zero_point rounded, ties up. For the reference quantization
   (scale 1/127.5, zero point -1) that is q = b - 128 for every byte, TFLM's camera convention;
   for MLPerf's (1/255, -128) it is q = b - 128 too. A quantization with no such byte mapping is
   refused with one line rather than fed wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vwwtorch.plumbing.errors import UserError

CENTRAL_FRACTION = 0.875  # slim's eval crop


@dataclass(frozen=True)
class Normalization:
    """real = byte / divisor + offset."""

    name: str
    divisor: float
    offset: float

    @property
    def formula(self) -> str:
        return f"x / {self.divisor:g}" + (f" - {-self.offset:g}" if self.offset < 0 else "")

    @property
    def low(self) -> float:
        return self.offset

    @property
    def high(self) -> float:
        return 255.0 / self.divisor + self.offset

    def real(self, pixels):
        """float32 model input for uint8 bytes (a numpy array or a torch tensor), as training computes it."""
        if hasattr(pixels, "dtype") and type(pixels).__module__.startswith("torch"):
            import torch

            return pixels.to(torch.float32) / self.divisor + self.offset
        return np.asarray(pixels).astype(np.float32) / np.float32(self.divisor) + np.float32(self.offset)


SYMMETRIC = Normalization("[-1, 1]", 127.5, -1.0)   # slim, vwwtorch, TFLM's person_detect
UNIT = Normalization("[0, 1]", 255.0, 0.0)          # MLPerf Tiny's VWW reference
NORMALIZATIONS = {n.name: n for n in (SYMMETRIC, UNIT)}


def normalization(name: str) -> Normalization:
    try:
        return NORMALIZATIONS[name]
    except KeyError:
        raise UserError(f"unknown input normalization {name!r}; choose one of: "
                        f"{', '.join(NORMALIZATIONS)}") from None


# --- 1. the picture in bytes --------------------------------------------------------------------

def crop_size(height: int, width: int) -> int:
    return max(1, round(min(height, width) * CENTRAL_FRACTION))


def eval_bytes(image, resolution: int, channels: int):
    """uint8 [C, H, W] tensor -> uint8 [channels, resolution, resolution]: central crop, resize, gray/RGB."""
    from torchvision.transforms import v2

    steps = [v2.CenterCrop(crop_size(*image.shape[-2:])), v2.Resize((resolution, resolution), antialias=True)]
    if image.shape[-3] != channels:
        steps.append(v2.Grayscale(num_output_channels=channels))  # RGB -> L, or L -> 3 equal channels
    return v2.Compose(steps)(image)


def input_bytes(image, resolution: int, channels: int):
    """An image file's pixels as the model takes them: as they are at the model's size, else `eval_bytes`."""
    from torchvision.transforms import v2

    if tuple(image.shape[-2:]) == (resolution, resolution):
        return v2.Grayscale(num_output_channels=channels)(image) if image.shape[-3] != channels else image
    return eval_bytes(image, resolution, channels)


# --- 3. int8 ----------------------------------------------------------------------------------

def matching_normalization(scale: float, zero_point: int) -> Normalization | None:
    """The normalization an int8 input quantization was calibrated for, or None."""
    if not scale or scale <= 0:
        return None
    for norm in NORMALIZATIONS.values():
        steps = (norm.high - norm.low) / scale
        lowest, highest = (-128 - zero_point) * scale, (127 - zero_point) * scale
        if abs(steps - 255) <= 2.55 and abs(lowest - norm.low) <= 1.01 * scale \
                and abs(highest - norm.high) <= 1.01 * scale:
            return norm
    return None


def byte_to_int8(scale: float, zero_point: int, source: str = "the model") -> np.ndarray:
    """int8 [256]: the model input for each camera byte (see the module docstring)."""
    norm = matching_normalization(scale, zero_point)
    if norm is None:
        raise UserError(f"{source} quantizes its input with scale {scale:.6g} and zero point {zero_point}, "
                        "which maps no byte range one to one (expected [-1, 1] as 1/127.5, -1 or [0, 1] as "
                        "1/255, -128): vwwtorch cannot feed it camera bytes")
    real = np.arange(256, dtype=np.float64) / norm.divisor + norm.offset
    # Ties go up; the tiny term keeps a scale stored in float32 (1/127.5 is not exact) from
    # turning a tie into a round-down.
    return np.clip(np.floor(real / scale + zero_point + 0.5 + 1e-3), -128, 127).astype(np.int8)
