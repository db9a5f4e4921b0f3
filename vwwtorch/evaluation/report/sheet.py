"""Contact sheet of the most confidently misclassified images.

Each tile shows the stored image (at least 96 px), framed in red, with two caption lines: the
predicted class and its probability, the true class, and the image id (a file path for folder
datasets, a COCO id for VWW). Paths too long for the tile keep their end, where the file name is.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FRAME = 3
CAPTION_LINES = 3
LINE = 12
MIN_TILE = 112
COLUMNS = 8
ERROR_COLOUR = (200, 40, 40)


def sheet_size(count: int, image_side: int) -> tuple[int, int]:
    """(width, height) in pixels of the sheet for `count` images stored at `image_side` pixels."""
    side = max(MIN_TILE, image_side)
    cols = min(COLUMNS, max(1, count))
    rows = max(1, math.ceil(count / cols))
    return cols * (side + 2 * FRAME), rows * (side + 2 * FRAME + CAPTION_LINES * LINE)


def _fit(text: str, draw: ImageDraw.ImageDraw, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("…" + text, font=font) > width:
        text = text[1:]
    return "…" + text


def write_error_sheet(images: np.ndarray, errors: list[dict], out: str | os.PathLike) -> Path:
    """`images`: uint8 [N, H, W, C] of the split; `errors`: `most_confident_errors` entries."""
    out = Path(out)
    side = max(MIN_TILE, images.shape[2] if len(images) else MIN_TILE)
    width, height = sheet_size(len(errors), side)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    cols = min(COLUMNS, max(1, len(errors)))
    cell_w, cell_h = side + 2 * FRAME, side + 2 * FRAME + CAPTION_LINES * LINE
    if not errors:
        draw.text((FRAME, FRAME), "no misclassified images", fill=(0, 0, 0), font=font)
    for k, error in enumerate(errors):
        x, y = (k % cols) * cell_w, (k // cols) * cell_h
        image = np.asarray(images[error["index"]])
        tile = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).convert("RGB")
        tile = tile.resize((side, side), Image.Resampling.NEAREST)
        draw.rectangle([x, y, x + cell_w - 1, y + side + 2 * FRAME - 1], fill=ERROR_COLOUR)
        sheet.paste(tile, (x + FRAME, y + FRAME))
        lines = [f"pred {error['predicted']} {error['confidence']:.2f}", f"true {error['true']}", str(error["id"])]
        for n, line in enumerate(lines):
            draw.text((x + FRAME, y + side + 2 * FRAME + n * LINE), _fit(line, draw, font, side),
                      fill=ERROR_COLOUR if n == 0 else (0, 0, 0), font=font)
    sheet.save(out, format="PNG")
    return out
