"""`vwwtorch predict`: label and score for image files, for a checkpoint or its int8 export.

Both get the same pixels (`file_pixels`, the deployment rule): a file at the model's size as it is,
any other the eval crop and resize. The checkpoint sees them normalized, the int8 model through its
byte-to-int8 table, as the firmware feeds camera bytes.
"""

from __future__ import annotations

import csv
from pathlib import Path

from vwwtorch.plumbing.defaults import HelpFormatter
from vwwtorch.plumbing.names import printable
from vwwtorch.plumbing.outputs import check_file, staged_file


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="classify image files or folders with a checkpoint or an int8 .tflite",
        formatter_class=HelpFormatter,
        description="Run a trained checkpoint (its EMA weights) or an int8 .tflite from `vwwtorch export` "
                    "on image files or every image in a folder; prints label and score per image, "
                    "optionally writes a CSV. Both see the same pixels: an image already at the model's "
                    "size as it is, any other the eval preprocessing (central 87.5% crop, resize). An "
                    "int8 model gets them as the firmware feeds camera bytes (the byte-to-int8 table "
                    "derived from its input quantization; int8 = byte - 128 for the usual models).")
    p.add_argument("paths", nargs="+", help="image files and/or folders (searched recursively)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt_path", "--ckpt", help="Lightning checkpoint from `vwwtorch fit`")
    source.add_argument("--tflite", help="int8 .tflite from `vwwtorch export`")
    p.add_argument("--labels", help="class names, one per line (with --tflite; default: labels.txt next to it)")
    p.add_argument("--output", help="also write results to this CSV file")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.set_defaults(func=_run)


def collect_images(paths: list[str]) -> list[Path]:
    from vwwtorch.plumbing.errors import UserError
    from vwwtorch.contract.images import IMAGE_SUFFIXES

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise UserError(f"folder {printable(path)} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{printable(path)} does not exist")
    return files


def file_pixels(path: Path, resolution: int, channels: int):
    """uint8 HWC: the file through the deployment rule (as it is at the model's size, else the eval
    crop and resize). The checkpoint and the int8 model get these same pixels."""
    import numpy as np
    import torch

    from vwwtorch.contract.deployment import input_bytes
    from vwwtorch.contract.images import read_pixels

    image = torch.from_numpy(read_pixels(path, channels)).permute(2, 0, 1)
    return np.ascontiguousarray(input_bytes(image, resolution, channels).permute(1, 2, 0).numpy())


def _run(args) -> None:
    import numpy as np
    import torch

    from vwwtorch.contract.deployment import normalization
    from vwwtorch.plumbing.errors import UserError
    from vwwtorch.plumbing.progress import progress_bar
    from vwwtorch.training.checkpoint import load_classifier

    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if args.output:
        args.output = check_file(args.output, flag="--output")
    if args.tflite:
        return _run_tflite(args)
    model = load_classifier(args.ckpt_path)
    hp = model.hparams
    files = collect_images(args.paths)
    rows = []
    with torch.inference_mode():
        for start in progress_bar(range(0, len(files), args.batch_size), desc="predicting", unit="batch",
                                  disable=len(files) <= args.batch_size):
            chunk = files[start:start + args.batch_size]
            pixels = np.stack([file_pixels(path, hp.resolution, hp.in_channels) for path in chunk])
            images = normalization(model.model.input_range).real(torch.from_numpy(pixels).permute(0, 3, 1, 2))
            probs = torch.softmax(model(images), dim=1)
            for path, p in zip(chunk, probs):
                label = int(p.argmax())
                rows.append((printable(path), model.class_names[label], float(p[label]), p.tolist()))
    _print_rows(rows)
    if args.output:
        _write_csv(args.output, rows, model.class_names)
        print(f"wrote {printable(args.output)}")


def _tflite_labels(args, num_classes: int) -> list[str]:
    from vwwtorch.plumbing.errors import UserError

    from vwwtorch.plumbing.text_files import read_lines

    path = Path(args.labels) if args.labels else Path(args.tflite).with_name("labels.txt")
    if not path.is_file() and not args.labels:
        return [str(i) for i in range(num_classes)]
    names = read_lines(path)
    if len(names) != num_classes:
        raise UserError(f"{printable(path)} lists {len(names)} labels but the model has {num_classes} classes")
    return names


def _run_tflite(args) -> None:
    import numpy as np

    from vwwtorch.contract.litert import TFLiteModel
    from vwwtorch.plumbing.errors import UserError

    model = TFLiteModel(args.tflite, device_kernels=True)  # the device's own kernels (TFLM)
    if not model.is_int8:
        raise UserError(f"{args.tflite} is not a full-integer int8 model (input {model.input_dtype}, "
                        f"output {model.output_dtype})")
    _, height, width, channels = model.input_shape
    if height != width:
        raise UserError(f"{args.tflite} takes {height}x{width} input; vwwtorch models are square")
    names = _tflite_labels(args, model.num_classes)
    files = collect_images(args.paths)
    pixels = np.stack([file_pixels(path, height, channels) for path in files])
    probs = model.probabilities(pixels, progress=len(files) > args.batch_size)
    rows = []
    for path, p in zip(files, probs):
        label = int(p.argmax())
        rows.append((printable(path), names[label], float(p[label]), p.tolist()))
    _print_rows(rows)
    if args.output:
        _write_csv(args.output, rows, names)
        print(f"wrote {printable(args.output)}")


def _print_rows(rows) -> None:
    width = max(len(r[0]) for r in rows)
    for path, label, score, _ in rows:
        print(f"{path:<{width}}  {label:<12} {score:.4f}")


def _write_csv(path, rows, class_names) -> None:
    with staged_file(path, "w", newline="", encoding="utf-8", checked=True, flag="--output") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "score", *[f"p_{c}" for c in class_names]])
        for file, label, score, probs in rows:
            writer.writerow([file, label, f"{score:.6f}", *[f"{p:.6f}" for p in probs]])
