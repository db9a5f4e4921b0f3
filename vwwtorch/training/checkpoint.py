"""Load a trained classifier from a Lightning checkpoint, safely and with clear errors.

Checkpoints are read with `torch.load(..., weights_only=True)`: tensors and plain data only, never
arbitrary pickled objects. The checkpoint's `state_dict` holds the EMA weights (the `TFWeightEMA`
callback puts them there), which is what evaluation and export must use.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from vwwtorch.errors import UserError
from vwwtorch.training.module import ARCH_KEYS, VWWClassifier


def read_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/corrupt/foreign files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"checkpoint {path} cannot be read ({reason[:200]})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{path} is not a Lightning checkpoint (no state_dict)")
    return checkpoint


def load_classifier(path: str | os.PathLike, expect: dict | None = None) -> VWWClassifier:
    """The classifier in eval mode with its EMA weights. `expect` optionally pins architecture keys."""
    checkpoint = read_checkpoint(path)
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    missing = [k for k in ARCH_KEYS if k not in hparams]
    if missing:
        raise UserError(f"{path} is not a vwwtorch classifier checkpoint (no {', '.join(missing)})")
    if expect:
        diffs = [f"{k}={hparams[k]} (expected {v})" for k, v in expect.items() if hparams.get(k) != v]
        if diffs:
            raise UserError(f"checkpoint {path} holds a different architecture: " + ", ".join(diffs))
    accepted = inspect.signature(VWWClassifier.__init__).parameters
    module = VWWClassifier(**{k: v for k, v in hparams.items() if k in accepted})
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint {path} does not fit its own architecture: {str(exc).splitlines()[0]}") from None
    return module.eval()


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
