"""Models from checkpoints, and the checkpoints training writes.

`load_classifier` builds the classifier a checkpoint describes, with its EMA weights, and
`load_exportable` the record the export takes of it, both through the one door for checkpoint
files (`vwwtorch.training.checkpoint_file`). `BestAndLastCheckpoint` is the checkpoint callback of
`vwwtorch fit`.
"""

from __future__ import annotations

import inspect
import os

from pytorch_lightning.callbacks import ModelCheckpoint

from vwwtorch.plumbing.errors import UserError
from vwwtorch.training.checkpoint_file import check_architecture, read_checkpoint
from vwwtorch.training.exportable import ExportableModel
from vwwtorch.training.module import VWWClassifier


def load_checkpoint(path: str | os.PathLike, expect: dict | None = None) -> dict:
    """`read_checkpoint`, plus the architecture check when `expect` pins some of ARCH_KEYS."""
    checkpoint = read_checkpoint(path)
    if expect:
        check_architecture(checkpoint, expect, f"checkpoint {path}")
    return checkpoint


def load_classifier(path: str | os.PathLike, expect: dict | None = None) -> VWWClassifier:
    """The classifier in eval mode with its EMA weights. `expect` optionally pins architecture keys."""
    return _classifier(path, load_checkpoint(path, expect))


def load_exportable(path: str | os.PathLike) -> ExportableModel:
    """What the export needs of a checkpoint: its classifier (eval mode, EMA weights) and, for an
    imported checkpoint, its source's int8 ranges (None otherwise), which the export reproduces."""
    checkpoint = load_checkpoint(path)
    return _classifier(path, checkpoint).exportable(source_quantization=checkpoint.get("quantization"))


def _classifier(path: str | os.PathLike, checkpoint: dict) -> VWWClassifier:
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
