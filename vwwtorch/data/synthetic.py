"""The built-in dataset: 128x128 grayscale scenes with or without a person-like figure.

Every scene has a textured background, clutter (blobs, bars, sticks and rings, the same kinds of
shapes a figure is made of) and sensor noise. A "person" scene adds a stick-and-blob figure: a head,
a torso and four limbs whose joint angles, size, position, lean and contrast polarity vary. Single
parts therefore appear in both classes; only their arrangement tells a person apart. That is why a
linear model on pixels stays near chance while a small CNN learns it in a few CPU minutes.

Scenes are a pure function of (seed, split, index), so a dataset is reproducible bit for bit.
"""

from __future__ import annotations

import math
import os
import shutil
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.outputs import check_folder
from vwwtorch.data.format import DatasetWriter

CLASSES = ["no_person", "person"]
SIZE = 128


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    # crc32 of the split name keeps splits disjoint for any seed without Python's salted hash().
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


def _background(rng: np.random.Generator) -> np.ndarray:
    """Smooth illumination gradient plus low-frequency texture, float in [0, 255]."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    base = rng.uniform(60, 190)
    gx, gy = rng.uniform(-60, 60, size=2)
    img = base + gx * (xx - 0.5) + gy * (yy - 0.5)
    coarse = rng.normal(0, rng.uniform(5, 25), size=(8, 8)).astype(np.float32)
    texture = np.asarray(Image.fromarray(coarse, mode="F").resize((SIZE, SIZE), Image.BICUBIC))
    return img + texture


def _tone(rng: np.random.Generator, level: float) -> int:
    """A fill value clearly darker or brighter than the local background (random polarity)."""
    delta = rng.uniform(45, 100) * (1 if rng.random() < 0.5 else -1)
    value = level + delta
    if not 0 <= value <= 255:
        value = level - delta
    return int(np.clip(value, 0, 255))


def _draw_clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, level: float, n: int) -> None:
    for _ in range(n):
        kind = rng.integers(0, 4)
        cx, cy = rng.uniform(0, SIZE, size=2)
        fill = _tone(rng, level)
        if kind == 0:  # blob (head-like)
            r = rng.uniform(3, 14)
            draw.ellipse([cx - r, cy - r * rng.uniform(0.6, 1.4), cx + r, cy + r], fill=fill)
        elif kind == 1:  # bar / box (torso-like)
            w, h = rng.uniform(4, 30, size=2)
            draw.rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=fill)
        elif kind == 2:  # stick (limb-like)
            length, angle = rng.uniform(10, 45), rng.uniform(0, math.pi)
            dx, dy = length * math.cos(angle) / 2, length * math.sin(angle) / 2
            draw.line([cx - dx, cy - dy, cx + dx, cy + dy], fill=fill, width=int(rng.integers(2, 6)))
        else:  # ring
            r = rng.uniform(5, 18)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=int(rng.integers(1, 4)))


def _limb(draw, start, angle: float, length: float, width: int, fill: int, bend: float):
    """Two-segment limb (upper + lower) from `start`; returns nothing, draws in place."""
    x0, y0 = start
    x1 = x0 + length * 0.5 * math.sin(angle)
    y1 = y0 + length * 0.5 * math.cos(angle)
    x2 = x1 + length * 0.5 * math.sin(angle + bend)
    y2 = y1 + length * 0.5 * math.cos(angle + bend)
    draw.line([x0, y0, x1, y1, x2, y2], fill=fill, width=width, joint="curve")


def _draw_person(draw: ImageDraw.ImageDraw, rng: np.random.Generator, level: float) -> None:
    height = rng.uniform(0.45, 0.95) * SIZE
    cx = rng.uniform(0.25, 0.75) * SIZE
    top = rng.uniform(0.02 * SIZE, SIZE - height * 0.95)
    fill = _tone(rng, level)
    lean = rng.normal(0, 0.15)  # whole-body tilt in radians

    head_r = height * rng.uniform(0.075, 0.1)
    torso_len = height * rng.uniform(0.3, 0.36)
    leg_len = height * rng.uniform(0.42, 0.5)
    arm_len = height * rng.uniform(0.3, 0.4)
    limb_w = max(2, int(height * rng.uniform(0.045, 0.07)))
    torso_w = height * rng.uniform(0.1, 0.16)

    head_c = (cx, top + head_r)
    neck = (cx + math.sin(lean) * head_r, top + 2 * head_r)
    hip = (neck[0] + math.sin(lean) * torso_len, neck[1] + math.cos(lean) * torso_len)
    shoulder = (neck[0] + math.sin(lean) * torso_len * 0.12, neck[1] + math.cos(lean) * torso_len * 0.12)

    draw.ellipse([head_c[0] - head_r, head_c[1] - head_r, head_c[0] + head_r, head_c[1] + head_r], fill=fill)
    draw.line([neck, hip], fill=fill, width=max(limb_w + 1, int(torso_w)))
    for side in (-1, 1):
        arm_angle = lean + side * rng.uniform(0.2, 2.4)
        _limb(draw, shoulder, arm_angle, arm_len, limb_w, fill, bend=side * rng.uniform(-0.6, 1.0))
        leg_angle = lean + side * rng.uniform(0.05, 0.6)
        _limb(draw, hip, leg_angle, leg_len, limb_w, fill, bend=side * rng.uniform(-0.5, 0.2))


def render_scene(seed: int, split: str, index: int, person: bool) -> np.ndarray:
    """One uint8 [128, 128] scene."""
    rng = _rng(seed, split, index)
    bg = _background(rng)
    level = float(bg.mean())
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), mode="L")
    draw = ImageDraw.Draw(canvas)
    n_clutter = int(rng.integers(3, 9))
    # Figures sit among the clutter, not always on top of it.
    before = int(rng.integers(0, n_clutter + 1))
    _draw_clutter(draw, rng, level, before)
    if person:
        _draw_person(draw, rng, level)
    else:
        # Keep the amount of "ink" similar: empty scenes get a few extra distractors.
        _draw_clutter(draw, rng, level, int(rng.integers(1, 4)))
    _draw_clutter(draw, rng, level, n_clutter - before)
    if rng.random() < 0.5:
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    img = np.asarray(canvas, dtype=np.float32)
    img = img * rng.uniform(0.6, 1.2) + rng.uniform(-20, 20)  # exposure
    img += rng.normal(0, rng.uniform(2, 12), size=img.shape)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def render_split(seed: int, split: str, count: int, on_image=None, out: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Balanced split: even indices are person-free, odd ones hold a person. Renders into `out` when
    given (a memory map of the split's images.npy), else into a new array."""
    images = out if out is not None else np.empty((count, SIZE, SIZE, 1), dtype=np.uint8)
    labels = np.arange(count, dtype=np.int64) % 2
    for i in range(count):
        images[i, :, :, 0] = render_scene(seed, split, i, bool(labels[i]))
        if on_image is not None:
            on_image()
    return images, labels


def check_request(train: int, val: int, test: int, seed: int, out: str | os.PathLike, overwrite: bool) -> Path:
    """The checked output folder; impossible requests are refused before anything is allocated or written."""
    target = check_folder(out, overwrite=overwrite)
    if min(train, val) <= 0 or test < 0:
        raise UserError("--train and --val must be positive and --test non-negative")
    if not 0 <= seed < 2 ** 63:
        raise UserError(f"--seed must be a non-negative integer below 2**63, got {seed}")
    need = (train + val + test) * SIZE * SIZE + (1 << 20)
    free = shutil.disk_usage(target.parent).free
    if need > free:
        raise UserError(f"{train + val + test:,} images need {need / 1e9:,.1f} GB but {target.parent} has "
                        f"{free / 1e9:,.1f} GB free; ask for fewer images")
    return target


def generate(out: str, *, train: int = 6000, val: int = 1000, test: int = 1000, seed: int = 0,
             overwrite: bool = False, progress: bool = True) -> str:
    """Write the built-in dataset to `out` in the vwwtorch dataset format."""
    from vwwtorch.plumbing.progress import progress_bar

    out = check_request(train, val, test, seed, out, overwrite)
    splits = {"train": train, "val": val, "test": test}
    with DatasetWriter(out, classes=CLASSES, image_size=(SIZE, SIZE), channels=1, overwrite=overwrite,
                       provenance={"source": "synthetic", "seed": seed, "generator": __name__}) as writer, \
            progress_bar(total=sum(splits.values()), desc="rendering scenes", unit="img", disable=not progress) as bar:
        for split, count in splits.items():
            if count <= 0:
                continue
            images = writer.open_images(split, count)
            _, labels = render_split(seed, split, count, on_image=bar.update, out=images)
            images.flush()
            del images
            writer.write_split(split, None, labels, ids=np.arange(count, dtype=np.int64))
        return str(writer.finish())
