"""A tiny COCO 2014 tree made on the fly, with hand-chosen labels for the VWW builder tests.

Every image lists its annotations as (category, area, (box w, box h), iscrowd) and the VWW labels
it must get for `person` and `car` at the default threshold 0.005. The cases: areas just above,
exactly at and just below 0.005 x width x height, crowd annotations, a segmentation area that
disagrees with its box, other categories, several sizes, grayscale JPEGs, a truncated JPEG, a
file that is not an image, and an image listed in the annotations but missing on disk.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 2, "name": "bicycle", "supercategory": "vehicle"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 10, "name": "traffic light", "supercategory": "outdoor"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
]
CAT_IDS = {c["name"]: c["id"] for c in CATEGORIES}


@dataclass
class Spec:
    image_id: int
    source: str  # train2014 / val2014
    width: int
    height: int
    anns: list = field(default_factory=list)  # (category, area, (box w, box h), iscrowd)
    person: int = 0  # expected label for --class-name person
    car: int = 0  # expected label for --class-name car
    gray: bool = False
    damage: str | None = None  # None, "truncated", "garbage", "missing"

    @property
    def file_name(self) -> str:
        return f"COCO_{self.source}_{self.image_id:012d}.jpg"


# 200 x 100 = 20,000 px: the threshold area is exactly 100.0.
SPECS = [
    Spec(1, "train2014", 200, 100, [("person", 100.0, (10, 10), 0)], person=1),  # exactly at
    Spec(2, "train2014", 200, 100, [("person", 99.9, (10, 10), 0), ("car", 5000.0, (100, 50), 0)], car=1),
    Spec(3, "train2014", 200, 100, [("person", 100.1, (11, 10), 0)], person=1),  # just above
    Spec(4, "train2014", 160, 120, [], gray=True),  # no annotations at all
    Spec(5, "train2014", 320, 240, [("person", 2000.0, (50, 40), 1)], person=1),  # crowd counts
    # Box 40x40 = 1,600 px is above 384 = 0.005 * 320 * 240, but the segmentation area is not.
    Spec(6, "train2014", 320, 240, [("person", 300.0, (40, 40), 0), ("dog", 20000.0, (200, 100), 0)]),
    # Box 10x5 = 50 px is below 75 = 0.005 * 100 * 150, the segmentation area 80 is above.
    Spec(7, "train2014", 100, 150, [("person", 80.0, (10, 5), 0)], person=1),
    # Threshold 15.36: many small people do not add up; the car at 16 px is large enough.
    Spec(8, "train2014", 64, 48, [("person", 10.0, (3, 3), 0)] * 4 + [("car", 16.0, (4, 4), 0)], car=1),
    Spec(9, "train2014", 200, 100, [("person", 5000.0, (100, 50), 0)], person=1, damage="truncated"),
    Spec(10, "train2014", 200, 100, [("car", 5000.0, (100, 50), 0)], car=1, damage="missing"),
    Spec(11, "train2014", 240, 180, [("person", 200.0, (14, 14), 0), ("person", 300.0, (17, 17), 0),
                                     ("car", 5000.0, (80, 60), 1)], person=1, car=1, gray=True),
    Spec(12, "train2014", 200, 100, [("car", 100.0, (10, 10), 0), ("traffic light", 900.0, (30, 30), 0)], car=1),
    Spec(13, "train2014", 300, 200, [("bicycle", 3000.0, (60, 50), 0)], damage="garbage"),
    Spec(14, "train2014", 96, 96, [("person", 500.0, (25, 20), 0), ("car", 46.0, (7, 7), 1)], person=1),
    Spec(101, "val2014", 200, 100, [("person", 1000.0, (40, 25), 0)], person=1),
    Spec(102, "val2014", 300, 200, []),
    Spec(103, "val2014", 150, 150, [("car", 200.0, (15, 14), 0), ("person", 112.0, (11, 11), 0)], car=1, gray=True),
    Spec(104, "val2014", 200, 100, [("person", 99.99, (10, 10), 1)]),  # crowd, just below
    Spec(105, "val2014", 320, 240, [("person", 5000.0, (80, 62), 0), ("car", 10.0, (3, 3), 0)], person=1),
    Spec(106, "val2014", 128, 96, [("dog", 3000.0, (60, 50), 0)]),
]
MINIVAL_IDS = [3, 6, 13, 101, 104, 999999]  # 999999 is in no annotation file


def expected(class_name: str, split: str = "book") -> dict[str, dict[int, int]]:
    """split -> {image id: label} for the images that decode (damaged ones are skipped)."""
    result: dict[str, dict[int, int]] = {"train": {}, "val": {}}
    for spec in SPECS:
        if spec.damage:
            continue
        if split == "book":
            name = "train" if spec.source == "train2014" else "val"
        else:
            name = "val" if spec.image_id in MINIVAL_IDS else "train"
        result[name][spec.image_id] = getattr(spec, class_name)
    return result


def damaged() -> dict[int, str]:
    return {s.image_id: s.damage for s in SPECS if s.damage}


def source_pixels(spec: Spec) -> np.ndarray:
    """The picture written for `spec`: smooth gradients that differ per image, easy to compare."""
    yy, xx = np.mgrid[0:spec.height, 0:spec.width].astype(np.float32)
    red = 255 * xx / max(spec.width - 1, 1)
    green = 255 * yy / max(spec.height - 1, 1)
    blue = np.full_like(red, (spec.image_id * 37) % 256)
    rgb = np.stack([red, green, blue], axis=-1).round().astype(np.uint8)
    if spec.gray:
        return np.asarray(Image.fromarray(rgb).convert("L"))
    return rgb


def _jpeg_bytes(spec: Spec) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(source_pixels(spec)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _annotation(ann_id: int, spec: Spec, category: str, area: float, box: tuple, crowd: int) -> dict:
    x, y = 1.0, 1.0
    w, h = box
    return {"id": ann_id, "image_id": spec.image_id, "category_id": CAT_IDS[category], "area": area,
            "bbox": [x, y, float(w), float(h)], "iscrowd": crowd,
            "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]}


def make_coco_tree(root: Path) -> Path:
    """Write train2014/, val2014/ and annotations/ under `root`; returns `root`."""
    root = Path(root)
    ann_id = 1
    files = {"train2014": {"images": [], "annotations": []}, "val2014": {"images": [], "annotations": []}}
    for spec in SPECS:
        folder = root / spec.source
        folder.mkdir(parents=True, exist_ok=True)
        data = _jpeg_bytes(spec)
        if spec.damage == "truncated":
            (folder / spec.file_name).write_bytes(data[: len(data) // 2])
        elif spec.damage == "garbage":
            (folder / spec.file_name).write_bytes(b"this is not a JPEG file\n" * 20)
        elif spec.damage != "missing":
            (folder / spec.file_name).write_bytes(data)
        files[spec.source]["images"].append({"id": spec.image_id, "file_name": spec.file_name,
                                             "width": spec.width, "height": spec.height, "license": 1})
        for category, area, box, crowd in spec.anns:
            files[spec.source]["annotations"].append(_annotation(ann_id, spec, category, area, box, crowd))
            ann_id += 1
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for source, content in files.items():
        # Shuffled image order: the builder must not depend on the order of the JSON lists.
        content["images"].reverse()
        payload = {"info": {"description": "vwwtorch test fixture"}, "licenses": [], "categories": CATEGORIES,
                   **content}
        (root / "annotations" / f"instances_{source}.json").write_text(json.dumps(payload))
    (root / "minival_ids.txt").write_text("# VWW minival ids\n" + "\n".join(map(str, MINIVAL_IDS)) + "\n\n")
    return root
