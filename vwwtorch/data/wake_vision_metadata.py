"""Wake Vision's published metadata: which label, split and fine-grained flags each image file has.

The Dataverse distribution ships one CSV per split, written with a header row and indexed by
`filename` (the image's name inside the archives, `<flickr id>_<secret>_o.jpg`):

* ``wake_vision_train_large.csv``: ``filename,person``
* ``wake_vision_train_bbox.csv`` (train_quality): ``filename,person,depiction,body_part``
* ``wake_vision_validation.csv`` and ``wake_vision_test.csv``: ``filename,person`` and the
  fine-grained 0/1 columns (`FINE_GRAINED`).

`person` is the label (1 person, 0 no person); rows with any other value (-1: left out of the
base split, kept only for a distance subset) have no label and are skipped. A fine-grained cell
that is -1 or blank is unknown, and is stored as -1.

Memory: train_large lists 5.76M files. The catalog keeps, per file, an 8-byte hash of its name, the
label, the split and the flags in numpy arrays (about 20 bytes a row for train_large), so it is
built and searched without holding millions of Python strings.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.hashing import sha256_file
from vwwtorch.plumbing.names import printable

FILENAME = "filename"
LABEL = "person"
# The published validation/test columns after `person`, in file order.
FINE_GRAINED = ("depiction", "body_part", "predominantly_female", "predominantly_male", "gender_unknown",
                "young", "middle_age", "older", "age_unknown", "near", "medium_distance", "far", "dark",
                "normal_lighting", "bright", "person_depiction", "non-person_depiction",
                "non-person_non-depiction")
# `report --by` names for the paper's fine-grained benchmark: each is a family of subsets.
ATTRIBUTE_GROUPS = {
    "gender": ("predominantly_female", "predominantly_male", "gender_unknown"),
    "age": ("young", "middle_age", "older", "age_unknown"),
    "distance": ("near", "medium_distance", "far"),
    "lighting": ("dark", "normal_lighting", "bright"),
    "depiction": ("person_depiction", "non-person_depiction", "non-person_non-depiction"),
}
SPLITS = ("train", "val", "test")
UNKNOWN = -1


def split_of_name(name: str) -> str | None:
    """The vwwtorch split a published file belongs to, from its name (CSV or parquet shard)."""
    stem = Path(name).name.lower()
    for word, split in (("validation", "val"), ("test", "test"), ("train", "train")):
        if word in stem:
            return split
    return None


def name_key(name: str) -> np.uint64:
    """Stable 64-bit key of an image's base name (blake2b; the same on every machine)."""
    digest = hashlib.blake2b(os.path.basename(name).encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def keys_of(names) -> np.ndarray:
    return np.fromiter((name_key(n) for n in names), dtype=np.uint64, count=len(names))


@dataclass(frozen=True)
class MetadataFile:
    """One metadata CSV given on the command line."""

    path: Path
    split: str

    @staticmethod
    def parse(spec: str) -> "MetadataFile":
        """`PATH` (split from the file's name) or `SPLIT=PATH`."""
        split, sep, rest = spec.partition("=")
        if sep and split in SPLITS:
            path = Path(rest)
        else:
            path, split = Path(spec), split_of_name(spec)
            if split is None:
                raise UserError(f"cannot tell the split of --metadata {printable(spec)} from its name; "
                                f"write it as train=PATH, val=PATH or test=PATH")
        if not path.is_file():
            raise UserError(f"metadata file {printable(path)} does not exist")
        return MetadataFile(path, split)


@dataclass
class Catalog:
    """Every labelled file of the metadata CSVs, sorted by name key for binary search."""

    keys: np.ndarray  # uint64 [N], sorted
    labels: np.ndarray  # int8 [N]
    splits: np.ndarray  # int8 [N], index into SPLITS
    attributes: np.ndarray  # int8 [N, A], -1 unknown
    attribute_names: tuple[str, ...]
    files: list[dict]  # [{"file", "split", "sha256", "rows", "labelled"}]
    unlabelled_keys: np.ndarray  # uint64, sorted: listed without a 0/1 label (skipped, not "unlisted")

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, name: str) -> int:
        """Row of the image called `name` (any folder part is ignored), or -1."""
        key = name_key(name)
        row = int(np.searchsorted(self.keys, key))
        return row if row < len(self.keys) and self.keys[row] == key else -1

    def is_unlabelled(self, name: str) -> bool:
        key = name_key(name)
        row = int(np.searchsorted(self.unlabelled_keys, key))
        return row < len(self.unlabelled_keys) and self.unlabelled_keys[row] == key


def open_csv(path: Path):
    """A streaming reader of one CSV (batches of rows), its file name always read as text."""
    import pyarrow as pa
    from pyarrow import csv

    try:
        reader = csv.open_csv(path, read_options=csv.ReadOptions(block_size=1 << 22),
                              convert_options=csv.ConvertOptions(column_types={FILENAME: pa.string()}))
        reader.schema.names  # the header is decoded here: it must be UTF-8
        return reader
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"cannot read metadata file {printable(path)}: {printable(str(exc).splitlines()[0])}") from None
    except UnicodeDecodeError:
        raise UserError(f"metadata file {printable(path)} has a header that is not UTF-8 text") from None


def _int_column(batch, name: str, path: Path) -> np.ndarray:
    """int8 values of a 0/1/-1 column; blank cells are unknown (-1)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = batch.column(name)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.if_else(pc.equal(pc.utf8_trim_whitespace(column), ""), None, column)
        try:
            column = pc.cast(column, pa.int64())
        except pa.ArrowInvalid:
            raise UserError(f"{printable(path)}: column {name!r} must hold integers (0, 1 or -1)") from None
    elif pa.types.is_null(column.type):
        column = pc.cast(column, pa.int64())
    elif not pa.types.is_integer(column.type):
        raise UserError(f"{printable(path)}: column {name!r} must hold integers (0, 1 or -1), "
                        f"not {column.type}")
    values = column.to_numpy(zero_copy_only=False)
    values = np.where(np.isnan(values.astype(np.float64)), UNKNOWN, values) if values.dtype.kind == "f" else values
    values = values.astype(np.int64)
    bad = ~np.isin(values, (-1, 0, 1))
    if bad.any():
        raise UserError(f"{printable(path)}: column {name!r} holds {int(values[bad][0])}; "
                        "Wake Vision's columns hold 0, 1 or -1")
    return values.astype(np.int8)


def _read_rows(meta: MetadataFile, attribute_names: tuple[str, ...]):
    """(keys, labels, flags, keys of the unlabelled rows) of one CSV, read in batches."""
    import pyarrow as pa

    keys, labels, flags, unlabelled = [], [], [], []
    reader = open_csv(meta.path)
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except (pa.ArrowInvalid, OSError) as exc:
            raise UserError(f"cannot read metadata file {printable(meta.path)}: "
                            f"{str(exc).splitlines()[0]}") from None
        names = batch.column(FILENAME).to_pylist()
        if any(not n or not n.strip() for n in names):
            raise UserError(f"{printable(meta.path)}: a row has an empty {FILENAME!r}")
        label = _int_column(batch, LABEL, meta.path)
        keep = np.isin(label, (0, 1))
        batch_flags = np.full((len(names), len(attribute_names)), UNKNOWN, dtype=np.int8)
        for j, column in enumerate(attribute_names):
            if column in batch.schema.names:
                batch_flags[:, j] = _int_column(batch, column, meta.path)
        keys.append(keys_of([n for n, k in zip(names, keep) if k]))
        unlabelled.append(keys_of([n for n, k in zip(names, keep) if not k]))
        labels.append(label[keep])
        flags.append(batch_flags[keep])
    if not keys:
        return (np.zeros(0, np.uint64), np.zeros(0, np.int8),
                np.zeros((0, len(attribute_names)), np.int8), np.zeros(0, np.uint64))
    return np.concatenate(keys), np.concatenate(labels), np.concatenate(flags), np.concatenate(unlabelled)


def read_catalog(files: list[MetadataFile]) -> Catalog:
    """Read the metadata CSVs into one catalog; a file listed twice is an error."""
    if not files:
        raise UserError("give at least one --metadata CSV (e.g. wake_vision_validation.csv)")
    headers = []
    for meta in files:
        columns = open_csv(meta.path).schema.names
        for required in (FILENAME, LABEL):
            if required not in columns:
                raise UserError(f"{printable(meta.path)} has no {required!r} column (it has: "
                                f"{', '.join(columns)}); is it a Wake Vision metadata CSV?")
        headers.append(columns)
    # Every other column is a fine-grained flag; the published order first, then any extra.
    extra = [c for columns in headers for c in columns if c not in (FILENAME, LABEL)]
    attribute_names = tuple(c for c in FINE_GRAINED if c in extra) + tuple(
        dict.fromkeys(c for c in extra if c not in FINE_GRAINED))

    keys, labels, splits, attributes, records, unlabelled = [], [], [], [], [], []
    for meta in files:
        file_keys, file_labels, file_flags, file_unlabelled = _read_rows(meta, attribute_names)
        rows = len(file_keys) + len(file_unlabelled)
        unlabelled.append(file_unlabelled)
        keys.append(file_keys)
        labels.append(file_labels)
        splits.append(np.full(len(file_keys), SPLITS.index(meta.split), dtype=np.int8))
        attributes.append(file_flags)
        records.append({"file": printable(meta.path.name), "split": meta.split, "sha256": sha256_file(meta.path),
                        "rows": rows, "labelled": len(file_keys)})
    all_keys = np.concatenate(keys)
    if len(all_keys) == 0:
        raise UserError("the metadata CSVs list no image labelled 0 or 1: nothing to build")
    order = np.argsort(all_keys, kind="stable")
    sorted_keys = all_keys[order]
    repeated = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    if len(repeated):
        raise UserError(f"{_name_of_key(files, sorted_keys[repeated[0]])} is listed more than once in the "
                        "metadata CSVs; give each split's CSV once (train_quality is part of train_large: "
                        "pass one of them)")
    return Catalog(keys=sorted_keys, labels=np.concatenate(labels)[order], splits=np.concatenate(splits)[order],
                   attributes=np.concatenate(attributes)[order], attribute_names=attribute_names, files=records,
                   unlabelled_keys=np.sort(np.concatenate(unlabelled)))


def _name_of_key(files: list[MetadataFile], key) -> str:
    """The file name behind a key, for an error message (reads the CSVs again: errors only)."""
    for meta in files:
        reader = open_csv(meta.path)
        for batch in reader:
            for name in batch.column(FILENAME).to_pylist():
                if name_key(name) == key:
                    return repr(name)
    return "an image"
