"""`vwwtorch data show`: a grid of dataset images, each framed and captioned with its label.

Positive images (label 1, e.g. person) get a green frame, the others grey, so a sheet of 64 can be
checked for label mistakes at a glance. Images are shown at their stored size, never smaller than
96 px, with the COCO id under each so a doubtful one can be looked up.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vwwtorch.data.format import open_split, read_meta
from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.outputs import check_file, staged_file

FRAME = 3
CAPTION = 14
MIN_TILE = 96
COLOURS = [(150, 150, 150), (40, 190, 60), (220, 120, 30), (60, 120, 230)]  # label 0, 1, 2, 3...


def _tile(image: np.ndarray, side: int) -> Image.Image:
    picture = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).convert("RGB")
    return picture.resize((side, side), Image.Resampling.NEAREST) if picture.size[0] != side else picture


def write_contact_sheet(root: str | os.PathLike, out: str | os.PathLike, *, n: int = 64, split: str | None = None,
                        seed: int = 0) -> tuple[Path, int, str]:
    """Write the sheet to `out` (format from its suffix); returns (path, images shown, split)."""
    root, out = Path(root), Path(out)
    if n < 1:
        raise UserError("--n must be at least 1")
    extensions = Image.registered_extensions()
    if out.suffix.lower() not in extensions:
        raise UserError(f"cannot tell the image format from {out.name!r}; use a .png or .jpg name")
    out = check_file(out)
    meta = read_meta(root)
    split = split or ("val" if "val" in meta["splits"] else next(iter(meta["splits"])))
    arrays = open_split(root, split, meta)
    if len(arrays) == 0:
        raise UserError(f"split {split!r} of {root} is empty")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(arrays), size=min(n, len(arrays)), replace=False))

    side = max(MIN_TILE, meta["image_size"][1])
    cell_w, cell_h = side + 2 * FRAME, side + 2 * FRAME + CAPTION
    cols = math.ceil(math.sqrt(len(chosen)))
    rows = math.ceil(len(chosen) / cols)
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    classes = meta["classes"]
    for k, index in enumerate(chosen):
        x, y = (k % cols) * cell_w, (k // cols) * cell_h
        label = int(arrays.labels[index])
        colour = COLOURS[label % len(COLOURS)]
        draw.rectangle([x, y, x + cell_w - 1, y + side + 2 * FRAME - 1], fill=colour)
        sheet.paste(_tile(np.asarray(arrays.images[index]), side), (x + FRAME, y + FRAME))
        name = classes[label] if 0 <= label < len(classes) else f"label {label}"
        draw.text((x + FRAME, y + side + 2 * FRAME), f"{name} #{arrays.ids[index]}", fill=colour, font=font)

    with staged_file(out, "wb", checked=True) as handle:
        sheet.save(handle, format=extensions[out.suffix.lower()])
    return out, len(chosen), split
