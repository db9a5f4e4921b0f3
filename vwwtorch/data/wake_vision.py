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

Layout: this module runs the build and assembles the dataset; `wake_vision_sources` reads the
sources into chunks, `wake_vision_chunks` holds the chunk files and the worker pool,
`wake_vision_report` does the accounting above; `wake_vision_metadata` reads the CSVs.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vwwtorch.plumbing.errors import Stopped, UserError
from vwwtorch.plumbing.names import printable
from vwwtorch.plumbing.outputs import check_folder, written_as_user_error
from vwwtorch.plumbing.stopping import SIGNAL_EXIT_CODES, Terminated
from vwwtorch.data.coco_vww_builder import (DEFAULT_CHUNK_SIZE, DEFAULT_MAX_BAD_FRACTION, REPORT_FILE, WORK_SUFFIX,
                                            check_build_options, class_names, prepare_work_dir, write_json)
from vwwtorch.data.format import ATTRIBUTES_FILE, DatasetWriter, NpyAppender
from vwwtorch.data.wake_vision_chunks import Dispatcher, chunk_field, chunk_images, chunk_summary, done_path
from vwwtorch.data.wake_vision_metadata import LABEL, SPLITS, Catalog, MetadataFile, read_catalog
from vwwtorch.data.wake_vision_report import build_report, check_labelled, check_report
from vwwtorch.data.wake_vision_sources import (Source, SourceRecord, check_sources, fingerprint, inline_attributes,
                                               read_record, read_source, write_record)


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


def _assemble(writer: DatasetWriter, chunk_files: list[Path], attribute_names: tuple[str, ...], size: int,
              channels: int) -> None:
    """Stream every split out of the chunks; only one chunk's arrays are in memory at a time."""
    splits = [chunk_field(path, "splits") for path in chunk_files]  # int8: 1 byte an image
    for code, split in enumerate(SPLITS):
        count = int(sum(int(np.sum(s == code)) for s in splits))
        if count == 0:
            continue
        width = max(chunk_field(path, "ids").dtype.itemsize // 4 for path, s in zip(chunk_files, splits)
                    if np.any(s == code))
        folder = writer.split_folder(split)
        with NpyAppender(folder / "images.npy", np.uint8, (count, size, size, channels)) as images, \
                NpyAppender(folder / "labels.npy", np.int64, (count,)) as labels, \
                NpyAppender(folder / "ids.npy", f"<U{max(width, 1)}", (count,)) as ids, \
                NpyAppender(folder / ATTRIBUTES_FILE, np.int8, (count, len(attribute_names))) as flags:
            for path, chunk_splits in zip(chunk_files, splits):
                pick = chunk_splits == code
                if pick.any():
                    summary = chunk_summary(path)
                    images.append(chunk_images(path)[pick])
                    labels.append(summary["labels"][pick])
                    ids.append(summary["ids"][pick])
                    flags.append(summary["attributes"][pick])
        writer.add_split_meta(split, np.load(folder / "labels.npy", mmap_mode="r"))
    if not writer.meta["splits"]:
        raise UserError("no image was built: the --images sources hold none of the listed images")


def build_wake_vision(out: str | os.PathLike, metadata: list, images: list, *, image_size: int = 128,
                      channels: int = 1, workers: int = 1, chunk_size: int = DEFAULT_CHUNK_SIZE,
                      max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION, allow_unlisted: bool = False,
                      overwrite: bool = False, restart: bool = False, progress: bool = True,
                      on_chunk: Callable[[str], None] | None = None) -> WakeVisionResult:
    """Build Wake Vision into `out` (see the module docstring); resumes an interrupted build."""
    check_build_options(image_size=image_size, channels=channels, chunk_size=chunk_size, workers=workers,
                        max_bad_fraction=max_bad_fraction)
    out = check_folder(out, overwrite=overwrite)
    metadata = [m if isinstance(m, MetadataFile) else MetadataFile.parse(str(m)) for m in metadata]
    catalog = read_catalog(metadata) if metadata else None
    sources = check_sources(images, catalog)
    attribute_names = catalog.attribute_names if catalog is not None else inline_attributes(sources)
    settings = {"image_size": image_size, "channels": channels, "chunk_size": chunk_size}
    work = out.with_name(out.name + WORK_SUFFIX)
    shown = {**settings, "metadata": [printable(m.path.name) for m in metadata],
             "images": [printable(s.path.name) for s in sources]}  # what the "different settings" error shows
    prepare_work_dir(work, fingerprint(settings, catalog, sources), shown, restart)

    seen = np.zeros(len(catalog), dtype=bool) if catalog is not None else None
    start = time.perf_counter()
    records, decoded = _read_sources(sources, work, catalog, seen, attribute_names, settings, workers=workers,
                                     progress=progress, on_chunk=on_chunk)
    seconds = time.perf_counter() - start

    if catalog is None and not any(r.members - r.unlabelled for r in records):
        shutil.rmtree(work, ignore_errors=True)  # nothing worth resuming
        check_labelled(sources, records)
    chunk_files = sorted(p for p in work.glob("source-*-chunk-*.npz"))
    report = build_report(metadata, catalog, seen, records, chunk_files)
    check_report(report, max_bad_fraction, allow_unlisted, work)
    provenance = _provenance(catalog, sources, records, report, attribute_names, image_size=image_size,
                             channels=channels)
    with DatasetWriter(out, classes=class_names(LABEL), image_size=(image_size, image_size), channels=channels,
                       provenance=provenance, overwrite=overwrite) as writer, written_as_user_error(out):
        writer.meta["attributes"] = list(attribute_names)
        _assemble(writer, chunk_files, attribute_names, image_size, channels)
        write_json(writer.tmp / REPORT_FILE, report)
        writer.finish()
    shutil.rmtree(work, ignore_errors=True)
    counts = {split: info["per_class"] for split, info in writer.meta["splits"].items()}
    return WakeVisionResult(out=out, counts=counts, report=report, decoded=decoded, seconds=seconds)


def _read_sources(sources: list[Source], work: Path, catalog: Catalog | None, seen: np.ndarray | None,
                  attribute_names: tuple[str, ...], settings: dict, *, workers: int, progress: bool,
                  on_chunk: Callable[[str], None] | None) -> tuple[list[SourceRecord], int]:
    """Read every source not yet recorded as finished into chunks; returns the records and images decoded.

    A stop leaves the committed chunks for a rerun to resume; a failure with nothing committed yet
    removes the work folder, since there is nothing to resume.
    """
    from vwwtorch.plumbing.progress import progress_bar

    records: list[SourceRecord] = []
    decoded = 0
    bar = progress_bar(total=len(catalog) if catalog is not None else None, unit="img",
                       desc="building Wake Vision", disable=not progress, smoothing=0.1, dynamic_ncols=True)

    def done(result: tuple) -> None:
        nonlocal decoded
        name, written, bad = result
        decoded += written + bad
        bar.update(written + bad)
        if on_chunk is not None:
            on_chunk(name)

    dispatcher = Dispatcher(workers, done)
    try:
        for index, source in enumerate(sources):
            record = read_record(done_path(work, index))
            if record is None:
                record = read_source(index, source, work, catalog, seen, attribute_names, settings,
                                     dispatcher, on_skip=bar.update)
                dispatcher.drain()  # the record says the source is complete: its chunks must be too
                write_record(done_path(work, index), record)
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
    return records, decoded


def _provenance(catalog: Catalog | None, sources: list[Source], records: list[SourceRecord], report: dict,
                attribute_names: tuple[str, ...], *, image_size: int, channels: int) -> dict:
    """What meta.json records about how the dataset was made (inputs, labels, flags, decoding)."""
    return {
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
