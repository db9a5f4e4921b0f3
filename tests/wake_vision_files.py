"""A small Wake Vision, written in the published formats (the tests' independent reference).

* Metadata CSVs with the Dataverse headers, copied here from the published files (not from
  vwwtorch): train_large ``filename,person``; validation/test the 20 columns below.
* Image archives: gzipped tars with the JPEGs flat at the top level, named ``<id>_<secret>_o.jpg``.
* Hugging Face parquet shards: ``image`` as a ``{bytes, path}`` struct, ``filename`` and every label
  column as int64, in the card's alphabetical order.

The pictures are tiny (40x30) so the builder resizes without JPEG draft scaling, and a test can
decode them independently with plain PIL.
"""

from __future__ import annotations

import csv
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

TRAIN_LARGE_HEADER = ["filename", "person"]
EVAL_HEADER = ("filename,person,depiction,body_part,predominantly_female,predominantly_male,gender_unknown,young,"
               "middle_age,older,age_unknown,near,medium_distance,far,dark,normal_lighting,bright,"
               "person_depiction,non-person_depiction,non-person_non-depiction").split(",")
WIDTH, HEIGHT = 40, 30


@dataclass
class Row:
    filename: str
    values: dict  # column -> text as written in the CSV
    pixels: np.ndarray | None  # RGB uint8 [HEIGHT, WIDTH, 3]; None: the file is not in any archive
    corrupt: bool = False


@dataclass
class Split:
    csv_name: str
    header: list[str]
    rows: list[Row] = field(default_factory=list)


def picture(rng: np.random.Generator, person: int) -> np.ndarray:
    """Noise with a bright upright bar for a person, a dark flat blob otherwise: learnable."""
    pixels = rng.integers(60, 120, size=(HEIGHT, WIDTH, 3)).astype(np.uint8)
    x = int(rng.integers(4, WIDTH - 12))
    if person == 1:
        pixels[4:HEIGHT - 2, x:x + 8] = 230
    else:
        pixels[10:18, x:x + 10] = 20
    return pixels


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def make_splits(seed: int = 0, train: int = 60, val: int = 30, test: int = 30) -> dict[str, Split]:
    """Rows of three CSVs; validation/test rows carry random fine-grained flags, some unknown."""
    rng = np.random.default_rng(seed)
    splits = {"train": Split("wake_vision_train_large.csv", TRAIN_LARGE_HEADER),
              "val": Split("wake_vision_validation.csv", EVAL_HEADER),
              "test": Split("wake_vision_test.csv", EVAL_HEADER)}
    serial = 100000
    for name, count in (("train", train), ("val", val), ("test", test)):
        for _ in range(count):
            serial += 1
            person = int(rng.integers(0, 2))
            values = {"filename": f"{serial}_{rng.integers(0, 16**10):010x}_o.jpg", "person": str(person)}
            for column in splits[name].header[2:]:
                values[column] = str(int(rng.random() < 0.35))
            splits[name].rows.append(Row(values["filename"], values, picture(rng, person)))
    return splits


def write_csvs(root: Path, splits: dict[str, Split]) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, split in splits.items():
        path = root / split.csv_name
        with open(path, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(split.header)
            for row in split.rows:
                writer.writerow([row.values[c] for c in split.header])
        paths[name] = path
    return paths


def write_archives(root: Path, members: list[list[tuple[str, bytes]]], stem: str = "wake-vision-train") -> list[Path]:
    """One .tar.gz per list of (name, bytes), members flat at the top level, in the given order."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, entries in enumerate(members):
        path = root / f"{stem}-{index + 10}.tar.gz"
        with tarfile.open(path, "w:gz") as archive:
            for name, data in entries:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 1_700_000_000
                archive.addfile(info, io.BytesIO(data))
        paths.append(path)
    return paths


def member_bytes(row: Row) -> bytes:
    return b"\xff\xd8\xff\xe0 this is not a whole JPEG" if row.corrupt else jpeg(row.pixels)


def write_parquet(path: Path, rows: list[Row], columns: list[str]) -> Path:
    """One Hugging Face style shard: alphabetical columns, `image` as {bytes, path}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"image": [{"bytes": member_bytes(r), "path": r.filename} for r in rows],
            "filename": [r.filename for r in rows]}
    for column in columns:  # a blank CSV cell is a null
        data[column] = [int(r.values[column]) if r.values.get(column, "") != "" else None for r in rows]
    ordered = {k: data[k] for k in sorted(data)}
    schema = pa.schema([(k, pa.struct([("bytes", pa.binary()), ("path", pa.string())]) if k == "image"
                         else pa.string() if k == "filename" else pa.int64()) for k in ordered])
    pq.write_table(pa.table(ordered, schema=schema), path, row_group_size=16)
    return path


def expected_pixels(row: Row, size: int, channels: int = 1) -> np.ndarray:
    """What the builder must store: the JPEG decoded by PIL, to gray or RGB, resized whole, bilinear."""
    image = Image.open(io.BytesIO(jpeg(row.pixels))).convert("L" if channels == 1 else "RGB")
    array = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    return array[:, :, None] if channels == 1 else array
