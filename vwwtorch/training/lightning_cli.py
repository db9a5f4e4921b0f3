"""`vwwtorch fit|validate|test` through LightningCLI.

Always-on callbacks (each configurable from YAML or flags under its own key):
`--checkpoint.*` ModelCheckpoint (best on val/acc + a last.ckpt kept current), `--ema.*` the book's weight EMA,
`--lr_monitor.*` learning-rate logging. The data's resolution and channels follow the model's, and
the model's classes follow the dataset's.

Safety and clarity on top of LightningCLI:
- every checkpoint Lightning loads (`--ckpt_path FILE|last|best|hpc`) goes through
  `vwwtorch.training.checkpoint` (tensors only, checked); `--weights_only false` is refused;
- `validate` and `test` refuse to run without a checkpoint (they would score random weights);
- a parse error is one line, not the whole usage;
- Ctrl-C or SIGTERM during `fit` finishes the batch, saves a resumable `last.ckpt` and says how to
  resume (exit 130 / 143); a fit that fails before any checkpoint leaves no stray `config.yaml`.
"""

from __future__ import annotations

import shlex
import sys
import time
import warnings
from pathlib import Path

import torch
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, RichProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

from vwwtorch.contract.console import keep_tensorflow_out_of_tensorboard, route_lightning_logs
from vwwtorch.contract import stopping
from vwwtorch.contract.errors import Stopped, UserError
from vwwtorch.data.datamodule import VWWDataModule
from vwwtorch.models.mobilenet_v1 import ARCH_KEYS, VARIANTS
from vwwtorch.training.checkpoint import BestAndLastCheckpoint
from vwwtorch.training.checkpoint_file import SafeCheckpointIO, check_architecture, read_checkpoint
from vwwtorch.training.ema import TFWeightEMA
from vwwtorch.training.module import VWWClassifier

CKPT_KEYWORDS = ("last", "best", "hpc", "registry")
LAST_NAME = "last.ckpt"


class OneLineErrorParser(LightningArgumentParser):
    """A bad flag or config is one `vwwtorch: error:` line (jsonargparse prints the usage first)."""

    def error(self, message: str, ex: Exception | None = None):
        text = "; ".join(line.strip() for line in str(message).splitlines() if line.strip())
        prog = self.prog.replace(" [options]", "")
        raise UserError(f"{text} (see `{prog} --help`)")


class StopSafely(Callback):
    """Ctrl-C or SIGTERM during fit: finish the batch, save `last.ckpt` where the checkpoint callback
    keeps it, and stop with a line that says how to resume. A second Ctrl-C stops at once."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.stopped: Stopped | None = None
        self._graceful = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self._graceful = stopping.graceful()
        self._graceful.__enter__()

    def on_fit_end(self, trainer, pl_module) -> None:
        self._leave()

    def _leave(self) -> None:
        if self._graceful is not None:
            self._graceful.__exit__(None, None, None)
            self._graceful = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        signal_name = stopping.requested() or ("SIGTERM" if trainer.received_sigterm else None)
        if signal_name:
            raise self._stop(trainer, signal_name)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._leave()
        # SIGTERM seen by Lightning itself (in validation): stop the same way, at an epoch's end.
        if isinstance(exception, SIGTERMException) and self.stopped is None:
            self._stop(trainer, "SIGTERM")

    def _stop(self, trainer, signal_name: str) -> Stopped:
        self._leave()
        path = None
        callback = trainer.checkpoint_callback
        if callback is not None and callback.dirpath and trainer.is_global_zero:
            path = Path(callback.dirpath) / LAST_NAME
            # Saved at the end of a batch, like every mid-epoch checkpoint: resuming repeats nothing.
            trainer.save_checkpoint(path)
        where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
        code = stopping.SIGNAL_EXIT_CODES[signal_name]
        if path is None:
            self.stopped = Stopped(f"training stopped by {signal_name} at {where}; nothing saved (no checkpoint "
                                   "folder)", code)
        else:
            resume = shlex.join(["vwwtorch", *_without_ckpt_path(self.argv), "--ckpt_path", str(path)])
            self.stopped = Stopped(f"training stopped by {signal_name} at {where}; resumable checkpoint saved "
                                   f"to {path}; resume with: {resume}", code)
        return self.stopped


def _without_ckpt_path(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--ckpt_path":
            skip = True
            continue
        if arg.startswith("--ckpt_path="):
            continue
        out.append(arg)
    return out


class TidySaveConfig(SaveConfigCallback):
    """Lightning's config.yaml writer, minus the file it leaves when a fit fails before any checkpoint
    (with `--trainer.logger false` that file lands in the working directory)."""

    _written: Path | None = None
    _started: float = 0.0

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._started = time.time()
        log_dir = trainer.log_dir or trainer.default_root_dir
        path = Path(log_dir) / self.config_filename if log_dir else None
        existed = path is not None and path.exists()
        super().setup(trainer, pl_module, stage)
        if path is not None and not existed and path.exists():
            self._written = path

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self._written is not None and not _saved_a_checkpoint_since(trainer, self._started) \
                and trainer.is_global_zero:
            self._written.unlink(missing_ok=True)


def _saved_a_checkpoint_since(trainer, started: float) -> bool:
    """Did this run save a checkpoint (the folder may hold older ones, or the one that failed to load)?"""
    callback = trainer.checkpoint_callback
    folder = Path(callback.dirpath) if callback is not None and callback.dirpath else None
    return folder is not None and folder.is_dir() and any(p.stat().st_mtime >= started for p in folder.glob("*.ckpt"))


class VWWLightningCLI(LightningCLI):
    def __init__(self, *args, stopper: StopSafely, **kwargs):
        self._stopper = stopper
        super().__init__(*args, **kwargs)

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
        parser.link_arguments("model.input_range", "data.input_range")
        parser.link_arguments("data.classes", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return super()._parse_ckpt_path()
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        if config.get("weights_only") is False:
            raise UserError("--weights_only false is not accepted: vwwtorch loads checkpoints as tensors and "
                            "plain data only, so that a checkpoint can never run code")
        if subcommand in ("validate", "test") and not ckpt_path:
            raise UserError(f"{subcommand} needs --ckpt_path (a checkpoint from `vwwtorch fit`); "
                            "without one it would score untrained weights")
        # Lightning would torch.load the file itself (a traceback on a bad file) and silently replace
        # the configured model by the checkpoint's; we fail clearly on both instead. The keywords are
        # resolved by Lightning later and loaded through SafeCheckpointIO.
        if ckpt_path and ckpt_path not in CKPT_KEYWORDS:
            checkpoint = read_checkpoint(ckpt_path)
            model_config = config["model"]
            # num_classes comes from the data, so it is checked when the model is built
            configured = {k: model_config[k] for k in (*ARCH_KEYS, *VARIANTS) if k in model_config}
            check_architecture(checkpoint, configured, f"checkpoint {ckpt_path}")
            # Quantization-aware training changes what the network computes, like the architecture.
            saved_qat = bool(checkpoint["hyper_parameters"].get("qat", False))
            if bool(model_config.get("qat", False)) != saved_qat:
                raise UserError(f"checkpoint {ckpt_path} was trained with --model.qat {str(saved_qat).lower()}; "
                                "resume or evaluate it with the same setting")
        super()._parse_ckpt_path()

    def _instantiate_trainer(self, config: dict, callbacks: list):
        # Ours join the configured callbacks (passing `callbacks=` to instantiate_trainer would
        # replace the config's list): a Rich progress bar unless bars are off, and the safe stop.
        if config.get("enable_progress_bar") is not False:
            callbacks = [*callbacks, RichProgressBar()]
        if config.get("precision") is None and bf16_gpu(config.get("accelerator")):
            config["precision"] = "bf16-mixed"
            rank_zero_info("mixed precision: bf16 autocast on this GPU (--trainer.precision 32-true turns it off)")
        trainer = super()._instantiate_trainer(config, [*callbacks, self._stopper])
        trainer.strategy.checkpoint_io = SafeCheckpointIO()
        if not trainer.loggers:  # `--trainer.logger false`: nothing to log learning rates to
            trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, LearningRateMonitor)]
        return trainer


def bf16_gpu(accelerator) -> bool:
    """Whether training goes to a CUDA GPU with bf16 arithmetic (Ampere and later): there bf16
    autocast roughly doubles the step rate at no cost to accuracy; CPUs keep float32."""
    if accelerator not in (None, "auto", "gpu", "cuda") or not torch.cuda.is_available():
        return False
    return torch.cuda.is_bf16_supported()


TRAINER_DEFAULTS = {
    "accelerator": "auto",
    # Our sampler shards across ranks itself and keeps augmentation seeded per sample.
    "use_distributed_sampler": False,
    "logger": {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
               "init_args": {"save_dir": "runs", "name": "vww"}},
}


def run_lightning_cli(argv: list[str]) -> VWWLightningCLI:
    keep_tensorflow_out_of_tensorboard()
    route_lightning_logs()
    # Frozen BatchNorm (fine-tuning) and frozen blocks (TwoStageFinetuning) are in inference mode on
    # purpose when training starts; Lightning would warn about them on every fit.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
    if any(arg == "--ckpt_path" or arg.startswith("--ckpt_path=") for arg in argv):
        # Resuming into the folder that holds the checkpoint is the point, not a mistake to warn about.
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # LightningCLI warns when it gets `args` while sys.argv holds other arguments (quickstart, tests),
    # and its DDP launcher re-runs sys.argv in each worker; so argv is presented as the command line.
    saved = sys.argv
    sys.argv = [saved[0] if saved else "vwwtorch", *argv]
    stopper = StopSafely(argv)
    try:
        return VWWLightningCLI(
            VWWClassifier,
            VWWDataModule,
            seed_everything_default=0,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_callback=TidySaveConfig,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "vwwtorch"},
            parser_class=OneLineErrorParser,
            stopper=stopper,
        )
    except SIGTERMException:
        if stopper.stopped is not None:
            raise stopper.stopped from None
        raise stopping.Terminated() from None
    except SystemExit as exc:
        if exc.code == 1 and stopper.stopped is None and stopping.requested() == "SIGINT":
            raise KeyboardInterrupt() from None  # Lightning's exit after a second Ctrl-C
        raise
    finally:
        sys.argv = saved
