"""LightningModule holding the model and the TinyML book's training recipe.

Defaults are the book's (tf.slim `train_image_classifier.py` flags for `mobilenet_v1_025`): RMSProp
with TF semantics (decay 0.9, momentum 0.9, epsilon 1.0), lr 0.045 decayed x0.98 every 2.5 epochs
(staircase), label smoothing 0.1, L2 4e-5 on regular conv weights. The EMA of the weights is the
`TFWeightEMA` callback (configured in the trainer's callbacks, see configs/).
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Callable, Optional, Union

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics
from pytorch_lightning.utilities import rank_zero_info
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from vwwtorch.plumbing.errors import UserError
from vwwtorch.models.int8_simulation import Int8Simulation
from vwwtorch.models.mobilenet_v1 import VARIANTS, MobileNetV1
from vwwtorch.training.checkpoint_file import check_architecture
from vwwtorch.training.data_needs import training_data
from vwwtorch.training.exportable import ExportableModel
from vwwtorch.training.recipe_checks import BATCH_NORM_MODES, check_choice, check_recipe
from vwwtorch.training.rmsprop_tf import RMSpropTF
from vwwtorch.training.schedule import decay_steps, staircase_factor
from vwwtorch.training.transfer import INIT_HEAD, load_initial_weights, start_ranges



class VWWClassifier(pl.LightningModule):
    """MobileNetV1 classifier trained with the book's recipe.

    Args:
        width: MobileNetV1 depth multiplier (0.1 ... 1.0).
        in_channels: 1 (grayscale) or 3 (RGB).
        resolution: input size, a multiple of 32.
        num_classes: number of classes.
        class_names: names for logs and predictions (default: the dataset's).
        dropout: dropout probability before the classifier (slim: 1 - 0.999).
        bn_momentum: BatchNorm momentum in PyTorch's convention (1 - slim's decay 0.9997).
        learning_rate: initial learning rate (book: 0.045).
        lr_decay_factor: staircase decay factor (book: 0.98).
        epochs_per_decay: epochs between decays (book: 2.5).
        rmsprop_decay: RMSProp mean-square decay (slim: 0.9).
        momentum: RMSProp momentum (slim: 0.9).
        epsilon: RMSProp epsilon, inside the square root as in TF (slim: 1.0).
        weight_decay: L2 on regular (non-depthwise) conv weights (slim: 4e-5).
        label_smoothing: cross-entropy label smoothing (book: 0.1).
        image_log_every_n_steps: log a grid of augmented training images this often (0: never).
        seed: seeds dropout per step so that a resumed run repeats the uninterrupted one.
        init_from: transfer learning: a vwwtorch checkpoint whose backbone (every layer but the
            classifier) initialises this model's when `fit` starts, and its classifier too when its
            classes are this dataset's (see init_head). Width and input channels must match;
            resolution may differ. `pretrained:NAME` starts from a real person detector
            (`vwwtorch pretrained list`).
        init_head: with init_from, the classifier: "auto" keeps the checkpoint's when its class
            names (in order) and head kind are this model's, else starts a new one; "new" always
            starts a new one; "keep" demands the checkpoint's (an error if the classes differ).
        batch_norm: "train" (BatchNorm normalises each batch by its statistics and updates its
            running ones: training from scratch), "frozen" (BatchNorm stays in inference mode while
            training: the running statistics are a fixed per-channel affine, as folded into the
            weights of the int8 model a checkpoint may come from; its scale and shift still train),
            or "auto": frozen when starting from a checkpoint (init_from), else train. Fine-tuning
            a few hundred images in train mode replaces the statistics the weights were trained
            with by those of small batches, and the network no longer computes what it did.
        qat: quantization-aware training: the forward pass simulates the int8 network TFLite runs
            (BatchNorm folded, weights per channel -127..127, activations per tensor, ReLU6 in the
            clamp); validation, test, predict and report run its integer arithmetic bit for bit,
            and `vwwtorch export` writes exactly that network (see vwwtorch.models.int8_simulation).
        qat_delay: epochs at the start during which QAT quantizes the weights but only observes the
            activations' ranges (TensorFlow's quant_delay): a random network's ranges move too fast
            to clamp to. Default: 0 when init_from gives trained weights, else a quarter of the run.
        class_weights: weight the training loss per class: "auto" (inverse class frequency in the
            training split, for imbalanced data) or one weight per class. Label smoothing still applies.
        activation: the MobileNetV1 variant's activation, "relu6" (slim's) or "relu" (MLPerf's VWW
            reference); the variant options are described in `vwwtorch.models.mobilenet_v1`.
        conv_bias: convolutions with a bias (MLPerf's reference: true; slim's: false, BatchNorm's shift).
        head: the classifier, "conv" (slim's 1x1 convolution) or "dense" (MLPerf's, exported as
            FULLY_CONNECTED).
        input_range: what pixel bytes are scaled to, "[-1, 1]" (x / 127.5 - 1, slim's) or "[0, 1]"
            (x / 255, MLPerf's); the data follows the model's.
        channels_last: run activations in NHWC memory format (faster on CPUs and GPUs alike).
        compile: train through `torch.compile`: the first step compiles kernels first (about a
            minute on a 2-core CPU), so it is for long runs. Mixed precision is the trainer's
            `--trainer.precision`, bf16 by default on a GPU that has it.
    """

    def __init__(self, width: float = 0.25, in_channels: int = 1, resolution: int = 96, num_classes: int = 2,
                 class_names: Optional[list[str]] = None, dropout: float = 0.001, bn_momentum: float = 0.0003,
                 learning_rate: float = 0.045, lr_decay_factor: float = 0.98, epochs_per_decay: float = 2.5,
                 rmsprop_decay: float = 0.9, momentum: float = 0.9, epsilon: float = 1.0,
                 weight_decay: float = 4e-5, label_smoothing: float = 0.1,
                 image_log_every_n_steps: int = 500, seed: int = 0, init_from: Optional[str] = None,
                 class_weights: Optional[Union[str, list[float]]] = None,
                 activation: str = VARIANTS["activation"], conv_bias: bool = VARIANTS["conv_bias"],
                 head: str = VARIANTS["head"], input_range: str = VARIANTS["input_range"],
                 channels_last: bool = True, compile: bool = False, init_head: str = "auto",
                 batch_norm: str = "auto", qat: bool = False, qat_delay: Optional[int] = None):
        super().__init__()
        check_recipe(learning_rate=learning_rate, lr_decay_factor=lr_decay_factor, epochs_per_decay=epochs_per_decay,
                      rmsprop_decay=rmsprop_decay, momentum=momentum, epsilon=epsilon, weight_decay=weight_decay,
                      label_smoothing=label_smoothing, dropout=dropout, bn_momentum=bn_momentum,
                      image_log_every_n_steps=image_log_every_n_steps)
        check_choice("init_head", init_head, INIT_HEAD)
        check_choice("batch_norm", batch_norm, BATCH_NORM_MODES)
        if qat_delay is not None and qat_delay < 0:
            raise UserError(f"--model.qat_delay must be >= 0 epochs, got {qat_delay}")
        if qat and compile:
            raise UserError("--model.qat true cannot be combined with --model.compile true (the simulated int8 "
                            "forward is not compiled); leave compile off")
        self.save_hyperparameters()
        try:
            self.model = MobileNetV1(width=width, in_channels=in_channels, resolution=resolution,
                                     num_classes=num_classes, dropout=dropout, bn_momentum=bn_momentum,
                                     activation=activation, conv_bias=conv_bias, head=head, input_range=input_range)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        # One input for the model summary to count FLOPs with (it shows 0 without one).
        self.example_input_array = torch.zeros(1, in_channels, resolution, resolution)
        # NHWC activations: oneDNN's depthwise convolutions and BatchNorm run ~10-35% faster on CPU
        # that way (and GPUs prefer it too). Weights stay the same values; exports are unaffected.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        # Quantization-aware training: the int8 network's ranges; the weights stay the model's.
        self.int8: Optional[Int8Simulation] = Int8Simulation(self.model) if qat else None
        # The compiled forward shares the model's parameters but is kept out of the module tree, so
        # checkpoints and exports see the plain model (see `on_fit_start`).
        self._compiled: Optional[Callable] = None
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        metrics = lambda: torchmetrics.MetricCollection({  # noqa: E731
            "acc": torchmetrics.classification.MulticlassAccuracy(num_classes, average="micro"),
            "precision": torchmetrics.classification.MulticlassPrecision(num_classes, average=None),
            "recall": torchmetrics.classification.MulticlassRecall(num_classes, average=None),
        })
        self.train_acc = torchmetrics.classification.MulticlassAccuracy(num_classes, average="micro")
        self.val_metrics = metrics()
        self.test_metrics = metrics()
        self.loss_weights: Optional[torch.Tensor] = None  # set in setup() from `class_weights`
        # (images, training) -> pooled features [N, C, 1, 1] of a frozen backbone, so that only the
        # classifier runs here; set through `use_backbone_features` (see vwwtorch.training.bottleneck).
        self._backbone_features: Optional[Callable[[torch.Tensor, bool], torch.Tensor]] = None

    def exportable(self, source_quantization: Optional[dict] = None) -> ExportableModel:
        """What the export needs of this classifier (`source_quantization`: an imported checkpoint's
        source int8 ranges, which the checkpoint file holds, not the module)."""
        hp = self.hparams
        return ExportableModel(model=self.model, width=hp.width, in_channels=hp.in_channels, resolution=hp.resolution,
                               num_classes=hp.num_classes, class_names=list(self.class_names),
                               input_range=self.model.input_range, head=self.model.head, int8=self.int8,
                               source_quantization=source_quantization)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        if self.int8 is not None and (self.training or self.int8.ready):
            return self.int8(self.model, x)
        return self.model(x)

    @property
    def batch_norm_frozen(self) -> bool:
        mode = self.hparams.batch_norm
        return mode == "frozen" or (mode == "auto" and bool(self.hparams.init_from))

    def train(self, mode: bool = True):
        """With `batch_norm` frozen, BatchNorm stays in inference mode (its running statistics fixed)
        whenever the module is put in training mode."""
        super().train(mode)
        if mode:
            self._freeze_batch_norm()
        return self

    def _freeze_batch_norm(self) -> None:
        if self.batch_norm_frozen:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    # Lightning does not call `train()` when fitting starts (the module is in training mode already)
    # and restores each submodule's mode by hand after validation; these hooks apply the policy.
    def on_train_start(self) -> None:
        self._freeze_batch_norm()

    def on_train_epoch_start(self) -> None:
        self._freeze_batch_norm()
        if self.int8 is not None:
            self.int8.quantize_activations = self.current_epoch >= self._qat_delay()

    def _qat_delay(self) -> int:
        if self.hparams.qat_delay is not None:
            return self.hparams.qat_delay
        if self.hparams.init_from:
            return 0
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 4
        return max(1, epochs // 4)

    def use_backbone_features(self, features: Optional[Callable[[torch.Tensor, bool], torch.Tensor]]) -> None:
        """Train and evaluate the classifier on `features(images, training)` (a frozen backbone's pooled
        features) instead of running the backbone; None runs the whole model again."""
        self._backbone_features = features

    @property
    def starts_from_checkpoint(self) -> bool:
        """Whether `fit` starts from trained weights (`init_from`) rather than random ones."""
        return bool(self.hparams.init_from)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self._backbone_features is None:
            if self._compiled is not None and self.training and self.int8 is None:
                return self._compiled(x.contiguous(memory_format=self.memory_format))
            return self(x)
        features = self._backbone_features(x, self.training)
        return self.model.classify(features)

    # -- setup: transfer learning and class weights -------------------------------------------------
    def setup(self, stage: str) -> None:
        # Only when fitting: a resumed run then restores its own weights over these, and evaluating
        # or exporting a fine-tuned checkpoint never needs the original one.
        if stage != "fit":
            return
        if self.hparams.init_from and not getattr(self, "_initialised_from", None):
            self._initialise_from(self.hparams.init_from)
        if self.hparams.class_weights is not None:
            self.loss_weights = torch.tensor(self._resolve_class_weights(), dtype=torch.float32)
            rank_zero_info("class weights: " + ", ".join(
                f"{name} {w:.3f}" for name, w in zip(self.class_names, self.loss_weights.tolist())))

    def _initialise_from(self, path: str) -> None:
        done = load_initial_weights(self.model, path, self.class_names, self.hparams.init_head)
        self._initialised_from = path
        head = "and classifier" if done.head else f"(new classifier: {done.why_not_head})"
        rank_zero_info(f"transfer learning: backbone ({done.tensors} tensors) {head} from {path}; "
                       f"BatchNorm {'frozen' if self.batch_norm_frozen else 'trains'}")
        if self.int8 is not None:
            ranges = start_ranges(self.int8, done.checkpoint, done.head)
            rank_zero_info("quantization-aware training starts from " + (ranges or "ranges observed on the first batch"))

    def _resolve_class_weights(self) -> list[float]:
        weights, k = self.hparams.class_weights, self.hparams.num_classes
        if isinstance(weights, str):
            if weights != "auto":
                raise UserError(f"--model.class_weights must be 'auto' or a list of {k} weights, not {weights!r}")
            return inverse_frequency_weights(self._train_labels(), k, self.class_names)
        weights = [float(w) for w in weights]
        if len(weights) != k or min(weights) <= 0:
            raise UserError(f"--model.class_weights needs {k} positive weights (one per class), got {weights}")
        return weights

    def _train_labels(self) -> np.ndarray:
        data = training_data(self.trainer)
        if data is None:
            raise UserError("--model.class_weights auto needs the vwwtorch data module (--data.data_dir)")
        return data.train_labels()

    # -- training -------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if self.hparams.compile and self._compiled is None:
            if self.device.type == "cpu" and not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")):
                raise UserError("--model.compile true on the CPU needs a C++ compiler (g++), which torch.compile "
                                "builds its kernels with; install one (apt-get install g++) or leave compile off")
            self.__dict__["_compiled"] = torch.compile(self.model)
            rank_zero_info("torch.compile: the training forward is compiled (the first steps take longer)")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Dropout draws from the global RNG; seeding it per step makes a resumed run bit-identical.
        torch.manual_seed(int(np.random.SeedSequence(
            [self.hparams.seed, self.global_step, self.global_rank]).generate_state(1)[0]))

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self._logits(x)
        weight = self.loss_weights.to(logits.device) if self.loss_weights is not None else None
        loss = F.cross_entropy(logits, y, weight=weight, label_smoothing=self.hparams.label_smoothing)
        self.train_acc(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=True, on_epoch=False, prog_bar=True)
        every = self.hparams.image_log_every_n_steps
        if every and self.global_step % every == 0:
            self._log_image_grid(x, y)
        return loss

    def _log_image_grid(self, x: torch.Tensor, y: torch.Tensor) -> None:
        experiment = getattr(self.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_image") or self.global_rank != 0:
            return
        from torchvision.utils import make_grid

        grid = make_grid((x[:32].detach().float().cpu() + 1) / 2, nrow=8, padding=2)
        experiment.add_image("train/augmented_images", grid.clamp(0, 1), self.global_step)
        experiment.add_text("train/augmented_labels",
                            " ".join(self.class_names[i] for i in y[:32].tolist()), self.global_step)

    def configure_optimizers(self):
        hp = self.hparams
        decayed, plain = [], []
        for module in self.model.modules():
            for name, p in module.named_parameters(recurse=False):
                # slim regularises conv weights but not depthwise kernels, biases or BatchNorm.
                is_regular_conv_weight = isinstance(module, nn.Conv2d) and module.groups == 1 and name == "weight"
                (decayed if is_regular_conv_weight else plain).append(p)
        optimizer = RMSpropTF([
            {"params": decayed, "weight_decay": hp.weight_decay},
            {"params": plain, "weight_decay": 0.0},
        ], lr=hp.learning_rate, decay=hp.rmsprop_decay, momentum=hp.momentum, epsilon=hp.epsilon)
        steps = decay_steps(self._num_train_images(), self._global_batch_size(), hp.epochs_per_decay)
        factor = hp.lr_decay_factor
        scheduler = LambdaLR(optimizer, lambda step: staircase_factor(step, steps, factor))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _num_train_images(self) -> int:
        data = training_data(self.trainer)
        if data is not None:
            return data.num_train_images()
        # Without our DataModule: steps per epoch times the batch size.
        return int(self.trainer.estimated_stepping_batches / max(1, self.trainer.max_epochs or 1)) \
            * self._global_batch_size()

    def _global_batch_size(self) -> int:
        data = training_data(self.trainer)
        batch = data.batch_size if data is not None else 1
        return batch * self.trainer.world_size * self.trainer.accumulate_grad_batches

    # -- evaluation -----------------------------------------------------------------------------
    def _eval_step(self, batch, metrics, prefix: str):
        x, y = batch
        logits = self._logits(x)
        loss = F.cross_entropy(logits, y)
        metrics.update(logits, y)
        self.log(f"{prefix}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(y))

    def _eval_epoch_end(self, metrics, prefix: str) -> None:
        values = metrics.compute()
        self.log(f"{prefix}/acc", values["acc"], prog_bar=True, sync_dist=True)
        for i, name in enumerate(self.class_names):
            self.log(f"{prefix}/precision_{name}", values["precision"][i], sync_dist=True)
            self.log(f"{prefix}/recall_{name}", values["recall"][i], sync_dist=True)
        metrics.reset()

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self):
        self._eval_epoch_end(self.val_metrics, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, self.test_metrics, "test")

    def on_test_epoch_end(self):
        self._eval_epoch_end(self.test_metrics, "test")

    # -- checkpoints ----------------------------------------------------------------------------
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        check_architecture(checkpoint, self.model.arch(), source="the checkpoint")
        saved_qat = bool((checkpoint.get("hyper_parameters") or {}).get("qat", False))
        if saved_qat != (self.int8 is not None):
            raise UserError(f"the checkpoint was trained with --model.qat {str(saved_qat).lower()}; resume it "
                            f"with the same setting")


def inverse_frequency_weights(labels: np.ndarray, num_classes: int,
                              names: Optional[list[str]] = None) -> list[float]:
    """n / (k * count_c) per class: every class then carries the same total weight in the loss."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)[:num_classes]
    if (counts == 0).any():
        names = names or [str(i) for i in range(num_classes)]
        raise UserError("--model.class_weights auto: no training image of class(es) "
                        + ", ".join(names[i] for i in np.flatnonzero(counts == 0)))
    return (counts.sum() / (num_classes * counts)).astype(float).tolist()
