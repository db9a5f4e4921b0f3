"""The real person detectors through vwwtorch: import, re-export, and how close the result is to the source.

For each registry entry (`vwwtorch pretrained list`) whose files are installed:
- person-gray-96 (TFLM's person_detect.tflite): `pretrained get` -> `export` (the kept int8 ranges)
  -> int8 outputs of the re-export against the source's, on TFLM's testdata frames, MLPerf's inputs
  and N generated images; the float checkpoint's top-1 against the source int8's; then the
  re-export built into the host firmware, its printed scores against the source under TFLM.
- person-rgb-96 (MLPerf's vww_96.h5, with vww_96_int8.tflite's ranges): the same against MLPerf's
  int8 model, on MLPerf's inputs (gray on three channels) and N generated RGB images.

Scores are the int8 softmax outputs (LSB = 1/256), run with LiteRT's reference kernels. The
generated images are synthetic scenes (grayscale; tinted for RGB), not people.

    python benchmarks/pretrained.py [--images 600]

Needs `vwwtorch firmware deps` (TFLM holds person_detect.tflite) and, for person-rgb-96,
`vwwtorch pretrained get person-rgb-96 --out person-rgb-96.ckpt`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def cli(*argv) -> None:
    from vwwtorch.cli import main

    code = main([str(a) for a in argv])
    if code != 0:
        sys.exit(f"vwwtorch {' '.join(map(str, argv))} exited {code}")


def int8_raw(model, pixels):
    from vwwtorch.contract.litert import TFLiteModel

    return TFLiteModel(model, reference_kernels=True).raw_outputs(pixels).astype(np.int32)


def float_top1(ckpt, pixels):
    import torch

    from vwwtorch.contract.deployment import normalization
    from vwwtorch.training.checkpoint import load_classifier

    module = load_classifier(ckpt)
    x = normalization(module.model.input_range).real(torch.from_numpy(pixels).permute(0, 3, 1, 2))
    with torch.no_grad():
        return module(x).argmax(1).numpy()


def compare(name: str, ours, source, ckpt, pixels) -> tuple:
    a, b = int8_raw(ours, pixels), int8_raw(source, pixels)
    lsb = np.abs(a - b).max(1)
    return (name, len(pixels), f"{(a.argmax(1) == b.argmax(1)).mean():.2%}", int((lsb > 0).sum()), int(lsb.max()),
            f"{(float_top1(ckpt, pixels) == b.argmax(1)).mean():.2%}")


def rgb_dataset(root: Path, count: int) -> Path:
    from PIL import Image

    from vwwtorch.data.synthetic import render_scene

    rng = np.random.default_rng(1)
    for i in range(count):
        person = bool(i % 2)
        gray = render_scene(7, "val", i, person).astype(np.float32).reshape(128, 128, 1)
        rgb = np.clip(gray * rng.uniform(0.6, 1.2, 3) + rng.normal(0, 6, 3), 0, 255).astype(np.uint8)
        folder = root / "images" / ("person" if person else "no_person")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(folder / f"scene{i:04d}.png")
    cli("data", "folder", "--image-dir", root / "images", "--out", root / "data", "--channels", 3,
        "--validation-percentage", 90, "--testing-percentage", 5)
    return root / "data"


def firmware_scores(tflite: Path, source: Path, frames: np.ndarray, work: Path) -> str:
    from vwwtorch.contract.tflm import run_tflm
    from vwwtorch.firmware.toolchain.compiler import build
    from vwwtorch.firmware.codegen.generate import generate
    from vwwtorch.firmware.toolchain.run import run_tensors

    generate(tflite, work / "gen", board="host")
    built = build("host", work / "gen", work / "build", kernels="reference", jobs=2, quiet=True)
    tensors = (frames.astype(np.int16) - 128).astype(np.int8)
    printed = np.array([r.scores for r in run_tensors(Path(built.program).parent, tensors, timeout=300).images])
    expected, _ = run_tflm(source.read_bytes(), tensors)
    same = int((printed == expected.reshape(printed.shape)).all(axis=1).sum())
    return f"{same} of {len(frames)} frames print the source's TFLM scores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600, help="generated images per model (default: 600)")
    args = parser.parse_args()

    from vwwtorch.plumbing.cache import deps_root
    from vwwtorch.training.foreign.pretrained import REGISTRY, fetch_command, folder

    tflm = deps_root() / "tflite-micro" / "tensorflow" / "lite" / "micro"
    source_gray = tflm / "models" / "person_detect.tflite"
    testdata = tflm / "examples" / "person_detection" / "testdata"
    mlperf_files = [folder("person-rgb-96") / f.name for f in REGISTRY["person-rgb-96"].files]
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if source_gray.is_file():
            _compare_gray(root, args.images, source_gray, testdata, mlperf_files[2], rows, notes)
        else:
            notes.append(f"person-gray-96 skipped: no {source_gray} (run `vwwtorch firmware deps`)")
        if all(f.is_file() for f in mlperf_files):
            _compare_rgb(root, args.images, mlperf_files, rows, notes)
        else:
            notes.append(f"person-rgb-96 skipped: run `{fetch_command('person-rgb-96')}`")
    _print_results(rows, notes)


def _compare_gray(root: Path, images: int, source_gray: Path, testdata: Path, mlperf_inputs: Path,
                  rows: list, notes: list) -> None:
    """person-gray-96 (TFLM's person_detect.tflite): re-export, compare on three image sets, run the firmware."""
    from vwwtorch.bridge.calibration import load_eval_images
    from vwwtorch.training.foreign.frames import mlperf_input_frames, tflm_testdata_frame

    started = time.perf_counter()
    cli("pretrained", "get", "person-gray-96", "--out", root / "gray.ckpt")
    notes.append(f"person-gray-96: pretrained get {time.perf_counter() - started:.1f} s")
    cli("data", "synthetic", "--out", root / "syn", "--train", 200, "--val", images, "--test", 10)
    started = time.perf_counter()
    cli("export", "--ckpt", root / "gray.ckpt", "--data", root / "syn", "--out", root / "gray",
        "--num-calibration", 32, "--num-parity", images, "--min-agreement", 0.95)
    notes.append(f"person-gray-96: export + parity {time.perf_counter() - started:.0f} s")
    ours = root / "gray" / "model_int8.tflite"
    frames = np.stack([tflm_testdata_frame(testdata / f"{n}.bmp") for n in ("no_person", "person")])[..., None]
    rows.append(compare("person-gray-96: TFLM testdata frames", ours, source_gray, root / "gray.ckpt", frames))
    if mlperf_inputs.is_file():
        mlperf = np.stack(mlperf_input_frames(mlperf_inputs))[..., None]
        rows.append(compare("person-gray-96: MLPerf inputs", ours, source_gray, root / "gray.ckpt", mlperf))
    others = load_eval_images(root / "syn", "val", images, 1, 96, progress=False).pixels
    rows.append(compare("person-gray-96: generated scenes", ours, source_gray, root / "gray.ckpt", others))
    notes.append("person-gray-96 firmware (host, reference kernels): "
                 + firmware_scores(ours, source_gray, frames, root / "fw"))


def _compare_rgb(root: Path, images: int, mlperf_files: list[Path], rows: list, notes: list) -> None:
    """person-rgb-96 (MLPerf Tiny's reference): re-export, compare on MLPerf's inputs and generated scenes."""
    from vwwtorch.bridge.calibration import load_eval_images
    from vwwtorch.training.foreign.frames import mlperf_input_frames

    _, int8, inputs = mlperf_files  # the .h5 itself is not compared here
    cli("pretrained", "get", "person-rgb-96", "--out", root / "rgb.ckpt")
    data = rgb_dataset(root / "rgb_data", images + images // 5)
    started = time.perf_counter()
    cli("export", "--ckpt", root / "rgb.ckpt", "--data", data, "--out", root / "rgb",
        "--num-calibration", 32, "--num-parity", 10 * images)
    notes.append(f"person-rgb-96: export + parity {time.perf_counter() - started:.0f} s")
    ours = root / "rgb" / "model_int8.tflite"
    mlperf = np.repeat(np.stack(mlperf_input_frames(inputs))[..., None], 3, axis=-1)
    rows.append(compare("person-rgb-96: MLPerf inputs", ours, int8, root / "rgb.ckpt", mlperf))
    others = load_eval_images(data, "val", 10 * images, 3, 96, progress=False).pixels
    rows.append(compare("person-rgb-96: generated scenes", ours, int8, root / "rgb.ckpt", others))


def _print_results(rows: list, notes: list) -> None:
    print("| re-export vs source int8 | images | top-1 agreement | images differing | max LSB | float ckpt vs source top-1 |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print()
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
