"""Train-time augmentation for a whole batch at once, on the device that trains.

The distortions `vwwtorch.data.transforms.Augmentation` describes (slim's inception preprocessing),
drawn from the distributions of torchvision's RandomResizedCrop, RandomHorizontalFlip and
ColorJitter (what a per-image pipeline would use), but as a few tensor operations over the batch
instead of one Python pipeline per image:

- random area/aspect crop plus resize: torchvision's RandomResizedCrop rule (10 tries, then the
  central fallback) vectorised over the batch. Crop, antialiased bilinear resize and flip are one
  pair of per-image matrices (rows x crop, crop x columns) holding the weights torchvision's
  antialiased resize uses, so two batched matrix products do all three;
- brightness and contrast in a random order per image (ColorJitter's);
- grayscale or RGB conversion and the model's input scaling.

Pixels stay float from the crop on (torchvision rounds to uint8 after each step; the difference is
under one grey level). The random numbers are drawn on the CPU from a generator seeded per batch,
so the result does not depend on the device, and a resumed run redraws exactly the same batches.
"""

from __future__ import annotations

import math

import torch

from vwwtorch.contract.deployment import normalization
from vwwtorch.data.transforms import Augmentation

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
CROP_TRIES = 10


def sample_crops(count: int, height: int, width: int, aug: Augmentation, generator: torch.Generator
                 ) -> torch.Tensor:
    """[count, 4] crop boxes (x0, y0, x1, y1) in pixels, drawn as RandomResizedCrop draws them."""
    area_low, area_high = aug.crop_area
    log_low, log_high = math.log(aug.crop_aspect[0]), math.log(aug.crop_aspect[1])
    uniform = torch.rand(count, CROP_TRIES, 4, generator=generator, dtype=torch.float64)
    area = height * width * (area_low + (area_high - area_low) * uniform[..., 0])
    aspect = torch.exp(log_low + (log_high - log_low) * uniform[..., 1])
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(fits.to(torch.uint8), dim=1)      # the first try that fits
    rows = torch.arange(count)
    w, h, uniform = w[rows, first], h[rows, first], uniform[rows, first]
    # randint(0, n - size + 1) from a uniform draw
    top = torch.floor(uniform[:, 2] * (height - h + 1)).clamp(max=height - h)
    left = torch.floor(uniform[:, 3] * (width - w + 1)).clamp(max=width - w)

    none_fit = ~fits.any(dim=1)
    if none_fit.any():
        fw, fh = _central_fallback(height, width, aug.crop_aspect)
        w, h = torch.where(none_fit, fw, w), torch.where(none_fit, fh, h)
        top = torch.where(none_fit, float((height - fh) // 2), top)
        left = torch.where(none_fit, float((width - fw) // 2), left)
    return torch.stack([left, top, left + w, top + h], dim=1).to(torch.float32)


def _central_fallback(height: int, width: int, aspect: tuple[float, float]) -> tuple[int, int]:
    ratio = width / height
    if ratio < min(aspect):
        return width, int(round(width / min(aspect)))
    if ratio > max(aspect):
        return int(round(height * max(aspect))), height
    return width, height


def resize_weights(start: torch.Tensor, size: torch.Tensor, length: int, out: int,
                   mirror: torch.Tensor | None = None) -> torch.Tensor:
    """[N, out, length] weights that crop [start, start + size) from an axis of `length` pixels and
    resize it to `out` pixels: the triangle filter of antialiased bilinear resizing, widened by the
    downscale factor, cut at the crop's edges and normalised per output pixel. Where `mirror` is
    true the output runs backwards (a flip)."""
    scale = size / out
    support = scale.clamp(min=1.0)
    centers = start[:, None] + (torch.arange(out, device=start.device) + 0.5) * scale[:, None]
    if mirror is not None:
        centers = torch.where(mirror[:, None], centers.flip(1), centers)
    pixels = torch.arange(length, device=start.device) + 0.5
    weights = (pixels - centers[..., None]).div_(support[:, None, None]).abs_().neg_().add_(1).clamp_(min=0)
    outside = (pixels < start[:, None]) | (pixels >= (start + size)[:, None])
    weights.masked_fill_(outside[:, None, :], 0)
    return weights.div_(weights.sum(-1, keepdim=True))


def _factor(strength: float, uniform: torch.Tensor) -> torch.Tensor:
    """ColorJitter's factor: uniform on [max(0, 1 - strength), 1 + strength]."""
    low = max(0.0, 1 - strength)
    return low + (1 + strength - low) * uniform


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


class BatchAugmentation:
    """uint8 [B, C, H, W] on any device -> the model's float input [B, C', r, r], channels_last."""

    def __init__(self, resolution: int, aug: Augmentation, data_channels: int, model_channels: int,
                 input_range: str):
        self.resolution, self.aug = resolution, aug
        self.data_channels, self.model_channels = data_channels, model_channels
        self.norm = normalization(input_range)

    @property
    def crops(self) -> bool:
        return self.aug.crops

    def parameters(self, count: int, height: int, width: int, seed: int) -> dict[str, torch.Tensor]:
        """Every random number one batch uses, drawn on the CPU from `seed`."""
        generator = torch.Generator().manual_seed(seed)
        aug = self.aug
        if self.crops:
            boxes = sample_crops(count, height, width, aug, generator)
        else:
            boxes = torch.tensor([[0.0, 0.0, width, height]]).expand(count, 4)
        draws = torch.rand(count, 4, generator=generator)
        return {
            "boxes": boxes,
            "flip": (draws[:, 0] < 0.5) if aug.hflip else torch.zeros(count, dtype=torch.bool),
            "brightness": _factor(aug.brightness, draws[:, 1]),
            "contrast": _factor(aug.contrast, draws[:, 2]),
            "contrast_first": draws[:, 3] < 0.5,
        }

    def __call__(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        count, _, height, width = images.shape
        device = images.device
        p = {k: v.to(device) for k, v in self.parameters(count, height, width, seed).items()}
        left, top, right, bottom = p["boxes"].unbind(1)
        rows = resize_weights(top, bottom - top, height, self.resolution)
        columns = resize_weights(left, right - left, width, self.resolution, mirror=p["flip"])
        x = rows[:, None] @ images.float() @ columns[:, None].transpose(-1, -2)
        x = self._jitter(x, p)
        x = self._channels(x)
        return self.norm.real(x).contiguous(memory_format=torch.channels_last)

    def _jitter(self, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """Brightness (x * b) and contrast (towards the gray mean by c), each clamped to [0, 255], in
        the order drawn per image. Either order is two clamped per-image affine maps, so the batch
        takes two passes whichever order each image has."""
        aug = self.aug
        if not (aug.brightness or aug.contrast):
            return x
        per_image = lambda v: v.to(x.dtype)[:, None, None, None]  # noqa: E731
        # A switched-off distortion has factor 1 (see `_factor`), so either order gives the other alone.
        b, c, contrast_first = p["brightness"], p["contrast"], p["contrast_first"]
        mean_before = _gray(x).mean(dim=(1, 2, 3))
        first_scale = torch.where(contrast_first, c, b)
        first_shift = torch.where(contrast_first, (1 - c) * mean_before, torch.zeros_like(c))
        inner = (x * per_image(first_scale) + per_image(first_shift)).clamp_(0, 255)
        mean_between = _gray(inner).mean(dim=(1, 2, 3))
        second_scale = torch.where(contrast_first, b, c)
        second_shift = torch.where(contrast_first, torch.zeros_like(c), (1 - c) * mean_between)
        return inner.mul_(per_image(second_scale)).add_(per_image(second_shift)).clamp_(0, 255)

    def _channels(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_channels == self.model_channels:
            return x
        if self.model_channels == 1:
            return _gray(x)
        return x.expand(-1, 3, -1, -1)  # gray data, RGB model: three equal channels
