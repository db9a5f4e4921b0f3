"""Reading Wake Vision's published image sources (archives, parquet shards, folders) into chunks.

Each source is streamed in its fixed order; every image is looked up in the metadata catalog (or
carries its own label, for parquet shards), cut into chunks and handed to the worker pool
(`wake_vision_chunks`). What a whole source held is committed as a `SourceRecord`, so a resumed
build skips finished sources.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.names import printable
from vwwtorch.plumbing.outputs import staged_file
from vwwtorch.data import image_sources
from vwwtorch.data.wake_vision_chunks import Dispatcher, chunk_path, is_committed_chunk
from vwwtorch.data.wake_vision_metadata import (FINE_GRAINED, FILENAME, LABEL, SPLITS, UNKNOWN, Catalog,
                                                split_of_name)

NAMES_LISTED = 100  # example names kept in report.json per kind of problem


@dataclass(frozen=True)
class Source:
    path: Path
    kind: str
    split: str | None = None  # parquet without metadata: the split its name says


@dataclass
class SourceRecord:
    """What reading a whole source found (committed as `source-NNN.done.npz`)."""

    rows: np.ndarray  # catalog rows this source held
    members: int = 0
    unlisted: int = 0
    unlisted_names: list[str] = field(default_factory=list)
    duplicates: int = 0
    duplicate_names: list[str] = field(default_factory=list)
    unlabelled: int = 0  # images whose person label is not 0/1 (a parquet row's, or its CSV row's)
    unlabelled_example: str | None = None  # a parquet row's label value that is not 0/1, as text
    sha256: str | None = None


def check_sources(images: list, catalog: Catalog | None) -> list[Source]:
    if not images:
        raise UserError("give at least one --images archive, parquet file or folder")
    sources = []
    for given in images:
        path = Path(given)
        kind = image_sources.check_source(path)
        split = None
        if catalog is None:
            if kind != "parquet":
                raise UserError(f"--images {printable(path)} has no labels of its own: give the metadata CSVs "
                                "with --metadata (only parquet shards carry their labels)")
            split = split_of_name(path.name)
            if split is None:
                raise UserError(f"cannot tell the split of {printable(path)} from its name (expected train..., "
                                "validation... or test..., as Hugging Face names the shards)")
        sources.append(Source(path=path, kind=kind, split=split))
    seen = set()
    for source in sources:
        resolved = source.path.resolve()
        if resolved in seen:
            raise UserError(f"--images {printable(source.path)} is given twice")
        seen.add(resolved)
    return sources


def inline_attributes(sources: list[Source]) -> tuple[str, ...]:
    """Fine-grained columns of self-labelled parquet shards (every column but image/filename/person)."""
    columns = [c for s in sources for c in image_sources.parquet_columns(s.path)
               if c not in ("image", FILENAME, LABEL)]
    return tuple(c for c in FINE_GRAINED if c in columns) + tuple(
        dict.fromkeys(c for c in columns if c not in FINE_GRAINED))


def _source_identity(source: Source) -> dict:
    """What decides a source's chunks: its name and size (a folder: its image files' names and sizes)."""
    if source.kind == "folder":
        h = hashlib.sha256()
        for file in image_sources.folder_files(source.path):
            h.update(f"{file.relative_to(source.path).as_posix()}\t{file.stat().st_size}\n".encode())
        return {"name": printable(source.path.name), "kind": "folder", "listing": h.hexdigest()}
    return {"name": printable(source.path.name), "kind": source.kind, "bytes": source.path.stat().st_size}


def fingerprint(settings: dict, catalog: Catalog | None, sources: list[Source]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": 1, **settings,
                         "metadata": catalog.files if catalog is not None else None,
                         "sources": [_source_identity(s) for s in sources]}, sort_keys=True).encode())
    return h.hexdigest()


def write_record(path: Path, record: SourceRecord) -> None:
    info = {k: v for k, v in record.__dict__.items() if k != "rows"}
    with staged_file(path, "wb", checked=True) as f:
        np.savez(f, rows=record.rows.astype(np.int64), info=np.array(json.dumps(info)))


def read_record(path: Path) -> SourceRecord | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return SourceRecord(rows=npz["rows"], **json.loads(str(npz["info"])))
    except Exception:  # noqa: BLE001 - unreadable for any reason: read the source again
        path.unlink(missing_ok=True)
        return None


def read_source(index: int, source: Source, work: Path, catalog: Catalog | None, seen: np.ndarray | None,
                 attribute_names: tuple[str, ...], settings: dict, dispatcher: Dispatcher,
                 on_skip: Callable[[int], None]) -> SourceRecord:
    """Stream one source: look every image up, batch the new ones into chunks, dispatch them."""
    chunk_size = settings["chunk_size"]
    committed: dict[int, bool] = {}

    def is_committed(chunk: int) -> bool:
        if chunk not in committed:
            committed[chunk] = is_committed_chunk(chunk_path(work, index, chunk))
        return committed[chunk]

    record = SourceRecord(rows=np.zeros(0, dtype=np.int64))
    rows: list[int] = []
    items: list[tuple] = []
    current = 0
    digest = image_sources.SourceDigest()

    def flush(chunk: int) -> None:
        nonlocal items
        if not is_committed(chunk):
            dispatcher.submit((os.fspath(chunk_path(work, index, chunk)), items, settings["image_size"],
                               settings["channels"], len(attribute_names)))
        else:
            on_skip(len(items))
        items = []

    label_columns = [LABEL, *attribute_names] if catalog is None else []
    for image in image_sources.iterate(source.path, lambda i: not is_committed(i // chunk_size), digest,
                                       label_columns):
        chunk = image.index // chunk_size
        if chunk != current:
            flush(current)
            current = chunk
        record.members += 1
        found = (_look_up(image, catalog, seen, record, rows) if catalog is not None
                 else _own_label(image, source, attribute_names, record))
        if found is None:  # unlisted, duplicate or unlabelled: counted in `record`, not built
            continue
        label, split, flags = found
        items.append((printable(image.name), image.data, image.path, label, split, flags, image.error))
    flush(current)
    record.rows = np.asarray(rows, dtype=np.int64)
    record.sha256 = digest.sha256
    return record


def _look_up(image, catalog: Catalog, seen: np.ndarray, record: SourceRecord,
             rows: list[int]) -> tuple[int, int, tuple] | None:
    """(label, split, flags) of an image from its metadata row; None (and counted) when it gets no chunk slot."""
    row = catalog.find(image.name)
    if row < 0 and catalog.is_unlabelled(image.name):
        record.unlabelled += 1  # listed without a 0/1 person label: skipped, as its row is
        return None
    if row < 0:
        record.unlisted += 1
        if len(record.unlisted_names) < NAMES_LISTED:
            record.unlisted_names.append(printable(image.name))
        return None
    if seen[row]:
        record.duplicates += 1
        if len(record.duplicate_names) < NAMES_LISTED:
            record.duplicate_names.append(printable(image.name))
        return None
    seen[row] = True
    rows.append(row)
    return int(catalog.labels[row]), int(catalog.splits[row]), tuple(int(v) for v in catalog.attributes[row])


def _own_label(image, source: Source, attribute_names: tuple[str, ...],
               record: SourceRecord) -> tuple[int, int, tuple] | None:
    """(label, split, flags) from a self-labelled parquet row's own columns; None (and counted) without a 0/1 label."""
    label = image.columns.get(LABEL)
    if label not in (0, 1):
        record.unlabelled += 1
        if record.unlabelled_example is None:
            record.unlabelled_example = (printable(repr(label))[:40] if LABEL in image.columns
                                         else f"none: it has no '{LABEL}' column")
        return None
    return label, SPLITS.index(source.split), tuple(_flag(image.columns.get(c)) for c in attribute_names)


def _flag(value) -> int:
    return int(value) if value in (0, 1) else UNKNOWN

