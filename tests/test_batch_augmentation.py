"""The batched augmentation draws from the distributions torchvision's per-image transforms draw from.

The reference is torchvision itself (RandomResizedCrop, RandomHorizontalFlip, ColorJitter, one image
at a time, as a per-image pipeline would use them). Both run on images built so that the output
shows the drawn parameters: coordinate ramps reveal the crop's area, aspect and direction (flip), and
a flat or noisy image reveals brightness and contrast. Two-sample Kolmogorov-Smirnov distances
compare the distributions; each crop is also checked against torchvision's resize of that crop.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from vwwtorch.data.batch_augmentation import BatchAugmentation, sample_crops
from vwwtorch.data.transforms import Augmentation

SIZE, OUT, SAMPLES = 128, 48, 3000
KS_LIMIT = 0.05  # ~ the 0.1% critical value for two samples of 3000


def torchvision_pipeline(aug: Augmentation, channels: int):
    steps = [v2.RandomResizedCrop(OUT, scale=aug.crop_area, ratio=aug.crop_aspect, antialias=True)]
    if aug.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if aug.brightness or aug.contrast:
        steps.append(v2.ColorJitter(brightness=(1 - aug.brightness, 1 + aug.brightness) if aug.brightness else None,
                                    contrast=(1 - aug.contrast, 1 + aug.contrast) if aug.contrast else None))
    return v2.Compose(steps)


def both(image: torch.Tensor, aug: Augmentation) -> tuple[torch.Tensor, torch.Tensor]:
    """SAMPLES augmented copies of one uint8 [C, H, W] image from each side, as bytes (float)."""
    torch.manual_seed(0)
    pipeline = torchvision_pipeline(aug, image.shape[0])
    reference = torch.stack([pipeline(image) for _ in range(SAMPLES)]).float()
    batched = BatchAugmentation(OUT, aug, image.shape[0], image.shape[0], "[0, 1]")
    ours = torch.cat([batched(image.expand(500, -1, -1, -1), seed) for seed in range(SAMPLES // 500)]) * 255
    return reference, ours


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    points = np.concatenate([a, b])
    cdf = lambda sample: np.searchsorted(np.sort(sample), points, side="right") / len(sample)  # noqa: E731
    return float(np.abs(cdf(a) - cdf(b)).max())


def ramps() -> torch.Tensor:
    """Channel 0 rises left to right, channel 1 top to bottom, 2 grey levels per pixel."""
    x = torch.arange(SIZE, dtype=torch.uint8) * 2
    return torch.stack([x.expand(SIZE, SIZE), x[:, None].expand(SIZE, SIZE), torch.full((SIZE, SIZE), 128,
                                                                                      dtype=torch.uint8)])


def crop_statistics(out: torch.Tensor) -> dict[str, np.ndarray]:
    """Crop width and height (in input pixels) from the ramps' spans; direction from the x ramp."""
    across = out[:, 0, OUT // 2, -1] - out[:, 0, OUT // 2, 0]
    down = out[:, 1, -1, OUT // 2] - out[:, 1, 0, OUT // 2]
    width, height = across.abs().numpy() / 2 * OUT / (OUT - 1), down.numpy() / 2 * OUT / (OUT - 1)
    return {"area": width * height / SIZE ** 2, "log aspect": np.log(width / height),
            "flipped": (across < 0).numpy().astype(float)}


@pytest.mark.parametrize("area, aspect", [((0.05, 1.0), (0.75, 4 / 3)), ((0.35, 1.0), (0.5, 2.0))])
def test_crop_area_aspect_and_flip_follow_torchvision(area, aspect):
    aug = Augmentation(crop_area=area, crop_aspect=aspect, hflip=True, brightness=0.0, contrast=0.0)
    reference, ours = (crop_statistics(out) for out in both(ramps(), aug))
    for name in ("area", "log aspect"):
        distance = ks_distance(reference[name], ours[name])
        assert distance < KS_LIMIT, f"{name}: KS distance {distance:.3f}"
    assert abs(reference["flipped"].mean() - ours["flipped"].mean()) < 0.04
    assert abs(ours["flipped"].mean() - 0.5) < 0.03
    # The drawn areas cover the range, not just its middle.
    assert ours["area"].min() < area[0] + 0.05 and ours["area"].max() > 0.95


def test_brightness_and_contrast_follow_colorjitter():
    still = dict(crop_area=(1.0, 1.0), crop_aspect=(1.0, 1.0), hflip=False)
    flat = torch.full((1, SIZE, SIZE), 100, dtype=torch.uint8)
    reference, ours = both(flat, Augmentation(**still, brightness=0.4, contrast=0.5))
    distance = ks_distance(reference.mean((1, 2, 3)).numpy(), ours.mean((1, 2, 3)).numpy())
    assert distance < KS_LIMIT, f"brightness: KS distance {distance:.3f}"
    # Two broad levels that clip at either end: mean and spread depend on both factors and on the
    # order they come in (brightness first clips before contrast pulls towards the mean).
    halves = torch.full((1, SIZE, SIZE), 30, dtype=torch.uint8)
    halves[..., SIZE // 2:] = 225
    reference, ours = both(halves, Augmentation(**still, brightness=0.4, contrast=0.5))
    for name, statistic in (("mean", lambda t: t.mean((1, 2, 3))), ("spread", lambda t: t.std((1, 2, 3)))):
        distance = ks_distance(statistic(reference).numpy(), statistic(ours).numpy())
        assert distance < KS_LIMIT, f"{name}: KS distance {distance:.3f}"


def test_each_crop_is_torchvisions_antialiased_resize_of_that_crop():
    aug = Augmentation(crop_area=(0.02, 1.0), crop_aspect=(0.5, 2.0), hflip=False, brightness=0.0, contrast=0.0)
    image = torch.randint(0, 256, (1, SIZE, SIZE), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    batched = BatchAugmentation(OUT, aug, 1, 1, "[0, 1]")
    boxes = batched.parameters(64, SIZE, SIZE, seed=7)["boxes"].int().tolist()
    ours = batched(image.expand(64, -1, -1, -1), seed=7) * 255
    for out, (left, top, right, bottom) in zip(ours, boxes):
        expected = TF.resized_crop(image.float(), top, left, bottom - top, right - left, [OUT, OUT], antialias=True)
        torch.testing.assert_close(out, expected, atol=2e-3, rtol=0)


def test_crop_sampling_falls_back_to_the_central_crop_when_nothing_fits():
    # An aspect range the square image cannot hold at this area: torchvision's central fallback.
    aug = Augmentation(crop_area=(1.0, 1.0), crop_aspect=(2.0, 3.0))
    boxes = sample_crops(4, SIZE, SIZE, aug, torch.Generator().manual_seed(0))
    expected = v2.RandomResizedCrop(OUT, scale=(1.0, 1.0), ratio=(2.0, 3.0)).make_params([torch.zeros(1, SIZE, SIZE)])
    top, left, height, width = (expected[k] for k in ("top", "left", "height", "width"))
    assert boxes.tolist() == [[left, top, left + width, top + height]] * 4


def test_grayscale_and_rgb_conversion_match_torchvision():
    still = Augmentation(crop_area=(1.0, 1.0), crop_aspect=(1.0, 1.0), hflip=False, brightness=0.0, contrast=0.0)
    rgb = torch.randint(0, 256, (2, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    gray = BatchAugmentation(SIZE, still, 3, 1, "[0, 1]")(rgb, seed=0) * 255
    torch.testing.assert_close(gray, TF.rgb_to_grayscale(rgb.float()), atol=1e-3, rtol=0)
    three = BatchAugmentation(SIZE, still, 1, 3, "[-1, 1]")(rgb[:, :1], seed=0)
    torch.testing.assert_close(three, (rgb[:, :1].float() / 127.5 - 1).expand(-1, 3, -1, -1), atol=1e-5, rtol=0)
