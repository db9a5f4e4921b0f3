"""COCO 2014 -> Visual Wake Words: which label each image gets and which split it lands in.

Label rule (tf.slim's `build_visualwakewords_data_lib`, the builder of the TinyML book and the VWW
paper): an annotation of the chosen category is "small" when its COCO `area` field (the
segmentation area, not the box w*h) divided by the image's width x height is below the threshold
(default 0.005, i.e. 0.5%; some reference docstrings say 5%, the code uses 0.005). An image is
labelled 1 when it has at least one annotation of the category that is not small, otherwise 0.
Crowd (`iscrowd`) annotations count like any other. Images without any annotation are kept as 0.

Boundary: this module labels an annotation whose fraction equals the threshold exactly as 1
(`>=`, what the vwwtorch ticket and recipe specify). tf.slim's code compares with a strict `>`;
the two differ only for an annotation whose area is exactly threshold x width x height.
`IS_LARGE_ENOUGH` is the single place that decides it.

Split conventions:

* ``book``: train2014 -> train, val2014 -> val (the TinyML book's builder).
* ``minival``: the VWW paper's; images whose ids are listed in the minival id file (8,059 ids,
  one per line) -> val, all other train2014 + val2014 images -> train.

Within a split images are ordered by COCO image id, so a build does not depend on JSON order.
"""

from __future__ import annotations

import contextlib
import io
import json
import operator
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.hashing import sha256_bytes

DEFAULT_THRESHOLD = 0.005
SPLIT_CONVENTIONS = ("book", "minival")
SPLIT_RULES = {
    "book": "train2014 -> train, val2014 -> val (TinyML book / tf.slim builder)",
    "minival": "ids in the minival id file -> val, all other train2014 + val2014 images -> train "
               "(VWW paper)",
}
# fraction >= threshold: not small. See the module docstring about tf.slim's strict `>`.
IS_LARGE_ENOUGH = operator.ge
LABEL_RULE = ("1 if any annotation of the class has area / (image width * height) >= threshold "
              "(crowd annotations included), else 0")


@dataclass(frozen=True)
class CocoSource:
    """One COCO annotation file and the folder holding its images (e.g. train2014)."""

    name: str
    annotations: Path
    images: Path


@dataclass(frozen=True)
class ImageEntry:
    """One image to decode: where it is, what it is called in reports, and its label."""

    image_id: int
    path: str  # absolute path of the JPEG
    file: str  # "<source>/<file_name>", stable across machines (used in reports and fingerprints)
    label: int


@dataclass
class VwwPlan:
    """Everything the builder needs: images per split plus what meta.json records about them."""

    class_name: str
    category_id: int
    threshold: float
    split: str
    splits: dict[str, list[ImageEntry]]
    annotations: dict[str, dict[str, str]] = field(default_factory=dict)  # source -> file, sha256
    minival: dict[str, Any] | None = None

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.splits.values())


def load_annotations(path: Path) -> tuple[Any, str]:
    """Parse one COCO instances file with pycocotools; return (COCO, sha256 of the file)."""
    from pycocotools.coco import COCO

    path = Path(path)
    if not path.is_file():
        raise UserError(f"annotation file {path} does not exist")
    raw = path.read_bytes()
    digest = sha256_bytes(raw)
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"annotation file {path} is not valid JSON: {exc}") from None
    del raw
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ("images", "annotations", "categories")):
        raise UserError(f"annotation file {path} is not a COCO instances file "
                        "(needs 'images', 'annotations' and 'categories' lists)")
    coco = COCO()
    coco.dataset = data
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
            coco.createIndex()
    except (KeyError, TypeError) as exc:
        raise UserError(f"annotation file {path} is malformed: an entry lacks {exc}") from None
    return coco, digest


def category_id(coco: Any, class_name: str, where: Path) -> int:
    """The category id for `class_name`; an unknown name lists the valid ones."""
    by_name = {c["name"]: c["id"] for c in coco.dataset["categories"]}
    if class_name in by_name:
        return int(by_name[class_name])
    # Be forgiving about case and underscores ("traffic_light" for "traffic light").
    relaxed = {n.lower().replace("_", " "): i for n, i in by_name.items()}
    key = class_name.lower().replace("_", " ")
    if key in relaxed:
        return int(relaxed[key])
    names = ", ".join(sorted(by_name))
    raise UserError(f"unknown --class-name {class_name!r} in {where}; valid names: {names}")


def canonical_class_name(coco: Any, cat_id: int) -> str:
    return str(coco.cats[cat_id]["name"])


def vww_labels(coco: Any, cat_id: int, threshold: float, where: Path | str = "annotations") -> dict[int, int]:
    """Label of every image in `coco`: 1 if any `cat_id` annotation is not small, else 0."""
    labels: dict[int, int] = {}
    try:
        for image_id, image in coco.imgs.items():
            labels[int(image_id)] = 0
            if int(image["width"]) <= 0 or int(image["height"]) <= 0:
                raise UserError(f"{where}: image {image_id} has a non-positive width or height")
        for ann in coco.loadAnns(coco.getAnnIds(catIds=[cat_id], iscrowd=None)):
            image = coco.imgs.get(ann["image_id"])
            if image is None:
                raise UserError(f"{where}: annotation {ann.get('id')} refers to unknown image "
                                f"{ann['image_id']}")
            fraction = ann["area"] / (image["height"] * image["width"])
            if IS_LARGE_ENOUGH(fraction, threshold):
                labels[int(ann["image_id"])] = 1
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{where} is malformed: {type(exc).__name__}: {exc}") from None
    return labels


def read_minival_ids(path: Path) -> tuple[set[int], str]:
    """Ids from a text file with one COCO image id per line (blank lines and # comments allowed)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"minival id file {path} does not exist")
    raw = path.read_bytes()
    ids: set[int] = set()
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            ids.add(int(text))
        except ValueError:
            raise UserError(f"{path}:{number}: expected one integer image id per line, got {text!r}") from None
    if not ids:
        raise UserError(f"minival id file {path} lists no ids")
    return ids, sha256_bytes(raw)


def _entries(coco: Any, source: CocoSource, labels: dict[int, int]) -> list[ImageEntry]:
    entries = []
    for image_id in sorted(labels):
        file_name = coco.imgs[image_id]["file_name"]
        entries.append(ImageEntry(image_id=image_id, path=os.fspath(source.images / file_name),
                                  file=f"{source.name}/{file_name}", label=labels[image_id]))
    return entries


def make_plan(sources: list[CocoSource], *, class_name: str = "person", threshold: float = DEFAULT_THRESHOLD,
              split: str = "book", minival_ids: Path | None = None) -> VwwPlan:
    """Read the annotation files one at a time (they are large) and decide every label and split."""
    if split not in SPLIT_CONVENTIONS:
        raise UserError(f"unknown split convention {split!r} (choose {' or '.join(SPLIT_CONVENTIONS)})")
    if split == "minival" and minival_ids is None:
        raise UserError("--split minival needs --minival-ids FILE (the VWW paper's mscoco_minival_ids.txt, "
                        "one COCO image id per line)")
    if not 0 <= threshold < 1:
        raise UserError(f"--small-object-area-threshold must be in [0, 1), got {threshold}")
    for source in sources:
        if not source.annotations.is_file():
            raise UserError(f"annotation file {source.annotations} does not exist")
        if not source.images.is_dir():
            raise UserError(f"image folder {source.images} does not exist")

    per_source: dict[str, list[ImageEntry]] = {}
    annotations: dict[str, dict[str, str]] = {}
    cat_ids: set[int] = set()
    canonical = class_name
    for source in sources:
        coco, digest = load_annotations(source.annotations)
        cat = category_id(coco, class_name, source.annotations)
        cat_ids.add(cat)
        canonical = canonical_class_name(coco, cat)
        labels = vww_labels(coco, cat, threshold, source.annotations)
        per_source[source.name] = _entries(coco, source, labels)
        annotations[source.name] = {"file": source.annotations.name, "sha256": digest}
        del coco  # the parsed instances file is the biggest thing we hold; drop it before the next
    if len(cat_ids) != 1:
        raise UserError(f"category {class_name!r} has different ids in the annotation files: {sorted(cat_ids)}")
    if sum(len(v) for v in per_source.values()) == 0:
        raise UserError("the annotation files list no images: nothing to build")

    minival_info = None
    if split == "book":
        splits = {"train": per_source.get("train2014", []), "val": per_source.get("val2014", [])}
    else:
        wanted, digest = read_minival_ids(minival_ids)
        everything = sorted((e for entries in per_source.values() for e in entries), key=lambda e: e.image_id)
        seen: set[int] = set()
        for e in everything:
            if e.image_id in seen:
                raise UserError(f"image id {e.image_id} appears in more than one annotation file")
            seen.add(e.image_id)
        splits = {"train": [e for e in everything if e.image_id not in wanted],
                  "val": [e for e in everything if e.image_id in wanted]}
        minival_info = {"file": Path(minival_ids).name, "sha256": digest, "ids_listed": len(wanted),
                        "ids_not_in_annotations": len(wanted - seen)}
    for name, entries in splits.items():
        if not entries:
            hint = " (none of the minival ids are in the annotation files)" if split == "minival" and name == "val" else ""
            raise UserError(f"the {name} split would be empty{hint}")
    return VwwPlan(class_name=canonical, category_id=cat_ids.pop(), threshold=float(threshold), split=split,
                   splits=splits, annotations=annotations, minival=minival_info)


def coco_sources(coco_dir: Path | None = None, *, train_images: Path | None = None, val_images: Path | None = None,
                 train_annotations: Path | None = None, val_annotations: Path | None = None) -> list[CocoSource]:
    """The two 2014 sources from the standard tree under `coco_dir`, each part overridable."""
    def pick(explicit, *default_parts):
        if explicit is not None:
            return Path(explicit)
        if coco_dir is None:
            return None
        return Path(coco_dir).joinpath(*default_parts)

    parts = {
        "train_images": pick(train_images, "train2014"),
        "val_images": pick(val_images, "val2014"),
        "train_annotations": pick(train_annotations, "annotations", "instances_train2014.json"),
        "val_annotations": pick(val_annotations, "annotations", "instances_val2014.json"),
    }
    missing = [k for k, v in parts.items() if v is None]
    if missing:
        flags = ", ".join("--" + k.replace("_", "-") for k in missing)
        raise UserError(f"give --coco-dir (the COCO 2014 folder) or all of {flags}")
    return [CocoSource("train2014", parts["train_annotations"], parts["train_images"]),
            CocoSource("val2014", parts["val_annotations"], parts["val_images"])]
