"""Head-training speed with and without the bottleneck cache (`BottleneckTraining`).

Trains the classifier of MobileNetV1 0.25 (96x96x1 by default) on a frozen backbone loaded with
`init_from`, over the built-in dataset, with the real `Trainer` and data module (no validation),
and times training epochs in four modes:

- full fine-tuning: every layer trains (no freezing), for reference;
- head only, no cache: the frozen backbone runs forward on every image every epoch;
- head only, cache cold: first epoch, features computed and stored;
- head only, cache warm: a new run, every feature read from the on-disk cache.

    python benchmarks/bottleneck.py [--train-images 1920] [--resolution 96] [--batch-size 32] [--threads N]
"""

import argparse
import tempfile
import time
from pathlib import Path


class EpochTimer:
    def __init__(self):
        import pytorch_lightning as pl

        class Timer(pl.Callback):
            def __init__(self):
                self.seconds = []

            def on_train_epoch_start(self, trainer, pl_module):
                self._start = time.perf_counter()

            def on_train_epoch_end(self, trainer, pl_module):
                self.seconds.append(time.perf_counter() - self._start)

        self.callback = Timer()


def fit(data_dir: str, args, callbacks, init_from=None, epochs=1, root=None):
    import pytorch_lightning as pl

    from vwwtorch.data.datamodule import VWWDataModule
    from vwwtorch.data.transforms import Augmentation
    from vwwtorch.training.module import VWWClassifier

    pl.seed_everything(0, verbose=False)
    model = VWWClassifier(resolution=args.resolution, init_from=init_from, image_log_every_n_steps=0)
    still = Augmentation(crop_area=(1, 1), crop_aspect=(1, 1), hflip=False, brightness=0, contrast=0)
    data = VWWDataModule(data_dir, batch_size=args.batch_size, num_workers=args.workers,
                         resolution=args.resolution, augmentation=still)
    timer = EpochTimer().callback
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, limit_val_batches=0, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         use_distributed_sampler=False, num_sanity_val_steps=0, default_root_dir=root,
                         callbacks=[*callbacks, timer])
    trainer.fit(model, data)
    return trainer, timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-images", type=int, default=1920)
    parser.add_argument("--resolution", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import logging
    import warnings

    import torch

    from vwwtorch.data.synthetic import generate
    from vwwtorch.training.bottleneck import BottleneckTraining

    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data_dir = generate(str(root / "data"), train=args.train_images, val=32, test=0, seed=0, progress=False)
        # A checkpoint to transfer from (its weights do not matter for speed).
        trainer, _ = fit(data_dir, args, [], epochs=1, root=tmp)
        ckpt = root / "source.ckpt"
        trainer.save_checkpoint(ckpt)

        rows = []
        _, seconds = fit(data_dir, args, [], epochs=2, root=tmp)
        rows.append(("full fine-tuning (all layers)", seconds[-1]))
        _, seconds = fit(data_dir, args, [BottleneckTraining(use_cache=False)], init_from=str(ckpt), epochs=2, root=tmp)
        rows.append(("head only, no cache", seconds[-1]))
        no_cache = seconds[-1]
        cache = str(root / "cache")
        _, seconds = fit(data_dir, args, [BottleneckTraining(cache_dir=cache)], init_from=str(ckpt), root=tmp)
        rows.append(("head only, cache cold (1st epoch)", seconds[0]))
        callback = BottleneckTraining(cache_dir=cache)
        _, seconds = fit(data_dir, args, [callback], init_from=str(ckpt), epochs=2, root=tmp)
        assert callback.misses == 0, "the second run should find every feature in the cache"
        rows.append(("head only, cache warm (new run)", min(seconds)))

    images = (args.train_images // args.batch_size) * args.batch_size
    print(f"MobileNetV1 0.25, {args.resolution}x{args.resolution}x1, {images} training images per epoch, "
          f"batch {args.batch_size}, {args.workers} loader workers, {torch.get_num_threads()} torch threads")
    print(f"{'mode':<36}{'s/epoch':>9}{'img/s':>9}{'vs no cache':>13}")
    for name, secs in rows:
        print(f"{name:<36}{secs:>9.2f}{images / secs:>9.0f}{no_cache / secs:>12.1f}x")


if __name__ == "__main__":
    main()
