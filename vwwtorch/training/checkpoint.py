"""The one door for checkpoints: every file that claims to be a vwwtorch checkpoint comes in here.

Whatever brought it (`--ckpt`, `--ckpt_path FILE|last|best|hpc`, `--model.init_from`, predict,
report, export), a checkpoint is read with `torch.load(..., weights_only=True)`: tensors and plain
data only, so a pickle that would run code is refused, never executed. Lightning's own loading is
routed here too (`SafeCheckpointIO`), whatever `weights_only` it is asked for. Then the content is
checked: a Lightning checkpoint with a `state_dict`, and architecture hyper-parameters of the right
types and ranges, class names that match the outputs, and (where one is configured) the same
architecture as the model it is loaded into. Every refusal is one line naming the file.

The checkpoint's `state_dict` holds the EMA weights (the `TFWeightEMA` callback puts them there),
which is what evaluation and export use.
"""

from __future__ import annotations

import inspect
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from vwwtorch.contract.errors import UserError
from vwwtorch.training.module import ARCH_KEYS, VWWClassifier, check_architecture

# How torch's weights-only unpickler names a Python object it refused to create.
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _unpickling_refusal(path: Path, exc: BaseException) -> UserError:
    named = _GLOBAL.search(str(exc))
    if named is None:  # not a reference to code: malformed pickle data
        return UserError(f"checkpoint {path} cannot be read: it is damaged or not a PyTorch checkpoint")
    return UserError(f"checkpoint {path} holds Python objects other than tensors and plain data (it "
                     f"references {named.group(1)}): it may contain code, so it was not loaded")


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A checked Lightning checkpoint of a vwwtorch classifier, loaded as tensors and plain data only."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _unpickling_refusal(path, exc) from None
    except PermissionError:
        raise UserError(f"checkpoint {path} cannot be read: permission denied") from None
    except Exception:  # torch raises many types for truncated, corrupt or foreign files
        size = path.stat().st_size
        what = "it is empty" if size == 0 else "it is truncated, damaged or not a PyTorch checkpoint"
        raise UserError(f"checkpoint {path} cannot be read: {what}") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"{path} is not a Lightning checkpoint (no state_dict)")
    check_hyper_parameters(checkpoint.get("hyper_parameters"), f"checkpoint {path}")
    return checkpoint


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_hyper_parameters(hparams: Any, source: str) -> None:
    """Refuse hyper-parameters that could not have come from `vwwtorch fit` (crafted or damaged)."""
    if not isinstance(hparams, dict):
        raise UserError(f"{source} is not a vwwtorch classifier checkpoint (no hyper_parameters)")
    missing = [k for k in ARCH_KEYS if k not in hparams]
    if missing:
        raise UserError(f"{source} is not a vwwtorch classifier checkpoint (no {', '.join(missing)})")
    width, channels = hparams["width"], hparams["in_channels"]
    resolution, classes = hparams["resolution"], hparams["num_classes"]

    def bad(key: str, value: Any, need: str) -> UserError:
        return UserError(f"{source} has a damaged hyper-parameter {key}={value!r} (must be {need})")

    if not isinstance(width, (int, float)) or isinstance(width, bool) or not 0.1 <= width <= 1.0:
        raise bad("width", width, "a number in [0.1, 1.0]")
    if not _is_int(channels) or channels not in (1, 3):
        raise bad("in_channels", channels, "1 or 3")
    if not _is_int(resolution) or resolution < 32 or resolution % 32:
        raise bad("resolution", resolution, "a positive multiple of 32")
    if not _is_int(classes) or not 2 <= classes <= 10_000:
        raise bad("num_classes", classes, "an integer >= 2")
    names = hparams.get("class_names")
    if names is not None and (not isinstance(names, (list, tuple)) or len(names) != classes
                              or not all(isinstance(n, str) and n.strip() and "\n" not in n for n in names)):
        raise bad("class_names", names, f"{classes} non-empty names, one per output")


def load_checkpoint(path: str | os.PathLike, expect: dict | None = None) -> dict:
    """`read_checkpoint`, plus the architecture check when `expect` pins some of ARCH_KEYS."""
    checkpoint = read_checkpoint(path)
    if expect:
        check_architecture(checkpoint, expect, f"checkpoint {path}")
    return checkpoint


def load_classifier(path: str | os.PathLike, expect: dict | None = None) -> VWWClassifier:
    """The classifier in eval mode with its EMA weights. `expect` optionally pins architecture keys."""
    checkpoint = load_checkpoint(path, expect)
    hparams = dict(checkpoint["hyper_parameters"])
    accepted = inspect.signature(VWWClassifier.__init__).parameters
    try:
        module = VWWClassifier(**{k: v for k, v in hparams.items() if k in accepted})
    except (TypeError, ValueError) as exc:
        raise UserError(f"checkpoint {path} has hyper-parameters this vwwtorch cannot build: {exc}") from None
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint {path} does not fit its own architecture: {str(exc).splitlines()[0]}") from None
    return module.eval()


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reader replaced by `read_checkpoint`: `--ckpt_path last|best|hpc` and
    `--weights_only false` cannot open another way in. Saving is Lightning's own."""

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return read_checkpoint(path)


class BestAndLastCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` whose `last.ckpt` really is the latest state.

    Since Lightning 2.6, `save_last=True` rewrites `last.ckpt` only when a top-k checkpoint is saved
    in the same step, so once `val/acc` stops improving `last.ckpt` goes stale and resuming from it
    would silently repeat epochs. This refreshes it at the end of every validation and train epoch.
    """

    _last_saved_step: int = -1

    def _save_last_checkpoint(self, trainer, monitor_candidates) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self._last_saved_step = trainer.global_step

    def _refresh_last(self, trainer) -> None:
        if (self.save_last and self._last_saved_step != trainer.global_step
                and not self._should_skip_saving_checkpoint(trainer)):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        # Only where the parent saves here; otherwise saving now would make it skip the epoch's save.
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._refresh_last(trainer)
