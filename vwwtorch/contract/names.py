"""File names as text that can always be printed, written to CSV/JSON and used as labels.

Linux file names are bytes; Python decodes the ones that are not UTF-8 (a latin-1 `café.jpg`) into
lone surrogates, which open() accepts but every UTF-8 writer refuses. `printable` shows such bytes
as `\\xe9` escapes instead; the real path is still what the file is opened with.
"""

from __future__ import annotations

import os


def printable(name: str | os.PathLike) -> str:
    return os.fsencode(name).decode("utf-8", "backslashreplace")
