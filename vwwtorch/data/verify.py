"""`vwwtorch data verify`: check a built dataset against its meta.json and summarise it.

Checks every split (arrays present, shapes and dtypes, counts), labels in range, the per-class
counts and ids recorded in meta.json, and, for COCO VWW builds, that no image id is in two
splits and that report.json agrees with meta.json. Pixel statistics come from a sample, so
verifying a full-size COCO build takes seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vwwtorch.data.format import ATTRIBUTES_FILE, class_counts, open_attributes, open_split, read_meta
from vwwtorch.plumbing.errors import UserError

SAMPLE_PER_SPLIT = 512


@dataclass
class SplitSummary:
    name: str
    count: int
    per_class: list[int]
    pixel_mean: float
    pixel_std: float


@dataclass
class VerifyReport:
    root: Path
    meta: dict[str, Any]
    splits: list[SplitSummary] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _sample_stats(images: np.ndarray) -> tuple[float, float, int]:
    """(mean, std, constant images) over an evenly spaced sample."""
    index = np.unique(np.linspace(0, len(images) - 1, num=min(len(images), SAMPLE_PER_SPLIT)).astype(np.int64))
    sample = np.asarray(images[index], dtype=np.float32)
    flat = sample.reshape(len(sample), -1)
    constant = int(np.sum(flat.max(axis=1) == flat.min(axis=1)))
    return float(sample.mean()), float(sample.std()), constant


def _check_split(report: VerifyReport, name: str) -> np.ndarray | None:
    meta = report.meta
    classes = meta["classes"]
    try:
        arrays = open_split(report.root, name, meta)
    except UserError as exc:
        report.problems.append(str(exc))
        return None
    labels = np.asarray(arrays.labels)
    problems = report.problems
    if len(labels) == 0:
        problems.append(f"split {name!r} is empty")
        return None
    if labels.min() < 0 or labels.max() >= len(classes):
        problems.append(f"split {name!r} has labels outside 0..{len(classes) - 1} "
                        f"(min {labels.min()}, max {labels.max()})")
        return None
    counts = class_counts(labels, len(classes))
    recorded = meta["splits"][name].get("per_class")
    if recorded is not None and recorded != dict(zip(classes, counts)):
        problems.append(f"split {name!r}: meta.json per_class {recorded} but labels.npy has "
                        f"{dict(zip(classes, counts))}")
    ids = np.asarray(arrays.ids)
    if len(np.unique(ids)) != len(ids):
        problems.append(f"split {name!r} has {len(ids) - len(np.unique(ids))} duplicate ids")
    try:
        attributes = open_attributes(report.root, name, meta)
    except UserError as exc:
        problems.append(str(exc))
        attributes = None
    if attributes is not None and not np.isin(np.asarray(attributes[1]), (-1, 0, 1)).all():
        problems.append(f"split {name!r}: {ATTRIBUTES_FILE} holds values other than 1, 0 and -1")
    mean, std, constant = _sample_stats(arrays.images)
    sampled = min(len(labels), SAMPLE_PER_SPLIT)
    if constant == sampled:
        problems.append(f"split {name!r}: every sampled image is a single flat colour (were they ever written?)")
    report.splits.append(SplitSummary(name=name, count=len(labels), per_class=counts, pixel_mean=mean,
                                      pixel_std=std))
    return ids


def _check_coco_vww(report: VerifyReport, ids_by_split: dict[str, np.ndarray]) -> None:
    provenance = report.meta.get("provenance") or {}
    names = list(ids_by_split)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = np.intersect1d(ids_by_split[a], ids_by_split[b])
            if len(shared):
                report.problems.append(f"{len(shared)} image ids are in both {a!r} and {b!r} "
                                       f"(e.g. {int(shared[0])})")
    report_path = report.root / "report.json"
    if not report_path.exists():
        report.problems.append(f"{report_path} is missing")
        return
    try:
        bad = json.loads(report_path.read_text())
        bad_count = int(bad["bad_count"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        report.problems.append(f"{report_path} is not a valid build report")
        return
    if bad_count != len(bad.get("bad", [])) or bad_count != provenance.get("bad_images"):
        report.problems.append(f"{report_path} lists {len(bad.get('bad', []))} bad images, says {bad_count}, "
                               f"meta.json says {provenance.get('bad_images')}")
    stored = sum(s["count"] for s in report.meta["splits"].values())
    listed = provenance.get("images_listed")
    if listed is not None and stored + bad_count != listed:
        report.problems.append(f"{stored} stored + {bad_count} bad images != {listed} listed in the annotations")


def verify_dataset(root: str | Path) -> VerifyReport:
    """Run every check; problems are collected in the report, not raised (meta.json aside)."""
    root = Path(root)
    report = VerifyReport(root=root, meta=read_meta(root))
    ids_by_split = {}
    for name in report.meta["splits"]:
        ids = _check_split(report, name)
        if ids is not None:
            ids_by_split[name] = ids
    if (report.meta.get("provenance") or {}).get("source") == "coco-vww":
        _check_coco_vww(report, ids_by_split)
    return report


def print_summary(report: VerifyReport) -> None:
    meta = report.meta
    classes = meta["classes"]
    h, w = meta["image_size"]
    print(f"dataset {report.root}: classes {', '.join(classes)}; images {h}x{w}x{meta['channels']} uint8")
    provenance = meta.get("provenance") or {}
    if provenance.get("source") == "coco-vww":
        print(f"built from COCO: class {provenance.get('class_name')!r}, small-object threshold "
              f"{provenance.get('small_object_area_threshold')}, split convention {provenance.get('split')}, "
              f"{provenance.get('bad_images', 0)} bad images skipped")
    elif provenance.get("source"):
        print(f"source: {provenance['source']}")
    width = max([len(c) for c in classes] + [14])
    print(f"{'split':<8}{'images':>9}  " + "  ".join(f"{c:>{width + 9}}" for c in classes) + "   pixel mean/std")
    for s in report.splits:
        cells = "  ".join(f"{n:>{width}} ({100 * n / s.count:5.1f}%)" for n in s.per_class)
        print(f"{s.name:<8}{s.count:>9}  {cells}   {s.pixel_mean:6.1f} / {s.pixel_std:5.1f}")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    print("OK: all checks passed" if report.ok else f"{len(report.problems)} problem(s) found")
