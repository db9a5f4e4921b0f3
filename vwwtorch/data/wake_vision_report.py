"""Wake Vision's `report.json`: missing, unreadable, unlisted and duplicate images, and the checks on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.names import printable
from vwwtorch.data.coco_vww_builder import REPORT_FILE, write_json
from vwwtorch.data.wake_vision_chunks import chunk_field
from vwwtorch.data.wake_vision_metadata import FILENAME, LABEL, Catalog, MetadataFile, keys_of, open_csv
from vwwtorch.data.wake_vision_sources import NAMES_LISTED, Source, SourceRecord


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


def build_report(metadata, catalog, seen, records: list[SourceRecord], chunk_files: list[Path]) -> dict:
    unreadable = [b for path in chunk_files for b in json.loads(str(chunk_field(path, "bad")))]
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


def check_report(report: dict, max_bad_fraction: float, allow_unlisted: bool, work: Path) -> None:
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


def check_labelled(sources: list[Source], records: list[SourceRecord]) -> None:
    """Self-labelled parquet shards none of whose rows has a 0/1 label: say which column and value."""
    for source, record in zip(sources, records):
        if record.members and record.unlabelled == record.members:
            raise UserError(f"no image was built: none of the {record.members:,} rows of {printable(source.path)} "
                            f"has a '{LABEL}' value of 0 or 1 (found {record.unlabelled_example}); Wake Vision's "
                            f"shards label each image 1 (person) or 0 in that column")

