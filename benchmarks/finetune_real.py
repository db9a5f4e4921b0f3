"""Fine-tuning a real person detector on real photos and shipping it at int8: float, post-training
int8 and QAT int8 accuracy, per epoch, against the source's own int8 model.

Real photos: a VWW dataset you built with `vwwtorch data vww` (for example from a small COCO-format
subset: `--train-images/--val-images/--train-annotations/--val-annotations`). Two runs of the
README's fine-tuning command (configs/finetune_person.yaml, from pretrained:person-gray-96), one as
shipped (`--model.qat true`) and one without QAT, every epoch's checkpoint kept. For each epoch:

    float          the checkpoint's float network (weights unquantized, BatchNorm as trained)
    PTQ int8       the no-QAT run's network quantized after training as `vwwtorch export` does it
                   (ranges: min/max over calibration images), computed in TFLM's integer arithmetic
    QAT int8       the QAT run's simulated int8 network, which its export equals (the parity gate)

and, once, the source: TFLM's person_detect.tflite under the tflite_micro runtime. The last epoch
of each run is then exported for real (`vwwtorch export`), and the TFLM accuracy of the int8 files
is printed beside the simulated figures.

`--synthetic DIR` does the same from scratch on the built-in scenes (`vwwtorch data synthetic`,
configs/quickstart.yaml) at each `--widths`, where the post-training drop shows.

    python benchmarks/finetune_real.py --data data/coco_vww [--epochs 20]
    python benchmarks/finetune_real.py --synthetic data/synthetic --widths 0.1 0.25 [--epochs 20]

Needs `vwwtorch firmware deps` (TFLM holds person_detect.tflite) for the real-photo part.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CALIBRATION_IMAGES = 300   # `vwwtorch export --num-calibration`'s default


def cli(*argv) -> None:
    from vwwtorch.cli import main

    code = main([str(a) for a in argv])
    if code != 0:
        sys.exit(f"vwwtorch {' '.join(map(str, argv))} exited {code}")


def fit(config: Path, data: Path, root: Path, epochs: int, *extra) -> list[Path]:
    """One `vwwtorch fit` with every epoch's checkpoint kept; the checkpoints in epoch order."""
    cli("fit", "--config", config, "--data.data_dir", data, "--trainer.max_epochs", epochs,
        "--trainer.logger.init_args.save_dir", root, "--trainer.enable_progress_bar", "false",
        "--checkpoint.dirpath", root / "checkpoints", "--checkpoint.save_top_k", -1,
        "--checkpoint.every_n_epochs", 1, "--checkpoint.filename", "epoch{epoch:03d}",
        "--checkpoint.auto_insert_metric_name", "false", *extra)
    return sorted((root / "checkpoints").glob("epoch*.ckpt"))


def images(data: Path, split: str, count: int, module):
    from vwwtorch.bridge.calibration import load_eval_images

    hp = module.hparams
    return load_eval_images(data, split, count, hp.in_channels, hp.resolution, progress=False,
                            input_range=module.model.input_range)


def nchw(eval_images) -> torch.Tensor:
    return torch.from_numpy(eval_images.images).permute(0, 3, 1, 2)


@torch.no_grad()
def post_training_simulation(module, calibration):
    """The network `vwwtorch export` would calibrate: every output's range the min and max of the float
    network over the calibration images, weights per channel, all in TFLite's integer arithmetic."""
    import torch.nn.functional as F

    from vwwtorch.contract.int8_arithmetic import asymmetric_parameters
    from vwwtorch.models.int8_simulation import Int8Simulation

    model = module.model.eval()
    simulation = Int8Simulation(model).eval()
    x = nchw(calibration)
    layers = model.conv_layers()
    for index, layer in enumerate(layers):
        x = layer(x)
        simulation.set_output_quantization(index, *asymmetric_parameters(x.min().item(), x.max().item()))
    logits = model.classify(F.avg_pool2d(x, kernel_size=x.shape[-2:]))
    simulation.set_output_quantization(len(layers), *asymmetric_parameters(logits.min().item(), logits.max().item()))
    return simulation


@torch.no_grad()
def accuracies(checkpoint: Path, data: Path, val, calibration) -> dict:
    from vwwtorch.training.checkpoint import load_classifier

    module = load_classifier(checkpoint)
    x, labels = nchw(val), val.labels
    out = {"float": float((module.model(x).argmax(1).numpy() == labels).mean())}
    if module.int8 is not None:
        out["qat int8"] = float((module(x).argmax(1).numpy() == labels).mean())
    else:
        simulation = post_training_simulation(module, calibration)
        out["ptq int8"] = float((simulation.integer_logits(module.model, x).argmax(1).numpy() == labels).mean())
    return out


def exported(checkpoint: Path, data: Path, out: Path, val_count: int) -> str:
    """`vwwtorch export` of `checkpoint`: the int8 file's TFLM accuracy, and whether every gate passed."""
    import json

    from vwwtorch.cli import main

    code = main(["export", "--ckpt", str(checkpoint), "--data", str(data), "--out", str(out),
                 "--num-parity", str(val_count)])
    if code not in (0, 1):
        sys.exit(f"vwwtorch export of {checkpoint} exited {code}")
    report = json.loads((out / "parity.json").read_text())
    seam = next(s for s in report["seams"] if s["key"] == "torch_vs_tflite_int8")["metrics"]
    verdict = "verified" if report["passed"] else "gate FAILED: " + "; ".join(report["failures"])[:120]
    return (f"{report['notes']['tflm_accuracy']:.3f} ({seam['disagreements']} of {seam['images']} images flip "
            f"from the trained model; {verdict})")


def source_accuracy(data: Path) -> float:
    from vwwtorch.bridge.calibration import load_eval_images
    from vwwtorch.contract.litert import TFLiteModel
    from vwwtorch.contract.tflm import run_tflm
    from vwwtorch.training.foreign.pretrained import REGISTRY, install

    source = install(REGISTRY["person-gray-96"], quiet=True)[0].read_bytes()
    val = load_eval_images(data, "val", 10 ** 9, 1, 96, progress=False)
    raw, _ = run_tflm(source, TFLiteModel(source).model_inputs(val.pixels))
    return float((raw.argmax(1) == val.labels).mean())


def curves(config: Path, data: Path, root: Path, epochs: int, extra: tuple, val_count: int) -> tuple[list, dict]:
    """Per epoch: float and QAT int8 (QAT run), float and PTQ int8 (the same run without QAT); and the
    exported last epochs' TFLM accuracy."""
    from vwwtorch.training.checkpoint import load_classifier

    started = time.monotonic()
    qat = fit(config, data, root / "qat", epochs, *extra, "--model.qat", "true")
    ptq = fit(config, data, root / "ptq", epochs, *extra, "--model.qat", "false")
    trained = time.monotonic() - started
    module = load_classifier(qat[0])
    val, calibration = images(data, "val", val_count, module), images(data, "train", CALIBRATION_IMAGES, module)
    rows = []
    for epoch, (q, p) in enumerate(zip(qat, ptq)):
        a, b = accuracies(q, data, val, calibration), accuracies(p, data, val, calibration)
        rows.append({"epoch": epoch, "float (QAT run)": a["float"], "QAT int8": a["qat int8"],
                     "float (no QAT)": b["float"], "PTQ int8": b["ptq int8"]})
        print(f"  epoch {epoch}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].items() if k != "epoch"),
              flush=True)
    final = {"QAT export, TFLM accuracy": exported(qat[-1], data, root / "export-qat", val_count),
             "PTQ export, TFLM accuracy": exported(ptq[-1], data, root / "export-ptq", val_count),
             "training (both runs)": f"{trained:.0f} s"}
    return rows, final


def print_table(title: str, rows: list, final: dict, source: float | None) -> None:
    print(f"\n{title}")
    columns = [k for k in rows[0] if k != "epoch"]
    print("| epoch | " + " | ".join(columns) + (" | source int8 |" if source is not None else " |"))
    print("|---:|" + "---:|" * (len(columns) + (source is not None)))
    for row in rows:
        cells = " | ".join(f"{row[k]:.3f}" for k in columns)
        print(f"| {row['epoch']} | {cells} |" + (f" {source:.3f} |" if source is not None else ""))
    print("last epoch, exported:")
    for key, value in final.items():
        print(f"- {key}: {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a grayscale VWW dataset of real photos (vwwtorch data vww)")
    parser.add_argument("--synthetic", type=Path, help="the built-in dataset (vwwtorch data synthetic)")
    parser.add_argument("--widths", type=float, nargs="+", default=[0.1, 0.25])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--val", type=int, default=1000, help="validation images per evaluation (default: 1000)")
    args = parser.parse_args()
    if not (args.data or args.synthetic):
        parser.error("give --data (real photos) or --synthetic (the built-in scenes), or both")
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.data:
            source = source_accuracy(args.data)
            rows, final = curves(REPO / "configs" / "finetune_person.yaml", args.data, root / "real", args.epochs,
                                 (), args.val)
            print_table(f"Fine-tuning pretrained:person-gray-96 on {args.data} ({args.epochs} epochs, "
                        "configs/finetune_person.yaml)", rows, final, source)
        for width in args.widths if args.synthetic else ():
            rows, final = curves(REPO / "configs" / "quickstart.yaml", args.synthetic, root / f"w{width}",
                                 args.epochs, ("--model.width", width), args.val)
            print_table(f"From scratch on {args.synthetic}, width {width} ({args.epochs} epochs, "
                        "configs/quickstart.yaml)", rows, final, None)


if __name__ == "__main__":
    main()
