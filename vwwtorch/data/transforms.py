"""Preprocessing with torchvision transforms v2, reproducing slim's inception preprocessing.

Train: random distorted crop (area and aspect ranges), resize to the model resolution, random
horizontal flip, brightness/contrast jitter, then grayscale/RGB, then x / 127.5 - 1.
Eval: the deployment rule (`vwwtorch.contract.deployment.eval_bytes`: central crop of 87.5%,
resize, gray/RGB, in bytes), then the same scaling.

Inputs are uint8 tensors [C, H, W] straight from the memory-mapped dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from vwwtorch.contract.deployment import SYMMETRIC, eval_bytes, normalization


@dataclass
class Augmentation:
    """Train-time distortions; each can be switched off (a range of (1, 1) or 0 disables it)."""

    crop_area: tuple[float, float] = (0.05, 1.0)
    crop_aspect: tuple[float, float] = (0.75, 4 / 3)
    hflip: bool = True
    brightness: float = 32.0 / 255.0  # slim: random_brightness max_delta 32/255
    contrast: float = 0.5  # slim: random_contrast lower 0.5, upper 1.5


def scale_to_unit_range(x: torch.Tensor, input_range: str = SYMMETRIC.name) -> torch.Tensor:
    """uint8 [0, 255] -> the model's real input range: [-1, 1] as x / 127.5 - 1 (slim's), or [0, 1]."""
    return normalization(input_range).real(x)


def channel_conversion(data_channels: int, model_channels: int) -> list:
    if data_channels == model_channels:
        return []
    if model_channels == 1:
        return [v2.Grayscale(num_output_channels=1)]
    return [v2.Grayscale(num_output_channels=3)]  # gray -> 3 identical channels


def train_transform(resolution: int, aug: Augmentation, data_channels: int, model_channels: int,
                    input_range: str = SYMMETRIC.name):
    steps: list = []
    if tuple(aug.crop_area) != (1.0, 1.0) or tuple(aug.crop_aspect) != (1.0, 1.0):
        steps.append(v2.RandomResizedCrop(resolution, scale=tuple(aug.crop_area), ratio=tuple(aug.crop_aspect),
                                          antialias=True))
    else:
        steps.append(v2.Resize((resolution, resolution), antialias=True))
    if aug.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if aug.brightness or aug.contrast:
        contrast = (max(0.0, 1 - aug.contrast), 1 + aug.contrast) if aug.contrast else None
        steps.append(v2.ColorJitter(brightness=(max(0.0, 1 - aug.brightness), 1 + aug.brightness)
                                    if aug.brightness else None, contrast=contrast))
    steps += channel_conversion(data_channels, model_channels)
    steps.append(v2.Lambda(normalization(input_range).real))
    return v2.Compose(steps)


def eval_transform(resolution: int, model_channels: int, input_range: str = SYMMETRIC.name):
    """uint8 [C, H, W] -> the float input the model is evaluated on."""
    norm = normalization(input_range)
    return lambda image: norm.real(eval_bytes(image, resolution, model_channels))
