"""Transfer learning from a real person detector vs from scratch vs from the synthetic quickstart model.

A folder dataset is generated (PNG files, `vwwtorch data folder`): 96x96 grayscale scenes in three
classes that none of the starting models was trained on: a bright disc, a dark bar, or neither, on
lit, noisy backgrounds with clutter. Few training images (default 300) and the same budget for each
start: the same recipe, epochs, batch size, seed and augmentation; all layers train.

Starts:
- pretrained:person-gray-96 (TFLM's person detector, trained on COCO photos);
- from scratch (slim's initialization);
- the synthetic quickstart model: MobileNetV1 trained here on the built-in dataset for a few epochs
  (or `--quickstart-ckpt` to give one).

Prints validation accuracy after each epoch and the time per run.

    python benchmarks/finetune_from_pretrained.py [--train 300] [--val 300] [--epochs 6]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

CLASSES = ("bar", "disc", "neither")


def write_images(root: Path, count: int, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    size = 128
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(count):
        label = CLASSES[i % 3]
        img = rng.uniform(60, 160) + rng.uniform(-40, 40) * (xx / size - 0.5) + rng.normal(0, 14, (size, size))
        for _ in range(rng.integers(1, 4)):      # clutter: soft rectangles of either sign
            x0, y0 = rng.integers(0, size - 20, 2)
            img[y0:y0 + rng.integers(4, 16), x0:x0 + rng.integers(4, 16)] += rng.uniform(-40, 40)
        if label == "disc":
            cx, cy = rng.uniform(25, size - 25, 2)
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < rng.uniform(8, 20) ** 2] += rng.uniform(50, 90)
        elif label == "bar":
            x0, y0 = rng.integers(10, size - 60, 2)
            if rng.random() < 0.5:
                img[y0:y0 + rng.integers(6, 10), x0:x0 + rng.integers(35, 55)] -= rng.uniform(50, 90)
            else:
                img[y0:y0 + rng.integers(35, 55), x0:x0 + rng.integers(6, 10)] -= rng.uniform(50, 90)
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"img{seed}_{i:05d}.png")


class ValCurve:
    def __init__(self):
        import pytorch_lightning as pl

        class Curve(pl.Callback):
            def __init__(self):
                self.accuracy = []

            def on_train_epoch_end(self, trainer, pl_module):
                # Validation has run by now (Lightning validates at the end of each training epoch).
                self.accuracy.append(float(trainer.callback_metrics["val/acc"]))

        self.callback = Curve()


def fine_tune(data_dir: Path, init_from: str | None, args, root: Path, num_classes: int, names: list[str]):
    import pytorch_lightning as pl

    from vwwtorch.data.datamodule import VWWDataModule
    from vwwtorch.training.ema import TFWeightEMA
    from vwwtorch.training.module import VWWClassifier

    pl.seed_everything(0, verbose=False)
    model = VWWClassifier(num_classes=num_classes, class_names=names, init_from=init_from, learning_rate=args.lr,
                          epochs_per_decay=1.0, lr_decay_factor=0.9, bn_momentum=0.01, image_log_every_n_steps=0)
    data = VWWDataModule(str(data_dir), batch_size=32, num_workers=0)
    curve = ValCurve().callback
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=args.epochs, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                         default_root_dir=str(root), callbacks=[TFWeightEMA(), curve])
    started = time.perf_counter()
    trainer.fit(model, data)
    return curve.accuracy, time.perf_counter() - started


def quickstart_model(root: Path, epochs: int) -> Path:
    import pytorch_lightning as pl

    from vwwtorch.data.datamodule import VWWDataModule
    from vwwtorch.data.synthetic import generate
    from vwwtorch.training.ema import TFWeightEMA
    from vwwtorch.training.module import VWWClassifier

    data = generate(str(root / "synthetic"), train=6000, val=200, test=0, seed=0, progress=False)
    pl.seed_everything(0, verbose=False)
    model = VWWClassifier(class_names=["no_person", "person"], bn_momentum=0.1, image_log_every_n_steps=0)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                         default_root_dir=str(root), callbacks=[TFWeightEMA()])
    trainer.fit(model, VWWDataModule(data, batch_size=32, num_workers=0))
    print(f"quickstart model: val/acc {float(trainer.callback_metrics['val/acc']):.3f} after {epochs} epochs")
    trainer.save_checkpoint(root / "quickstart.ckpt")
    return root / "quickstart.ckpt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=300, help="training images (default: 300)")
    parser.add_argument("--val", type=int, default=300, help="validation images (default: 300)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--quickstart-ckpt", type=Path, help="a quickstart checkpoint (default: train one, 4 epochs)")
    parser.add_argument("--quickstart-epochs", type=int, default=4)
    args = parser.parse_args()

    from vwwtorch.cli import main as cli
    from vwwtorch.training.foreign.pretrained import checkpoint_path

    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    pretrained = checkpoint_path("person-gray-96")   # installs it (from the TFLM cache) if needed
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = root / "images"
        write_images(images, args.train + args.val, seed=0)
        # Validation share by file-name hash: ask for val/(train+val) of the files.
        share = round(100 * args.val / (args.train + args.val))
        assert cli(["data", "folder", "--image-dir", str(images), "--out", str(root / "data"),
                    "--validation-percentage", str(share), "--testing-percentage", "0", "--image-size", "128",
                    "--workers", "1"]) == 0
        quick = args.quickstart_ckpt or quickstart_model(root, args.quickstart_epochs)
        rows = []
        for name, start in (("pretrained:person-gray-96", str(pretrained)), ("from scratch", None),
                            ("synthetic quickstart model", str(quick))):
            curve, seconds = fine_tune(root / "data", start, args, root, len(CLASSES), list(CLASSES))
            rows.append((name, curve, seconds))
    print(f"\nFine-tuning, {args.train} train / {args.val} val images, 3 classes ({', '.join(CLASSES)}), "
          f"{args.epochs} epochs, lr {args.lr}, all layers")
    print("| start | val/acc per epoch | best | time |")
    print("|---|---|---|---|")
    for name, curve, seconds in rows:
        print(f"| {name} | {' '.join(f'{a:.3f}' for a in curve)} | {max(curve):.3f} | {seconds:.0f} s |")


if __name__ == "__main__":
    main()
