"""Small text files a user hands a command (a labels.txt): bounded, UTF-8, one entry per line.

A file that is too large, not text or not UTF-8 is one line naming it, never a traceback, and every
entry is checked to be printable, since labels end up on the terminal and in generated C++ strings.
"""

from __future__ import annotations

import os
from pathlib import Path

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.names import printable

MAX_TEXT_BYTES = 1 << 20  # a label file of a million bytes is already absurd


def read_lines(path: str | os.PathLike, what: str = "labels file") -> list[str]:
    """The non-blank lines of a small UTF-8 text file, stripped."""
    path = Path(path)
    shown = printable(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_TEXT_BYTES:
                raise UserError(f"{what} {shown} is {size:,} bytes; a text file of names is at most "
                                f"{MAX_TEXT_BYTES:,}")
            data = handle.read(MAX_TEXT_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{what} {shown} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{what} {shown} is a folder, not a file") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {shown}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {shown} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                        f"{exc.start:,})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for number, line in enumerate(lines, 1):
        if not line.isprintable():
            raise UserError(f"{what} {shown}: entry {number} ({printable(line)}) holds control characters")
    return lines
