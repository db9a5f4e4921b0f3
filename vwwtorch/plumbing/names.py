"""File names (and any other text from a file) as text that can always be printed, written to
CSV/JSON and used as labels.

Linux file names are bytes; Python decodes the ones that are not UTF-8 (a latin-1 `café.jpg`) into
lone surrogates, which open() accepts but every UTF-8 writer refuses. `printable` shows such bytes
as `\\xe9` escapes instead; the real path is still what the file is opened with. Control characters
(an escape sequence in a CSV's file name would recolour or rewrite the terminal) and the
invisible direction overrides are shown as escapes too.
"""

from __future__ import annotations

import os

_ESCAPED = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_ESCAPED.update({c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))})


def printable(name: str | os.PathLike | bytes) -> str:
    if isinstance(name, bytes):
        raw = name
    else:
        try:
            raw = os.fsencode(name)
        except UnicodeEncodeError:  # a lone surrogate no file name can hold (from JSON, say)
            raw = os.fspath(name).encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace").translate(_ESCAPED)
