"""Throughput and peak memory of `vwwtorch data vww` on a generated COCO-like tree.

Generates N photo-like 640x480 JPEGs (textured, noisy, ~COCO file sizes) with a COCO 2014 annotation
layout, then builds the VWW dataset in a child process for each configuration while sampling the
resident memory of the whole process tree (builder + workers). Prints one table row per config:

    decode img/s    images / wall time of the parallel decode phase (what --workers speeds up)
    end-to-end      images / wall time of the whole command (start, annotations, decode, assembly)
    CPU ms/img      user+sys CPU time of builder and workers per image: unlike img/s, this does not
                    depend on what else the machine is running
    RSS             peak of the builder process alone, and of the sum over the process tree

The files are freshly written, so they are read from the page cache: this measures CPU cost, not
disk speed (COCO at 250 img/s needs ~40 MB/s of reads).

    python benchmarks/build_vww.py --images 2000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

RUNNER = """
import json, sys, time
from vwwtorch.data.coco_vww_builder import build_vww
from vwwtorch.data.coco_vww import coco_sources
coco, out, workers, channels, fast = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
r = build_vww(out, coco_sources(coco), workers=workers, channels=channels, fast_decode=fast, progress=False)
print(json.dumps({"decoded": r.decoded, "seconds": r.seconds, "counts": r.counts}))
"""


def _textures(rng: np.random.Generator, count: int, width: int, height: int) -> list[np.ndarray]:
    """Smooth colour fields plus fine detail, the mix that gives JPEGs photo-like sizes."""
    textures = []
    for _ in range(count):
        coarse = rng.uniform(0, 255, size=(12, 16, 3)).astype(np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
        mid = rng.uniform(-40, 40, size=(height // 8, width // 8, 3)).astype(np.float32)
        mid = np.kron(mid, np.ones((8, 8, 1), dtype=np.float32))
        textures.append(smooth + 0.5 * mid)
    return textures


def make_tree(root: Path, images: int, width: int, height: int, seed: int = 0) -> float:
    """COCO 2014-like tree under `root`; returns the mean JPEG size in KB."""
    rng = np.random.default_rng(seed)
    textures = _textures(rng, 16, width, height)
    sources = {"train2014": {"images": [], "annotations": []}, "val2014": {"images": [], "annotations": []}}
    total_bytes = 0
    ann_id = 1
    for image_id in range(1, images + 1):
        source = "train2014" if image_id % 5 else "val2014"
        pixels = np.roll(textures[image_id % len(textures)], shift=int(rng.integers(0, width)), axis=1).copy()
        for _ in range(int(rng.integers(2, 6))):  # a few objects with hard edges
            x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
            pixels[y0:y0 + int(rng.integers(20, 200)), x0:x0 + int(rng.integers(20, 200))] = rng.uniform(0, 255, 3)
        pixels += rng.normal(0, 10, size=pixels.shape).astype(np.float32)  # sensor noise
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
        name = f"COCO_{source}_{image_id:012d}.jpg"
        folder = root / source
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(buf.getvalue())
        total_bytes += buf.tell()
        sources[source]["images"].append({"id": image_id, "file_name": name, "width": width, "height": height})
        if rng.random() < 0.45:
            area = float(rng.uniform(0.001, 0.3) * width * height)
            sources[source]["annotations"].append({"id": ann_id, "image_id": image_id, "category_id": 1,
                                                   "area": area, "bbox": [0, 0, 10, 10], "iscrowd": 0})
            ann_id += 1
    (root / "annotations").mkdir(exist_ok=True)
    for source, content in sources.items():
        payload = {"categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}], **content}
        (root / "annotations" / f"instances_{source}.json").write_text(json.dumps(payload))
    return total_bytes / images / 1024


def run_build(coco: Path, out: Path, workers: int, channels: int, fast: bool) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(coco), str(out), str(workers), str(channels),
                             "1" if fast else "0"], stdout=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    peak_main = peak_tree = 0
    while proc.poll() is None:
        try:
            main_rss = parent.memory_info().rss
            tree = main_rss + sum(c.memory_info().rss for c in parent.children(recursive=True))
        except psutil.Error:  # a process ended between listing and reading
            time.sleep(0.02)
            continue
        peak_main, peak_tree = max(peak_main, main_rss), max(peak_tree, tree)
        time.sleep(0.05)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's workers are reaped by the builder
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stdout = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"build failed with exit code {proc.returncode}")
    result = json.loads(stdout.strip().splitlines()[-1])
    from vwwtorch.data.format import open_split
    stored = sum(len(open_split(out, s)) for s in ("train", "val"))
    assert stored == result["decoded"], (stored, result)
    shutil.rmtree(out, ignore_errors=True)
    return {"decode_rate": result["decoded"] / result["seconds"], "end_to_end": result["decoded"] / wall,
            "wall": wall, "cpu_ms": 1000 * cpu / result["decoded"], "peak_main_mb": peak_main / 2**20,
            "peak_tree_mb": peak_tree / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000, help="generated JPEGs (default: %(default)s)")
    parser.add_argument("--size", default="640x480", help="JPEG width x height (default: %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to run")
    parser.add_argument("--compare", action="store_true",
                        help="also run --workers 2 without DCT-domain downscaling, and RGB (--channels 3)")
    parser.add_argument("--dir", help="working folder (default: a temporary folder, removed afterwards)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        coco = Path(tmp) / "coco"
        t0 = time.perf_counter()
        mean_kb = make_tree(coco, args.images, width, height)
        print(f"generated {args.images} {width}x{height} JPEGs (mean {mean_kb:.0f} KB) in "
              f"{time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f} before the builds")
        configs = [(w, 1, True) for w in args.workers]
        if args.compare:
            configs += [(2, 1, False), (2, 3, True)]
        print("| images | channels | workers | DCT draft | decode img/s | end-to-end img/s | wall s "
              "| CPU ms/img | peak RSS builder MB | peak RSS tree MB |")
        print("|---:|---:|---:|:---:|---:|---:|---:|---:|---:|---:|")
        for workers, channels, fast in configs:
            r = run_build(coco, Path(tmp) / "vww", workers, channels, fast)
            print(f"| {args.images} | {channels} | {workers} | {'yes' if fast else 'no'} | {r['decode_rate']:.0f} "
                  f"| {r['end_to_end']:.0f} | {r['wall']:.1f} | {r['cpu_ms']:.2f} | {r['peak_main_mb']:.0f} "
                  f"| {r['peak_tree_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
