"""Build a vwwtorch dataset from Wake Vision's published files: parallel, chunked, resumable.

Inputs: the metadata CSVs (`wake_vision_metadata`: label, split and fine-grained flags per file
name) and the images, read as a stream from the `.tar.gz` archives, parquet shards or folders
(`image_sources`). The Hugging Face parquet shards carry their own labels, so `--metadata` is
optional when every image source is parquet.

Steps (the same scheme as `data vww`, see `vwwtorch.data.coco_vww_builder`):

1. Each source's images, in their fixed order, are cut into chunks of `chunk_size` images. This
   process reads the sources one after the other and hands each chunk's encoded bytes to a pool of
   worker processes, never more than two chunks per worker at a time, so memory stays flat however
   large the sources are. A worker decodes the chunk (whole image resized to a square, like
   `data vww`) and commits it as one file in `<out>.chunks/`.
2. When a source has been read to its end, a record of it (its sha256, which metadata rows it
   held, the names it had that no CSV lists) is committed too. A rerun with the same settings
   skips finished sources and, inside an unfinished one, the chunks already committed; so a build
   killed at any point resumes, and gives byte-identical files to one that was never stopped.
3. Assemble: each split's images, labels, ids (file names) and fine-grained flags
   (`attributes.npy`, int8, -1 unknown) are streamed from the chunks into the dataset layout.

Accounting (`report.json`): an image the CSVs list that no source holds is *missing*, one that
cannot be decoded is *unreadable*; both count against `--max-bad-fraction` of the listed images.
An archive member no CSV lists is *unlisted*; unlisted members count against the same fraction of
all members (`--allow-unlisted` accepts any number: train_quality's images share their archives
with the rest of train_large). A name met a second time is a *duplicate* and is skipped.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vwwtorch.contract.errors import Stopped, UserError
from vwwtorch.contract.names import printable
from vwwtorch.contract.outputs import check_folder, staged_file, written_as_user_error
from vwwtorch.contract.stopping import SIGNAL_EXIT_CODES, Terminated
from vwwtorch.data import image_sources
from vwwtorch.data.coco_vww_builder import (DEFAULT_CHUNK_SIZE, DEFAULT_MAX_BAD_FRACTION, REPORT_FILE, WORK_SUFFIX,
                                            check_build_options, class_names, prepare_work_dir, write_json)
from vwwtorch.data.format import ATTRIBUTES_FILE, DatasetWriter, NpyAppender
from vwwtorch.data.wake_vision_metadata import (FINE_GRAINED, FILENAME, LABEL, SPLITS, UNKNOWN, Catalog,
                                                MetadataFile, keys_of, open_csv, read_catalog, split_of_name)

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


@dataclass(frozen=True)
class WakeVisionResult:
    out: Path
    counts: dict[str, dict[str, int]]
    report: dict
    decoded: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.decoded / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------- worker side

def decode_chunk(task: tuple) -> tuple[str, int, int]:
    """Worker entry point: decode one chunk's images and commit the chunk file.

    `task` = (chunk_path, items, size, channels, attribute_count); items are
    (name, bytes or None, path or None, label, split index, flags, error or None). Returns (name,
    written, bad).
    """
    from PIL import Image

    from vwwtorch.contract.images import decode_image

    chunk_path, items, size, channels, attribute_count = task
    images = np.empty((len(items), size, size, channels), dtype=np.uint8)
    names, labels, splits, flags, bad = [], [], [], [], []
    for name, data, path, label, split, row_flags, error in items:
        try:
            if error is not None:
                raise UserError(error)
            image = decode_image(path or name, channels, exif=False, draft=(size, size), data=data)
            array = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
        # A damaged file can make PIL raise nearly anything; each is an unreadable image, with its reason.
        except Exception as exc:  # noqa: BLE001
            reason = str(exc) if isinstance(exc, UserError) else f"cannot read image {name}: {type(exc).__name__}"
            bad.append({"file": name, "split": SPLITS[split], "reason": reason.replace(path or "\0", name)})
            continue
        images[len(names)] = array.reshape(size, size, channels)
        names.append(name)
        labels.append(label)
        splits.append(split)
        flags.append(row_flags)
    count = len(names)
    with staged_file(Path(chunk_path), "wb", checked=True, unique=True) as f:
        np.savez(f, images=images[:count], labels=np.asarray(labels, dtype=np.int64),
                 ids=np.asarray(names, dtype=str) if names else np.zeros(0, dtype="<U1"),
                 splits=np.asarray(splits, dtype=np.int8),
                 attributes=np.asarray(flags, dtype=np.int8).reshape(count, attribute_count),
                 bad=np.array(json.dumps(bad)))
    return Path(chunk_path).name, count, len(bad)


def _chunk_summary(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {"labels": npz["labels"], "ids": npz["ids"], "splits": npz["splits"],
                "attributes": npz["attributes"], "bad": json.loads(str(npz["bad"]))}


def _chunk_images(path: Path) -> np.ndarray:
    return _chunk_field(path, "images")


def _chunk_field(path: Path, name: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as npz:
        return npz[name]


# ---------------------------------------------------------------- planning

def _sources(images: list, catalog: Catalog | None) -> list[Source]:
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


def _inline_attributes(sources: list[Source]) -> tuple[str, ...]:
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


def _fingerprint(settings: dict, catalog: Catalog | None, sources: list[Source]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": 1, **settings,
                         "metadata": catalog.files if catalog is not None else None,
                         "sources": [_source_identity(s) for s in sources]}, sort_keys=True).encode())
    return h.hexdigest()


# ---------------------------------------------------------------- reading the sources

def _done_path(work: Path, index: int) -> Path:
    return work / f"source-{index:03d}.done.npz"


def _chunk_path(work: Path, source_index: int, chunk: int) -> Path:
    return work / f"source-{source_index:03d}-chunk-{chunk:06d}.npz"


def _write_record(path: Path, record: SourceRecord) -> None:
    info = {k: v for k, v in record.__dict__.items() if k != "rows"}
    with staged_file(path, "wb", checked=True) as f:
        np.savez(f, rows=record.rows.astype(np.int64), info=np.array(json.dumps(info)))


def _read_record(path: Path) -> SourceRecord | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return SourceRecord(rows=npz["rows"], **json.loads(str(npz["info"])))
    except Exception:  # noqa: BLE001 - unreadable for any reason: read the source again
        path.unlink(missing_ok=True)
        return None


def _committed(path: Path) -> bool:
    """A chunk file that exists was renamed into place complete; still check it reads back."""
    if not path.exists():
        return False
    try:
        _chunk_summary(path)
        return True
    except Exception:  # noqa: BLE001
        path.unlink(missing_ok=True)
        return False


class _Dispatcher:
    """Hands chunks to the worker pool with at most `2 x workers` in flight (memory stays flat)."""

    def __init__(self, workers: int, on_done: Callable[[tuple], None]):
        self.on_done = on_done
        self.pending: deque = deque()
        self.limit = 2 * workers
        self.pool = None
        if workers > 1:
            from vwwtorch.data.chunks import worker_init

            # spawn: fresh workers that do not inherit the parent's catalog arrays.
            self.pool = multiprocessing.get_context("spawn").Pool(workers, initializer=worker_init,
                                                                   initargs=(True,))

    def submit(self, task: tuple) -> None:
        if self.pool is None:
            self.on_done(decode_chunk(task))
            return
        self.pending.append(self.pool.apply_async(decode_chunk, (task,)))
        while len(self.pending) >= self.limit:
            self.on_done(self.pending.popleft().get())

    def drain(self) -> None:
        while self.pending:
            self.on_done(self.pending.popleft().get())

    def close(self, *, abort: bool = False) -> None:
        if self.pool is not None:
            (self.pool.terminate if abort else self.pool.close)()
            self.pool.join()


def _read_source(index: int, source: Source, work: Path, catalog: Catalog | None, seen: np.ndarray | None,
                 attribute_names: tuple[str, ...], settings: dict, dispatcher: _Dispatcher,
                 on_skip: Callable[[int], None]) -> SourceRecord:
    """Stream one source: look every image up, batch the new ones into chunks, dispatch them."""
    chunk_size = settings["chunk_size"]
    committed: dict[int, bool] = {}

    def is_committed(chunk: int) -> bool:
        if chunk not in committed:
            committed[chunk] = _committed(_chunk_path(work, index, chunk))
        return committed[chunk]

    record = SourceRecord(rows=np.zeros(0, dtype=np.int64))
    rows: list[int] = []
    items: list[tuple] = []
    current = 0
    digest = image_sources.SourceDigest()

    def flush(chunk: int) -> None:
        nonlocal items
        if not is_committed(chunk):
            dispatcher.submit((os.fspath(_chunk_path(work, index, chunk)), items, settings["image_size"],
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
        if catalog is not None:
            row = catalog.find(image.name)
            if row < 0 and catalog.is_unlabelled(image.name):
                record.unlabelled += 1  # listed without a 0/1 person label: skipped, as its row is
                continue
            if row < 0:
                record.unlisted += 1
                if len(record.unlisted_names) < NAMES_LISTED:
                    record.unlisted_names.append(printable(image.name))
                continue
            if seen[row]:
                record.duplicates += 1
                if len(record.duplicate_names) < NAMES_LISTED:
                    record.duplicate_names.append(printable(image.name))
                continue
            seen[row] = True
            rows.append(row)
            label, split = int(catalog.labels[row]), int(catalog.splits[row])
            flags = tuple(int(v) for v in catalog.attributes[row])
        else:
            label = image.columns.get(LABEL)
            if label not in (0, 1):
                record.unlabelled += 1
                if record.unlabelled_example is None:
                    record.unlabelled_example = (printable(repr(label))[:40] if LABEL in image.columns
                                                 else f"none: it has no '{LABEL}' column")
                continue
            split = SPLITS.index(source.split)
            flags = tuple(_flag(image.columns.get(c)) for c in attribute_names)
        items.append((printable(image.name), image.data, image.path, label, split, flags, image.error))
    flush(current)
    record.rows = np.asarray(rows, dtype=np.int64)
    record.sha256 = digest.sha256
    return record


def _flag(value) -> int:
    return int(value) if value in (0, 1) else UNKNOWN


# ---------------------------------------------------------------- accounting and output

def _missing_names(metadata: list[MetadataFile], catalog: Catalog, seen: np.ndarray, limit: int) -> list[str]:
    """Names of up to `limit` listed images no source held (reads the CSVs again; only when some are)."""
    missing_keys = catalog.keys[~seen]
    names: list[str] = []
    for meta in metadata:
        for batch in open_csv(meta.path):
            batch_names = batch.column(FILENAME).to_pylist()
            hit = np.isin(keys_of(batch_names), missing_keys)
            names.extend(n for n, h in zip(batch_names, hit) if h)
            if len(names) >= limit:
                return [printable(n) for n in names[:limit]]
    return [printable(n) for n in names]


def _report(metadata, catalog, seen, records: list[SourceRecord], chunk_files: list[Path]) -> dict:
    unreadable = [b for path in chunk_files for b in json.loads(str(_chunk_field(path, "bad")))]
    members = sum(r.members for r in records)
    listed = len(catalog) if catalog is not None else members - sum(r.unlabelled for r in records)
    unlabelled = (sum(f["rows"] - f["labelled"] for f in catalog.files) if catalog is not None
                  else sum(r.unlabelled for r in records))
    missing = int(np.sum(~seen)) if catalog is not None else 0
    unlisted = sum(r.unlisted for r in records)
    bad = len(unreadable) + missing
    return {
        "images_listed": int(listed),
        "archive_members": int(members),
        "bad_count": int(bad),
        "bad_fraction": round(bad / listed, 6) if listed else 0.0,
        "unreadable_count": len(unreadable),
        "unreadable": unreadable,
        "missing_count": missing,
        "missing_examples": _missing_names(metadata, catalog, seen, NAMES_LISTED) if missing else [],
        "unlisted_count": int(unlisted),
        "unlisted_fraction": round(unlisted / members, 6) if members else 0.0,
        "unlisted_examples": [n for r in records for n in r.unlisted_names][:NAMES_LISTED],
        "duplicate_count": int(sum(r.duplicates for r in records)),
        "duplicate_examples": [n for r in records for n in r.duplicate_names][:NAMES_LISTED],
        "unlabelled_rows": int(unlabelled),
    }


def _check_report(report: dict, max_bad_fraction: float, allow_unlisted: bool, work: Path) -> None:
    where = work / REPORT_FILE
    if report["bad_count"] > max_bad_fraction * report["images_listed"]:
        write_json(where, report)
        example = (report["unreadable"][0]["reason"] if report["unreadable"]
                   else f"{report['missing_examples'][0]} is in no --images source")
        raise UserError(f"{report['bad_count']} of {report['images_listed']} listed images are missing "
                        f"({report['missing_count']}) or unreadable ({report['unreadable_count']}), more than "
                        f"--max-bad-fraction {max_bad_fraction:g}; e.g. {example}; list in {where} "
                        "(building from part of the archives? raise --max-bad-fraction)")
    if not allow_unlisted and report["unlisted_count"] > max_bad_fraction * report["archive_members"]:
        write_json(where, report)
        raise UserError(f"{report['unlisted_count']} of {report['archive_members']} images in --images are in no "
                        f"--metadata CSV, more than --max-bad-fraction {max_bad_fraction:g}; e.g. "
                        f"{report['unlisted_examples'][0]}; list in {where} (train_quality shares its archives "
                        "with train_large: pass --allow-unlisted)")


def _assemble(writer: DatasetWriter, chunk_files: list[Path], attribute_names: tuple[str, ...], size: int,
              channels: int) -> None:
    """Stream every split out of the chunks; only one chunk's arrays are in memory at a time."""
    splits = [_chunk_field(path, "splits") for path in chunk_files]  # int8: 1 byte an image
    for code, split in enumerate(SPLITS):
        count = int(sum(int(np.sum(s == code)) for s in splits))
        if count == 0:
            continue
        width = max(_chunk_field(path, "ids").dtype.itemsize // 4 for path, s in zip(chunk_files, splits)
                    if np.any(s == code))
        folder = writer.split_folder(split)
        with NpyAppender(folder / "images.npy", np.uint8, (count, size, size, channels)) as images, \
                NpyAppender(folder / "labels.npy", np.int64, (count,)) as labels, \
                NpyAppender(folder / "ids.npy", f"<U{max(width, 1)}", (count,)) as ids, \
                NpyAppender(folder / ATTRIBUTES_FILE, np.int8, (count, len(attribute_names))) as flags:
            for path, chunk_splits in zip(chunk_files, splits):
                pick = chunk_splits == code
                if pick.any():
                    summary = _chunk_summary(path)
                    images.append(_chunk_images(path)[pick])
                    labels.append(summary["labels"][pick])
                    ids.append(summary["ids"][pick])
                    flags.append(summary["attributes"][pick])
        writer.add_split_meta(split, np.load(folder / "labels.npy", mmap_mode="r"))
    if not writer.meta["splits"]:
        raise UserError("no image was built: the --images sources hold none of the listed images")


def _check_labelled(sources: list[Source], records: list[SourceRecord]) -> None:
    """Self-labelled parquet shards none of whose rows has a 0/1 label: say which column and value."""
    for source, record in zip(sources, records):
        if record.members and record.unlabelled == record.members:
            raise UserError(f"no image was built: none of the {record.members:,} rows of {printable(source.path)} "
                            f"has a '{LABEL}' value of 0 or 1 (found {record.unlabelled_example}); Wake Vision's "
                            f"shards label each image 1 (person) or 0 in that column")


def build_wake_vision(out: str | os.PathLike, metadata: list, images: list, *, image_size: int = 128,
                      channels: int = 1, workers: int = 1, chunk_size: int = DEFAULT_CHUNK_SIZE,
                      max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION, allow_unlisted: bool = False,
                      overwrite: bool = False, restart: bool = False, progress: bool = True,
                      on_chunk: Callable[[str], None] | None = None) -> WakeVisionResult:
    """Build Wake Vision into `out` (see the module docstring); resumes an interrupted build."""
    from vwwtorch.contract.progress import progress_bar

    check_build_options(image_size=image_size, channels=channels, chunk_size=chunk_size, workers=workers,
                        max_bad_fraction=max_bad_fraction)
    out = check_folder(out, overwrite=overwrite)
    metadata = [m if isinstance(m, MetadataFile) else MetadataFile.parse(str(m)) for m in metadata]
    catalog = read_catalog(metadata) if metadata else None
    sources = _sources(images, catalog)
    attribute_names = catalog.attribute_names if catalog is not None else _inline_attributes(sources)
    settings = {"image_size": image_size, "channels": channels, "chunk_size": chunk_size}
    work = out.with_name(out.name + WORK_SUFFIX)
    shown = {**settings, "metadata": [printable(m.path.name) for m in metadata],
             "images": [printable(s.path.name) for s in sources]}  # what the "different settings" error shows
    prepare_work_dir(work, _fingerprint(settings, catalog, sources), shown, restart)

    seen = np.zeros(len(catalog), dtype=bool) if catalog is not None else None
    total = len(catalog) if catalog is not None else None
    records: list[SourceRecord] = []
    decoded = 0
    start = time.perf_counter()
    bar = progress_bar(total=total, unit="img", desc="building Wake Vision", disable=not progress,
                       smoothing=0.1, dynamic_ncols=True)

    def done(result: tuple) -> None:
        nonlocal decoded
        name, written, bad = result
        decoded += written + bad
        bar.update(written + bad)
        if on_chunk is not None:
            on_chunk(name)

    dispatcher = _Dispatcher(workers, done)
    try:
        for index, source in enumerate(sources):
            record = _read_record(_done_path(work, index))
            if record is None:
                record = _read_source(index, source, work, catalog, seen, attribute_names, settings,
                                      dispatcher, on_skip=bar.update)
                dispatcher.drain()  # the record says the source is complete: its chunks must be too
                _write_record(_done_path(work, index), record)
            else:
                bar.update(len(record.rows))
            if seen is not None:
                seen[record.rows] = True
            records.append(record)
        dispatcher.close()
    except (KeyboardInterrupt, Terminated) as exc:
        dispatcher.close(abort=True)
        signal_name = "SIGINT" if isinstance(exc, KeyboardInterrupt) else "SIGTERM"
        raise Stopped(f"stopped by {signal_name}; finished chunks are kept in {work}: run the same command "
                      "again to resume", SIGNAL_EXIT_CODES[signal_name]) from None
    except BaseException:
        dispatcher.close(abort=True)
        if not any(work.glob("source-*.npz")):  # nothing to resume: leave nothing behind
            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - start

    if catalog is None and not any(r.members - r.unlabelled for r in records):
        shutil.rmtree(work, ignore_errors=True)  # nothing worth resuming
        _check_labelled(sources, records)
    chunk_files = sorted(p for p in work.glob("source-*-chunk-*.npz"))
    report = _report(metadata, catalog, seen, records, chunk_files)
    _check_report(report, max_bad_fraction, allow_unlisted, work)
    provenance = {
        "source": "wake-vision",
        "builder": __name__,
        "metadata": catalog.files if catalog is not None else None,
        "images": [{"file": printable(s.path.name), "kind": s.kind, "sha256": r.sha256, "images": r.members}
                   for s, r in zip(sources, records)],
        "label_rule": "label 1 (person) / 0 from the metadata's `person` column; rows with any other "
                      "value have no label and are left out",
        "attributes": f"{ATTRIBUTES_FILE}: int8 [N, {len(attribute_names)}] per split, columns in meta.json "
                      "'attributes', 1 / 0, -1 unknown",
        "color": "L (JPEG luma)" if channels == 1 else "RGB",
        "resize": f"whole image resized to {image_size}x{image_size} (aspect ratio not kept, no crop), bilinear, "
                  "JPEG DCT-domain downscaling; EXIF orientation ignored",
        "ids": "image file names",
        "images_listed": report["images_listed"],
        "bad_images": report["bad_count"],
        "unlisted_images": report["unlisted_count"],
    }
    with DatasetWriter(out, classes=class_names(LABEL), image_size=(image_size, image_size), channels=channels,
                       provenance=provenance, overwrite=overwrite) as writer, written_as_user_error(out):
        writer.meta["attributes"] = list(attribute_names)
        _assemble(writer, chunk_files, attribute_names, image_size, channels)
        write_json(writer.tmp / REPORT_FILE, report)
        writer.finish()
    shutil.rmtree(work, ignore_errors=True)
    counts = {split: info["per_class"] for split, info in writer.meta["splits"].items()}
    return WakeVisionResult(out=out, counts=counts, report=report, decoded=decoded, seconds=seconds)
