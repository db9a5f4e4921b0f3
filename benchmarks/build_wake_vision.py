"""Build rate of `vwwtorch data wake-vision` on generated archives, and the full-size builds projected.

Generates N photo-like 640x480 JPEGs (the textures of `build_vww.py`, ~COCO / Open Images file sizes)
named like Wake Vision's files, packs them into gzipped tar archives (members flat, as published) and
writes the metadata CSVs with the published headers. Then runs the real CLI in a child process per
worker count, sampling the resident memory of the whole process tree, and prints:

    decode img/s    images / wall time of the streaming decode (what the acceptance measures)
    end-to-end      images / wall time of the whole command (CSV reading, decode, assembly)
    CPU ms/img      user+sys CPU of builder and workers per image
    RSS             peak of the builder alone and of the process tree

and, from the best measured end-to-end rate, the projected wall time and disk of the full builds
(train_quality 1,248,230 and train_large 5,760,428 images, plus validation and test, at the given
--image-size and channels). Real Wake Vision photos are larger than 640x480 on average (Open Images
originals), so treat the projection as a lower bound on time and scale it by your measured rate.

    python benchmarks/build_wake_vision.py --images 3000 --archives 3
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_vww import _textures  # noqa: E402  (same photo-like JPEGs as the COCO benchmark)

FULL = {"train_quality": 1_248_230, "train_large": 5_760_428, "validation + test": 18_582 + 55_763}
EVAL_HEADER = ("filename,person,depiction,body_part,predominantly_female,predominantly_male,gender_unknown,young,"
               "middle_age,older,age_unknown,near,medium_distance,far,dark,normal_lighting,bright,"
               "person_depiction,non-person_depiction,non-person_non-depiction").split(",")


def make_published(root: Path, images: int, archives: int, width: int, height: int, seed: int = 0) -> float:
    """Archives and CSVs under `root`; returns the mean JPEG size in KB."""
    rng = np.random.default_rng(seed)
    textures = _textures(rng, 16, width, height)
    rows = {"train": [], "validation": []}
    total = 0
    tars = [tarfile.open(root / f"wake-vision-train-{10 + i}.tar.gz", "w:gz") for i in range(archives)]
    for index in range(images):
        pixels = np.roll(textures[index % len(textures)], shift=int(rng.integers(0, width)), axis=1).copy()
        for _ in range(int(rng.integers(2, 6))):
            x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
            pixels[y0:y0 + int(rng.integers(20, 200)), x0:x0 + int(rng.integers(20, 200))] = rng.uniform(0, 255, 3)
        pixels += rng.normal(0, 10, size=pixels.shape).astype(np.float32)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
        name = f"{1000000 + index}_{int(rng.integers(0, 16**10)):010x}_o.jpg"
        info = tarfile.TarInfo(name)
        info.size = buffer.tell()
        buffer.seek(0)
        tars[index % archives].addfile(info, buffer)
        total += info.size
        split = "validation" if index % 10 == 0 else "train"
        flags = [str(int(rng.random() < 0.3)) for _ in EVAL_HEADER[2:]] if split == "validation" else []
        rows[split].append([name, str(int(rng.random() < 0.5)), *flags])
    for archive in tars:
        archive.close()
    for split, header in (("train", ["filename", "person"]), ("validation", EVAL_HEADER)):
        name = "wake_vision_train_large.csv" if split == "train" else "wake_vision_validation.csv"
        with open(root / name, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows[split])
    return total / images / 1024


def run_build(root: Path, out: Path, workers: int, size: int, channels: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "vwwtorch", "data", "wake-vision",
               "--metadata", str(root / "wake_vision_train_large.csv"), str(root / "wake_vision_validation.csv"),
               "--images", *sorted(map(str, root.glob("*.tar.gz"))), "--out", str(out),
               "--workers", str(workers), "--image-size", str(size), "--channels", str(channels)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    parent = psutil.Process(proc.pid)
    peak_main = peak_tree = 0
    cpu = 0.0
    while proc.poll() is None:
        try:
            children = parent.children(recursive=True)
            main_rss = parent.memory_info().rss
            tree = main_rss + sum(c.memory_info().rss for c in children)
            times = [parent.cpu_times()] + [c.cpu_times() for c in children]
            cpu = max(cpu, sum(t.user + t.system + getattr(t, "children_user", 0) + getattr(t, "children_system", 0)
                               for t in times))
        except psutil.Error:
            time.sleep(0.02)
            continue
        peak_main, peak_tree = max(peak_main, main_rss), max(peak_tree, tree)
        time.sleep(0.05)
    wall = time.perf_counter() - start
    printed = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"build failed with exit code {proc.returncode}")
    match = re.search(r"decoded (\d+) images in ([\d.]+) s", printed)
    decoded, seconds = int(match.group(1)), float(match.group(2))
    disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out, ignore_errors=True)
    return {"decoded": decoded, "decode_rate": decoded / seconds, "end_to_end": decoded / wall, "wall": wall,
            "cpu_ms": 1000 * cpu / decoded, "peak_main_mb": peak_main / 2**20, "peak_tree_mb": peak_tree / 2**20,
            "bytes_per_image": disk / decoded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000, help="generated JPEGs (default: %(default)s)")
    parser.add_argument("--archives", type=int, default=3, help="tar.gz archives (default: %(default)s)")
    parser.add_argument("--size", default="640x480", help="JPEG width x height (default: %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to run")
    parser.add_argument("--image-size", type=int, default=128, help="stored side (default: %(default)s)")
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3))
    parser.add_argument("--dir", help="working folder (default: a temporary folder, removed afterwards)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp) / "published"
        root.mkdir()
        t0 = time.perf_counter()
        mean_kb = make_published(root, args.images, args.archives, width, height)
        print(f"generated {args.images} {width}x{height} JPEGs (mean {mean_kb:.0f} KB) in {args.archives} archives "
              f"in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs")
        print("| images | archives | workers | decode img/s | end-to-end img/s | wall s | CPU ms/img "
              "| peak RSS builder MB | peak RSS tree MB |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        best = None
        for workers in args.workers:
            r = run_build(root, Path(tmp) / "wv", workers, args.image_size, args.channels)
            best = r if best is None or r["end_to_end"] > best["end_to_end"] else best
            print(f"| {r['decoded']} | {args.archives} | {workers} | {r['decode_rate']:.0f} | {r['end_to_end']:.0f} "
                  f"| {r['wall']:.1f} | {r['cpu_ms']:.2f} | {r['peak_main_mb']:.0f} | {r['peak_tree_mb']:.0f} |",
                  flush=True)
    print(f"\nprojected full builds at {best['end_to_end']:.0f} img/s ({args.image_size}x{args.image_size}x"
          f"{args.channels}, {best['bytes_per_image']:.0f} B per image on disk):")
    print("| build | images | wall time | dataset on disk | peak extra disk while building |")
    print("|---|---:|---:|---:|---:|")
    for name, count in FULL.items():
        hours = count / best["end_to_end"] / 3600
        gb = count * best["bytes_per_image"] / 1e9
        print(f"| {name} | {count:,} | {hours:.1f} h | {gb:.1f} GB | {gb:.1f} GB (chunks) |")


if __name__ == "__main__":
    main()
