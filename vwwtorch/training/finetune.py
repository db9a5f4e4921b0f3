"""Two-stage fine-tuning of a transferred model, as a Lightning callback configurable in YAML.

Stage 1 (epochs 0 .. unfreeze_at_epoch - 1): the first `freeze_blocks` blocks of the backbone are
frozen and the rest (the later blocks and the new classifier) trains at the model's
`learning_rate` (lr1). Stage 2 (from epoch `unfreeze_at_epoch`): every layer trains, at
`unfreeze_lr` (lr2), usually a tenth of lr1 or less so the pretrained features are refined rather
than overwritten. The step-wise learning-rate decay keeps running across both stages.

Blocks are numbered as in `MobileNetV1.features`: block 0 is the stem convolution, blocks 1..13
the depthwise-separable blocks, so `freeze_blocks: 14` freezes the whole backbone (the classifier
alone trains in stage 1) and `freeze_blocks: 12` leaves the last two blocks trainable.

BatchNorm: the BatchNorm layers of frozen blocks run in inference mode during stage 1: they
normalise with the running statistics learned on the original data and do not update them. Putting
them in training mode would normalise each small batch of the new data with its own statistics, so
the features the head learns on would differ from the ones it sees at evaluation, and their running
statistics would drift while the scale and shift that go with them stay frozen. `train_bn: true`
lets them train anyway (statistics, scale and shift) while their convolutions stay frozen. In
stage 2 every BatchNorm follows the model's `batch_norm` setting: frozen statistics when fine-tuning
from a checkpoint (the default), or normalising each batch with the model's `bn_momentum`. (Lightning warns about
modules in inference mode when training starts; `vwwtorch fit` silences that warning, which these
layers make on purpose.)

Why not Lightning's `BackboneFinetuning`: it freezes one `backbone` attribute as a whole (no "up
to block k"), adds the unfrozen parameters as a new optimizer group, which would bypass this
project's weight-decay grouping and learning-rate schedule, and ramps their learning rate by its own
rule. Here every parameter is in the optimizer from the start; a frozen one has no gradient, so
the optimizer skips it (no update, no weight decay, no state) until it is unfrozen.

Runs on one device: DDP decides at start-up which parameters it synchronises, and parameters
unfrozen later would silently not be averaged across processes.
"""

from __future__ import annotations

from typing import Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from vwwtorch.plumbing.errors import UserError


class TwoStageFinetuning(Callback):
    """Freeze the first backbone blocks for a few epochs, then train everything at a lower learning rate.

    Args:
        freeze_blocks: backbone blocks frozen in stage 1, counted from the input: 0 none, 1 the stem,
            14 the whole MobileNetV1 backbone.
        unfreeze_at_epoch: first epoch of stage 2 (stage 1 lasts this many epochs).
        unfreeze_lr: learning rate of stage 2 (stage 1 uses the model's learning_rate).
        train_bn: let the BatchNorm layers of frozen blocks train in stage 1 (default: inference mode).
    """

    def __init__(self, freeze_blocks: int = 14, unfreeze_at_epoch: int = 5, unfreeze_lr: float = 0.0045,
                 train_bn: bool = False):
        if freeze_blocks < 0 or unfreeze_at_epoch < 0 or unfreeze_lr <= 0:
            raise UserError("TwoStageFinetuning: freeze_blocks and unfreeze_at_epoch must be >= 0, unfreeze_lr > 0")
        self.freeze_blocks, self.unfreeze_at_epoch = freeze_blocks, unfreeze_at_epoch
        self.unfreeze_lr, self.train_bn = unfreeze_lr, train_bn
        self.frozen = False
        self.in_stage_2 = False

    # -- which modules ------------------------------------------------------------------------------
    def frozen_blocks(self, pl_module: pl.LightningModule) -> nn.Sequential:
        features = pl_module.model.features
        if self.freeze_blocks > len(features):
            raise UserError(f"TwoStageFinetuning: freeze_blocks {self.freeze_blocks} is more than the "
                            f"{len(features)} blocks of the backbone")
        return features[: self.freeze_blocks]

    def _set_frozen(self, pl_module: pl.LightningModule, frozen: bool) -> None:
        for module in self.frozen_blocks(pl_module).modules():
            is_bn = isinstance(module, nn.modules.batchnorm._BatchNorm)
            for p in module.parameters(recurse=False):
                p.requires_grad = not frozen or (is_bn and self.train_bn)
        self.frozen = frozen
        self._set_bn_mode(pl_module)

    def _set_bn_mode(self, pl_module: pl.LightningModule) -> None:
        if self.frozen and not self.train_bn:
            for module in self.frozen_blocks(pl_module).modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        elif pl_module.training:
            pl_module.train()  # every module back to training mode, BatchNorm as the model's policy says

    # -- Lightning hooks ------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if trainer.world_size > 1:
            raise UserError("TwoStageFinetuning runs on one device (DDP would not synchronise the layers "
                            "unfrozen in stage 2); use --trainer.devices 1")
        # Before the optimizer is built and before a resumed checkpoint is restored.
        self.in_stage_2 = False
        self._set_frozen(pl_module, self.unfreeze_at_epoch > 0)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch >= self.unfreeze_at_epoch and not self.in_stage_2:
            self._set_frozen(pl_module, False)
            set_base_lr(trainer, self.unfreeze_lr)
            self.in_stage_2 = True
            rank_zero_info(f"epoch {trainer.current_epoch}: stage 2 of fine-tuning, all layers train at "
                           f"learning rate {self.unfreeze_lr:g}")
        else:
            # Lightning restores each module's mode after validation; keep frozen BatchNorm in eval.
            self._set_bn_mode(pl_module)


def set_base_lr(trainer: pl.Trainer, lr: float) -> None:
    """Move every optimizer group to base learning rate `lr`, keeping the schedule's current decay factor.

    Idempotent, so a run resumed in stage 2 (whose scheduler state already holds `lr`) is unchanged.
    """
    schedulers = {id(config.scheduler.optimizer): config.scheduler for config in trainer.lr_scheduler_configs}
    for optimizer in trainer.optimizers:
        scheduler = schedulers.get(id(optimizer))
        base_lrs: Optional[list] = getattr(scheduler, "base_lrs", None)
        for i, group in enumerate(optimizer.param_groups):
            base = base_lrs[i] if base_lrs else group.get("initial_lr", group["lr"])
            factor = group["lr"] / base if base else 1.0
            group["lr"] = lr * factor
            if "initial_lr" in group:
                group["initial_lr"] = lr
            if base_lrs:
                base_lrs[i] = lr
