"""Apply a unified diff (as `git format-patch` writes it) to a source tree, in pure Python.

TFLM ships `flatbuffers.patch`, which must be applied to the pinned flatbuffers tree. Doing it here
means `firmware deps` needs neither `patch` nor `git` on the user's machine. Only what such patches
use is supported: modified files (no renames, no binary hunks), hunks found at their line number or
shifted by a few lines; context must match exactly, so a patch never lands half-applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class PatchError(Exception):
    """The patch does not apply to this tree (wrong version, or already applied)."""


@dataclass
class Hunk:
    old_start: int
    old_lines: list[str] = field(default_factory=list)
    new_lines: list[str] = field(default_factory=list)


@dataclass
class FilePatch:
    path: str
    hunks: list[Hunk] = field(default_factory=list)


def parse_patch(text: str) -> list[FilePatch]:
    lines = text.splitlines(keepends=True)
    files: list[FilePatch] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            target = lines[i + 1][4:].strip().split("\t")[0]
            if target == "/dev/null":
                raise PatchError("patches that delete files are not supported")
            files.append(FilePatch(target[2:] if target.startswith("b/") else target))
            i += 2
            continue
        match = HUNK_HEADER.match(line)
        if match:
            if not files:
                raise PatchError("hunk before any file header")
            old_count = int(match.group(2) or 1)
            new_count = int(match.group(4) or 1)
            hunk = Hunk(old_start=int(match.group(1)))
            i += 1
            # The counts in the header say where the hunk ends; trailing text (a mail signature
            # starting with "-- ") must not be read as removed lines.
            while (old_count or new_count) and i < len(lines):
                body = lines[i]
                tag, content = body[:1], body[1:]
                if body.startswith("\\"):
                    i += 1
                    continue
                if tag in (" ", "\n", "\r"):
                    content = content if tag == " " else body
                    hunk.old_lines.append(content)
                    hunk.new_lines.append(content)
                    old_count -= 1
                    new_count -= 1
                elif tag == "-":
                    hunk.old_lines.append(content)
                    old_count -= 1
                elif tag == "+":
                    hunk.new_lines.append(content)
                    new_count -= 1
                else:
                    raise PatchError(f"malformed hunk line: {body.rstrip()!r}")
                i += 1
            if old_count > 0 or new_count > 0:
                raise PatchError("patch ends inside a hunk")
            files[-1].hunks.append(hunk)
            continue
        i += 1
    if not files:
        raise PatchError("no file changes found in the patch")
    return files


def _apply_hunks(original: list[str], hunks: list[Hunk], name: str, max_shift: int = 50) -> list[str]:
    result = list(original)
    delta = 0  # how far earlier hunks moved the lines below them
    for number, hunk in enumerate(hunks, start=1):
        expected = hunk.old_start - 1 + delta if hunk.old_lines else hunk.old_start + delta
        span = len(hunk.old_lines)
        for shift in sorted(range(-max_shift, max_shift + 1), key=abs):
            at = expected + shift
            if 0 <= at <= len(result) - span and result[at:at + span] == hunk.old_lines:
                result[at:at + span] = hunk.new_lines
                delta += len(hunk.new_lines) - span
                break
        else:
            raise PatchError(f"hunk {number} of {name} does not match the file")
    return result


def apply_patch(text: str, root: Path) -> list[str]:
    """Apply every file change in `text` under `root`; returns the changed paths.

    All files are checked before any is written, so a failing patch leaves the tree untouched.
    """
    root = Path(root)
    updated: dict[Path, str] = {}
    for file_patch in parse_patch(text):
        path = root / file_patch.path
        if not path.is_file():
            raise PatchError(f"{file_patch.path} is not in the tree")
        original = path.read_text(encoding="utf-8").splitlines(keepends=True)
        updated[path] = "".join(_apply_hunks(original, file_patch.hunks, file_patch.path))
    for path, content in updated.items():
        path.write_text(content, encoding="utf-8")
    return [str(p.relative_to(root)) for p in updated]
