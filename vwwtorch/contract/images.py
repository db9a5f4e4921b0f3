"""Image files to uint8 pixels, one decoder for every command that reads pictures.

- EXIF orientation is applied (a phone picture is upright, as the user saw it) unless `exif=False`
  (COCO: its annotations refer to the stored pixels).
- Palette, CMYK, 16-bit and alpha images go through RGB, then to gray (L, ITU-R 601 luma) or RGB.
- A file whose header promises more than `MAX_PIXELS` pixels is refused before it is decoded: a
  100 KB PNG can claim 900 megapixels (a decompression bomb) and exhaust memory.
- Every failure is a `UserError` naming the file, one line.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.names import printable

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".gif", ".tif", ".tiff", ".webp"})
MAX_PIXELS = 64_000_000  # 8000 x 8000: far above any camera frame a VWW model sees
# The largest encoded image read into memory (an archive member): 64 megapixels of 8-bit gray, more
# than any JPEG or PNG of `MAX_PIXELS` pixels a camera writes.
MAX_IMAGE_BYTES = MAX_PIXELS


def _open(path):
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)


def decode_image(path: str | os.PathLike, channels: int, *, exif: bool = True,
                 draft: tuple[int, int] | None = None, data: bytes | None = None):
    """A PIL image in mode L (channels=1) or RGB (3), fully decoded; `draft` lets JPEG decode at a
    reduced size no smaller than it (DCT-domain scaling). With `data`, the image is those bytes (an
    archive member) and `path` only names it in messages."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    mode = "L" if channels == 1 else "RGB"
    try:
        with _open(io.BytesIO(data) if data is not None else path) as source:
            if source.width * source.height > MAX_PIXELS:
                raise Image.DecompressionBombError(f"{source.width}x{source.height}")
            if draft is not None:
                source.draft(mode, draft)  # JPEG only; a no-op for other formats
            image = ImageOps.exif_transpose(source) if exif else source
            if image.mode not in ("L", "RGB"):  # palette, CMYK, 16-bit, alpha...: through RGB
                image = image.convert("RGB")
            image = image.convert(mode) if image.mode != mode else image.copy()
            image.load()  # decode now, inside the `with`, so truncation errors surface here
            return image
    except FileNotFoundError:
        raise UserError(f"image {printable(path)} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{printable(path)} is a folder, not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UserError(f"image {printable(path)} claims {_pixels(exc)} pixels, more than the "
                        f"{MAX_PIXELS // 1_000_000} megapixels vwwtorch reads (a decompression bomb?)") from None
    except PermissionError:
        raise UserError(f"cannot read image {printable(path)}: permission denied") from None
    except UnidentifiedImageError:
        raise UserError(f"cannot read image {printable(path)}: not an image file PIL can decode") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"cannot read image {printable(path)}: {printable(str(exc))}") from None


def _pixels(exc: Exception) -> str:
    text = str(exc)
    for word in text.replace("(", " ").replace(")", " ").split():
        if word.isdigit() and int(word) > MAX_PIXELS:
            return f"{int(word):,}"
    return "too many"


def read_pixels(path: str | os.PathLike, channels: int, *, exif: bool = True) -> np.ndarray:
    """uint8 [H, W, channels]."""
    array = np.array(decode_image(path, channels, exif=exif), dtype=np.uint8)  # writable: torch shares it
    return array[:, :, None] if array.ndim == 2 else array
