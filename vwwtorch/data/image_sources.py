"""Image files read as a stream from where a dataset is published: tar archives, parquet, folders.

Each source yields its images in a fixed order, one `SourceImage` at a time, so a build holds at most
a few chunks of encoded images in memory however large the source is:

* ``.tar``, ``.tar.gz``, ``.tgz`` (Wake Vision's Dataverse archives): read front to back in
  streaming mode, never unpacked to disk. Only regular files with an image suffix count. A member
  larger than `MAX_IMAGE_BYTES` is not read (a 1 MB archive can hold a 1 GiB member of zeros): it
  is an unreadable image, with its size as the reason.
  `want(index)` is asked before a member's bytes are read, so a resumed build skips the data of the
  chunks it already has (the gzip stream is still read through: it cannot be entered midway).
* ``.parquet`` (the Hugging Face distribution): a column ``image`` holding ``{bytes, path}``
  structs plus ``filename``, ``person`` and the fine-grained columns, read batch by batch.
* a folder: its image files, sorted by path.

The sha256 of an archive is computed from the bytes as they stream past (no second read).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from vwwtorch.plumbing.errors import UserError
from vwwtorch.contract.images import IMAGE_SUFFIXES, MAX_IMAGE_BYTES
from vwwtorch.plumbing.names import printable

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
PARQUET_SUFFIX = ".parquet"
PARQUET_BATCH = 256


@dataclass
class SourceImage:
    """One image of a source: its name, and its bytes or (for folders) its path."""

    index: int  # position among the source's images
    name: str  # base file name: the key into the metadata
    data: bytes | None = None
    path: str | None = None
    columns: dict = field(default_factory=dict)  # parquet: the row's other columns
    error: str | None = None  # why its bytes were not read (an oversized archive member)


def kind_of(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        return "folder"
    if name.endswith(ARCHIVE_SUFFIXES):
        return "archive"
    if name.endswith(PARQUET_SUFFIX):
        return "parquet"
    raise UserError(f"--images {printable(path)} is not a folder, a .tar/.tar.gz/.tgz archive or a .parquet file")


def check_source(path: Path) -> str:
    if not path.exists():
        raise UserError(f"--images {printable(path)} does not exist")
    return kind_of(path)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


class _HashingReader(io.RawIOBase):
    """A read-only file that hashes every byte handed out (tar reads an archive once, in order)."""

    def __init__(self, handle):
        self.handle = handle
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.handle.readinto(buffer)
        if count:
            self.digest.update(memoryview(buffer)[:count])
        return count


@dataclass
class SourceDigest:
    """Filled in when a source has been read to its end."""

    sha256: str | None = None


def _archive_images(path: Path, want: Callable[[int], bool], digest: SourceDigest) -> Iterator[SourceImage]:
    with open(path, "rb", buffering=0) as raw:
        hashing = _HashingReader(raw)
        buffered = io.BufferedReader(hashing, buffer_size=1 << 20)
        try:
            with tarfile.open(fileobj=buffered, mode="r|*") as archive:
                index = 0
                for member in archive:
                    if not member.isfile() or not is_image_name(member.name):
                        continue
                    data, error, name = None, None, os.path.basename(member.name)
                    if member.size > MAX_IMAGE_BYTES:
                        error = (f"image {printable(name)} is {member.size:,} bytes in the archive, more than the "
                                 f"{MAX_IMAGE_BYTES:,} vwwtorch reads as one image")
                    elif want(index):
                        handle = archive.extractfile(member)
                        data = handle.read() if handle is not None else None
                    yield SourceImage(index=index, name=name, data=data, error=error)
                    index += 1
            while buffered.read(1 << 20):  # padding after the end-of-archive marker: hash it too
                pass
        except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
            raise UserError(f"cannot read archive {printable(path)}: {_short(exc)} (damaged or truncated "
                            "download? compare its sha256 with the published one)") from None
    digest.sha256 = hashing.digest.hexdigest()


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def folder_files(path: Path) -> list[Path]:
    """Image files under a folder, sorted, hidden files and folders left out."""
    files = []
    for file in path.rglob("*"):
        relative = file.relative_to(path)
        if any(part.startswith(".") for part in relative.parts) or not is_image_name(file.name):
            continue
        if file.is_file():
            files.append(file)
    return sorted(files, key=lambda p: p.relative_to(path).as_posix())


def _folder_images(path: Path, digest: SourceDigest) -> Iterator[SourceImage]:
    for index, file in enumerate(folder_files(path)):
        yield SourceImage(index=index, name=file.name, path=os.fspath(file))
    # A folder has no one file to hash: its digest stays None.


def parquet_columns(path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"cannot read parquet file {printable(path)}: {_short(exc)}") from None


def _parquet_image(cell) -> tuple[bytes | None, str | None, str | None]:
    """(encoded bytes, stored file name, why there are no bytes) of an `image` cell: the Hugging Face
    `{bytes, path}` struct, or plain binary as other writers store it."""
    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell), None, None
    if isinstance(cell, dict):
        data, name = cell.get("bytes"), cell.get("path")
        if isinstance(data, (bytes, bytearray)):
            return bytes(data), name if isinstance(name, str) else None, None
        return None, name if isinstance(name, str) else None, "its 'image' cell holds no bytes"
    return None, None, f"its 'image' cell holds {type(cell).__name__}, not image bytes"


def _parquet_images(path: Path, want: Callable[[int], bool], digest: SourceDigest,
                    label_columns: list[str]) -> Iterator[SourceImage]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vwwtorch.plumbing.hashing import sha256_file

    columns = parquet_columns(path)
    if "image" not in columns:
        raise UserError(f"{printable(path)} has no 'image' column (it has: {', '.join(columns)}); "
                        "is it a Wake Vision parquet shard?")
    wanted = ["image"] + [c for c in ["filename", *label_columns] if c in columns]
    try:
        reader = pq.ParquetFile(path)
        index = 0
        for batch in reader.iter_batches(batch_size=PARQUET_BATCH, columns=wanted):
            rows = batch.to_pylist()
            for row in rows:
                data, stored_name, error = _parquet_image(row.pop("image"))
                name = os.path.basename(str(row.pop("filename", None) or stored_name or f"row{index:09d}.jpg"))
                if error is not None:
                    data, error = None, f"image {printable(name)} in {printable(path.name)}: {error}"
                yield SourceImage(index=index, name=name, data=data if want(index) else None, columns=row,
                                  error=error)
                index += 1
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"cannot read parquet file {printable(path)}: {_short(exc)}") from None
    digest.sha256 = sha256_file(path)


def iterate(path: Path, want: Callable[[int], bool], digest: SourceDigest,
            label_columns: list[str] = ()) -> Iterator[SourceImage]:
    """The images of one source in their fixed order; `digest` gets the source's sha256 at the end."""
    kind = kind_of(path)
    if kind == "archive":
        return _archive_images(path, want, digest)
    if kind == "parquet":
        return _parquet_images(path, want, digest, list(label_columns))
    return _folder_images(path, digest)
