"""What training and evaluation do to an image before the model sees it.

Train: slim's inception preprocessing, described by `Augmentation` (random distorted crop with area
and aspect ranges, resize to the model resolution, random horizontal flip, brightness/contrast
jitter, then grayscale/RGB and the input scaling), applied a batch at a time on the training device
by `vwwtorch.data.batch_augmentation`.
Eval: the deployment rule (`vwwtorch.contract.deployment.eval_bytes`: central crop of 87.5%,
resize, gray/RGB, in bytes), then the same scaling, one image at a time.

Inputs are uint8 tensors [C, H, W] straight from the memory-mapped dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

from vwwtorch.contract.deployment import SYMMETRIC, eval_bytes, normalization


@dataclass
class Augmentation:
    """Train-time distortions; each can be switched off (a range of (1, 1) or 0 disables it).
    The ranges mean what torchvision's RandomResizedCrop (scale, ratio) and ColorJitter's mean."""

    crop_area: tuple[float, float] = (0.05, 1.0)
    crop_aspect: tuple[float, float] = (0.75, 4 / 3)
    hflip: bool = True
    brightness: float = 0.125  # ColorJitter's factor 1 +- 0.125, what every config sets (slim adds +-32/255)
    contrast: float = 0.5  # slim: random_contrast lower 0.5, upper 1.5

    @property
    def crops(self) -> bool:
        return tuple(self.crop_area) != (1.0, 1.0) or tuple(self.crop_aspect) != (1.0, 1.0)

    @property
    def random(self) -> bool:
        """Whether any distortion is on: then no two epochs see the same training input."""
        return self.crops or bool(self.hflip) or bool(self.brightness) or bool(self.contrast)


def eval_transform(resolution: int, model_channels: int, input_range: str = SYMMETRIC.name):
    """uint8 [C, H, W] -> the float input the model is evaluated on."""
    norm = normalization(input_range)
    return lambda image: norm.real(eval_bytes(image, resolution, model_channels))
