"""`vwwtorch fit|validate|test` through LightningCLI.

Always-on callbacks (each configurable from YAML or flags under its own key):
`--checkpoint.*` ModelCheckpoint (best on val/acc + a last.ckpt kept current), `--ema.*` the book's weight EMA,
`--lr_monitor.*` learning-rate logging. The data's resolution and channels follow the model's, and
the model's classes follow the dataset's.
"""

from __future__ import annotations

import sys

from pytorch_lightning.callbacks import LearningRateMonitor, RichProgressBar
from pytorch_lightning.cli import LightningCLI

from vwwtorch.data.datamodule import VWWDataModule
from vwwtorch.training.ema import TFWeightEMA
from vwwtorch.training.checkpoint import BestAndLastCheckpoint, read_checkpoint
from vwwtorch.training.module import ARCH_KEYS, VWWClassifier, check_architecture


class VWWLightningCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(BestAndLastCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/acc",
            "checkpoint.mode": "max",
            "checkpoint.save_last": True,
            "checkpoint.filename": "best-epoch{epoch:03d}-acc{val/acc:.4f}",
            "checkpoint.auto_insert_metric_name": False,
        })
        parser.add_lightning_class_args(TFWeightEMA, "ema")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.link_arguments("model.resolution", "data.resolution")
        parser.link_arguments("model.in_channels", "data.channels")
        parser.link_arguments("data.classes", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        # Lightning would torch.load the file itself (a traceback on a bad file) and silently replace
        # the configured model by the checkpoint's; we fail clearly on both instead.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry"):
            checkpoint = read_checkpoint(ckpt_path)
            model_config = self.config[subcommand]["model"]
            configured = {k: model_config[k] for k in ARCH_KEYS if k in model_config}  # num_classes: from data
            check_architecture(checkpoint, configured, f"checkpoint {ckpt_path}")
        super()._parse_ckpt_path()

    def instantiate_trainer(self, **kwargs):
        # Rich progress bar unless the user switched bars off (a callback would then be an error).
        trainer_config = self.config_init[self.subcommand]["trainer"] if self.subcommand else self.config_init["trainer"]
        if trainer_config.get("enable_progress_bar") is not False:
            kwargs.setdefault("callbacks", []).append(RichProgressBar())
        return super().instantiate_trainer(**kwargs)


TRAINER_DEFAULTS = {
    "accelerator": "auto",
    # Our sampler shards across ranks itself and keeps augmentation seeded per sample.
    "use_distributed_sampler": False,
    "logger": {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
               "init_args": {"save_dir": "runs", "name": "vww"}},
}


def run_lightning_cli(argv: list[str]) -> VWWLightningCLI:
    # LightningCLI warns when it gets `args` while sys.argv holds other arguments (quickstart, tests),
    # and its DDP launcher re-runs sys.argv in each worker; so argv is presented as the command line.
    saved = sys.argv
    sys.argv = [saved[0] if saved else "vwwtorch", *argv]
    try:
        return VWWLightningCLI(
            VWWClassifier,
            VWWDataModule,
            seed_everything_default=0,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "vwwtorch"},
        )
    finally:
        sys.argv = saved
