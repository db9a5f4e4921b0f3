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
import shutil
import sys
import time
import warnings
from pathlib import Path

import torch
from jsonargparse import DefaultHelpFormatter
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, RichProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

from vwwtorch.configs import resolve_config_args
from vwwtorch.plumbing.console import keep_tensorflow_out_of_tensorboard, route_lightning_logs
from vwwtorch.plumbing.defaults import help_names_its_default
from vwwtorch.plumbing import stopping
from vwwtorch.plumbing.errors import Stopped, UserError
from vwwtorch.data.datamodule import VWWDataModule
from vwwtorch.models.mobilenet_v1 import ARCH_KEYS, VARIANTS
from vwwtorch.training.checkpoint import BestAndLastCheckpoint
from vwwtorch.training.checkpoint_file import SafeCheckpointIO, check_architecture, read_checkpoint
from vwwtorch.training.ema import TFWeightEMA
from vwwtorch.training.module import VWWClassifier

CKPT_KEYWORDS = ("last", "best", "hpc", "registry")
LAST_NAME = "last.ckpt"


class OneDefaultHelpFormatter(DefaultHelpFormatter):
    """jsonargparse's "(type: X, default: Y)" without the default where the help text already says
    what it is (a docstring's "Default: 0 when ..."): a second, bare "default: null" contradicts it.
    The same rule as the other commands' `vwwtorch.plumbing.defaults.HelpFormatter`."""

    def _get_help_string(self, action) -> str:
        text = super()._get_help_string(action)
        if not help_names_its_default(action):
            return text
        for added in (", default: %(default)s", "default: %(default)s, ", " (default: %(default)s)"):
            text = text.replace(added, "")
        return text


class OneLineErrorParser(LightningArgumentParser):
    """A bad flag or config is one `vwwtorch: error:` line (jsonargparse prints the usage first).
    Help shows each option's default once (`OneDefaultHelpFormatter`); the sub-command parsers are
    made with this class too, so it is set here rather than in `parser_kwargs`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", OneDefaultHelpFormatter)
        super().__init__(*args, **kwargs)

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
            # The whole training state (weights_only=False says what is written, as ModelCheckpoint
            # does; loading is always tensors only). Unset, Lightning says it "defaults to False",
            # which reads as if checkpoints were unpickled as code.
            trainer.save_checkpoint(path, weights_only=False)
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
    """Lightning's config.yaml writer, minus what a fit that fails before any checkpoint leaves: that
    file (with `--trainer.logger false` it lands in the working directory) and the logger's new
    `runs/NAME/version_N/` (a refused `--model.init_from`, a damaged dataset)."""

    _written: Path | None = None
    _created: list[Path] = []
    _started: float = 0.0

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._started = time.time()
        log_dir = trainer.log_dir or trainer.default_root_dir
        path = Path(log_dir) / self.config_filename if log_dir else None
        existed = path is not None and path.exists()
        super().setup(trainer, pl_module, stage)
        if path is not None and not existed and path.exists():
            self._written = path

    def note_log_dir(self, trainer) -> None:
        """Called before the logger makes anything: the log folder and the parents this run will
        create (never the working directory: it exists)."""
        log_dir = trainer.log_dir if trainer.logger is not None else None
        self._created = [] if log_dir is None else \
            [folder for folder in (Path(log_dir).absolute(), *Path(log_dir).absolute().parents)
             if not folder.exists()]

    def on_exception(self, trainer, pl_module, exception) -> None:
        if _saved_a_checkpoint_since(trainer, self._started) or not trainer.is_global_zero:
            return
        if self._written is not None:
            self._written.unlink(missing_ok=True)
        for number, folder in enumerate(self._created):
            if number == 0:
                shutil.rmtree(folder, ignore_errors=True)
            elif folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


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
            self._check_checkpoint(ckpt_path, config)
        super()._parse_ckpt_path()

    @staticmethod
    def _check_checkpoint(ckpt_path: str, config) -> None:
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

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict:
        # The keywords are resolved here, where the trainer (its checkpoint folder) exists, instead of
        # by Lightning, which validates random weights when `last` finds nothing and raises for the
        # others; the file they name is read and checked like a path given outright.
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        keyword = kwargs.get("ckpt_path")
        if keyword in CKPT_KEYWORDS:
            kwargs["ckpt_path"] = resolve_ckpt_keyword(self.trainer, subcommand, keyword)
            if kwargs["ckpt_path"] is not None:
                self._check_checkpoint(kwargs["ckpt_path"], self.config[subcommand])
        return kwargs

    def _instantiate_trainer(self, config: dict, callbacks: list):
        # Ours join the configured callbacks (passing `callbacks=` to instantiate_trainer would
        # replace the config's list): a Rich progress bar unless bars are off, and the safe stop.
        if config.get("enable_progress_bar") is None and not sys.stdout.isatty():
            config["enable_progress_bar"] = False  # bars are drawn on a terminal, not into a log or a pipe
        if config.get("enable_progress_bar") is not False:
            callbacks = [*callbacks, RichProgressBar()]
        if config.get("precision") is None and bf16_gpu(config.get("accelerator")):
            config["precision"] = "bf16-mixed"
            rank_zero_info("mixed precision: bf16 autocast on this GPU (--trainer.precision 32-true turns it off)")
        trainer = super()._instantiate_trainer(config, [*callbacks, self._stopper])
        trainer.strategy.checkpoint_io = SafeCheckpointIO()
        for callback in trainer.callbacks:
            if isinstance(callback, TidySaveConfig):
                callback.note_log_dir(trainer)
        if not trainer.loggers:  # `--trainer.logger false`: nothing to log learning rates to
            trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, LearningRateMonitor)]
        return trainer


def resolve_ckpt_keyword(trainer, subcommand: str, keyword: str) -> str | None:
    """The file `--ckpt_path last|best|hpc` means for this trainer, or a one-line UserError. `fit --ckpt_path
    last` with no last checkpoint starts from scratch (Lightning's "set it before the first fit"), and says so."""
    callback = trainer.checkpoint_callback
    # Lightning's own rule for the folder: --checkpoint.dirpath, else the logger's version folder.
    folder = callback.dirpath or callback._ModelCheckpoint__resolve_ckpt_dir(trainer) if callback is not None \
        else "(no checkpoint callback)"
    if keyword == "last":
        found = sorted(callback._find_last_checkpoints(trainer), key=lambda p: Path(p).stat().st_mtime) \
            if callback is not None else []
        if found:
            return found[-1]
        if subcommand == "fit":
            rank_zero_info(f"--ckpt_path last: no last checkpoint in {folder} yet; training starts from scratch")
            return None
        raise UserError(f"--ckpt_path last: there is no last checkpoint in {folder}; give the checkpoint "
                        "file (e.g. runs/NAME/version_N/checkpoints/last.ckpt), or --checkpoint.dirpath its folder")
    if keyword == "best":
        # The best checkpoint a fit recorded: this run's, else the one its folder's last.ckpt names.
        best = callback.best_model_path if callback is not None else ""
        if not best and callback is not None:
            for last in sorted(callback._find_last_checkpoints(trainer), key=lambda p: Path(p).stat().st_mtime)[-1:]:
                state = read_checkpoint(last).get("callbacks", {})
                best = next((v.get("best_model_path") for k, v in state.items()
                             if "ModelCheckpoint" in str(k) and isinstance(v, dict) and v.get("best_model_path")), "")
        if not best or not Path(best).is_file():
            raise UserError(f"--ckpt_path best: no best checkpoint is recorded in {folder}; give the checkpoint "
                            "file (e.g. runs/NAME/version_N/checkpoints/best-....ckpt)")
        return best
    if keyword == "hpc":
        found = trainer._checkpoint_connector._hpc_resume_path
        if found is None:
            raise UserError(f"--ckpt_path hpc: no hpc_ckpt_N.ckpt in {trainer.default_root_dir} (SLURM writes them "
                            "when it requeues a job); give the checkpoint file")
        return found
    raise UserError(f"--ckpt_path {keyword} is Lightning's model registry, which vwwtorch does not use; give the "
                    "checkpoint file")


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
    argv = resolve_config_args(argv)  # `--config quickstart`: the shipped config, from any folder
    keep_tensorflow_out_of_tensorboard()
    route_lightning_logs()
    # Frozen BatchNorm (fine-tuning) and frozen blocks (TwoStageFinetuning) are in inference mode on
    # purpose when training starts; Lightning would warn about them on every fit.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
    if any(arg == "--ckpt_path" or arg.startswith("--ckpt_path=") for arg in argv):
        # Resuming into the folder that holds the checkpoint is the point, not a mistake to warn about.
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    if argv and argv[0] in ("validate", "test"):
        # Evaluating a checkpoint reads its (averaged) weights only: the weight-averaging and checkpoint
        # callbacks' training state is not wanted, and their warnings that it is not restored are noise.
        warnings.filterwarnings("ignore", message=r"You're using the WeightAveraging callback, but loading")
        warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
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
