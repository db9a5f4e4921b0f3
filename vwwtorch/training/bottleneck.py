"""Bottleneck mode: train only the classifier on a frozen backbone's features, computed once per image.

This is the retrain.py flow of the TensorFlow transfer-learning tutorial: with the backbone frozen
(usually from `--model.init_from`), its output for an image never changes, so it is computed once,
kept in a cache on disk, and every later epoch (and every later run with the same backbone) trains
the small classifier on the cached features alone.

The cache lives in ``<cache_dir>/<backbone key>/``: the key is a hash of the backbone's weights and
BatchNorm statistics (plus width, channels and resolution), so a different checkpoint never sees
another one's features, while two checkpoints with the same backbone share them. Inside, each
image's features are keyed by a hash of the exact input tensor the model receives (after
preprocessing), so a changed image, crop or resolution is a miss, never a wrong hit. New features
go to a new shard file at the end of each epoch (written under a temporary name, then renamed).

Features are computed with the backbone in inference mode (BatchNorm uses its running statistics),
which is what evaluation uses too, by a frozen copy of the model taken when fitting starts: the
weight-EMA callback swaps its averaged weights into the live model for validation (before its first
update those still hold the pre-`init_from` backbone), and features cached under this backbone's
key must come from this backbone. Random distortions make each epoch's input tensors new, so the
cache cannot help: with distortions on, training features are computed every step (with a warning);
validation and test inputs are deterministic and still use the cache.

With `TwoStageFinetuning` (freeze_blocks covering the whole backbone), bottleneck mode is its first
stage: the classifier trains on cached features until `unfreeze_at_epoch`, then the whole model
fine-tunes on images as usual.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.outputs import staged_file
from vwwtorch.training.data_needs import training_data

SHARD_SUFFIX = ".npz"
KEY_BYTES = 20  # sha1


def backbone_key(model) -> str:
    """Hash of everything that decides a MobileNetV1 backbone's features."""
    h = hashlib.sha256()
    h.update(json.dumps({"width": model.width, "in_channels": model.in_channels,
                         "resolution": model.resolution}, sort_keys=True).encode())
    for name, tensor in model.features.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:24]


def image_keys(x: torch.Tensor) -> list[bytes]:
    """sha1 of each input tensor of the batch, as the model receives it."""
    data = x.detach().to("cpu", torch.float32).contiguous().numpy()
    return [hashlib.sha1(sample.tobytes()).digest() for sample in data]


class FeatureCache:
    """Features of one backbone, by image key: all shards of `folder` in memory, new ones added on flush."""

    def __init__(self, folder: str | os.PathLike, rank: int = 0):
        self.folder = Path(folder)
        self.rank = rank
        self._rows: dict[bytes, np.ndarray] = {}
        self._new_keys: list[bytes] = []
        self._new_rows: list[np.ndarray] = []
        self._load()

    def _load(self) -> None:
        if not self.folder.is_dir():
            return
        for shard in sorted(self.folder.glob(f"*{SHARD_SUFFIX}")):
            try:
                with np.load(shard, allow_pickle=False) as data:
                    keys, features = data["keys"], data["features"]
            except Exception as exc:  # noqa: BLE001 - a damaged shard only costs recomputation
                warnings.warn(f"bottleneck cache: ignoring unreadable {shard} ({type(exc).__name__})")
                continue
            # Keys as raw bytes rows: numpy's "S" strings would drop a digest's trailing zero bytes.
            for key, row in zip(keys, features):
                self._rows[key.tobytes()] = row

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: bytes) -> Optional[np.ndarray]:
        return self._rows.get(key)

    def put(self, key: bytes, row: np.ndarray) -> None:
        if key not in self._rows:
            self._rows[key] = row
            self._new_keys.append(key)
            self._new_rows.append(row)

    def flush(self) -> Optional[Path]:
        """Write the features added since the last flush as one new shard; returns its path."""
        if not self._new_keys:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{time.time_ns()}-{os.getpid()}-r{self.rank}{SHARD_SUFFIX}"
        with staged_file(path, "wb", checked=True) as f:
            keys = np.frombuffer(b"".join(self._new_keys), dtype=np.uint8).reshape(-1, KEY_BYTES)
            np.savez(f, keys=keys, features=np.stack(self._new_rows))
        self._new_keys, self._new_rows = [], []
        return path


class BottleneckTraining(Callback):
    """Train only the classifier: the backbone is frozen and its features are cached on disk.

    Args:
        cache_dir: folder of the feature cache (one sub-folder per backbone).
        use_cache: False computes the frozen backbone's features every step (to compare speed).
    """

    def __init__(self, cache_dir: str = "bottleneck_cache", use_cache: bool = True):
        self.cache_dir, self.use_cache = cache_dir, use_cache
        self.cache: Optional[FeatureCache] = None
        self.cache_train = False
        self.hits = self.misses = 0
        self.key: Optional[str] = None
        self._frozen = None  # the model copy whose backbone computes the features
        self.until_epoch: Optional[int] = None  # set when a TwoStageFinetuning callback ends this mode

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if getattr(pl_module, "int8", None) is not None:
            raise UserError("--model.qat true trains the int8 network end to end, and the bottleneck cache holds "
                            "float features: drop the BottleneckTraining callback (or train without QAT)")
        from vwwtorch.training.finetune import TwoStageFinetuning

        stages = [c for c in trainer.callbacks if isinstance(c, TwoStageFinetuning)]
        blocks = len(pl_module.model.features)
        if stages and stages[0].freeze_blocks < blocks:
            raise UserError(f"BottleneckTraining with TwoStageFinetuning needs freeze_blocks: {blocks} (the whole "
                            f"backbone frozen in stage 1), not {stages[0].freeze_blocks}")
        self.until_epoch = stages[0].unfreeze_at_epoch if stages else None
        if not self._active(trainer.current_epoch):
            return
        # Before the optimizer is built: frozen parameters never get a gradient, so it skips them.
        for p in pl_module.model.features.parameters():
            p.requires_grad = False
        if not pl_module.starts_from_checkpoint:
            rank_zero_warn("bottleneck mode without --model.init_from: the classifier trains on the features "
                           "of a randomly initialised backbone")

    def _active(self, epoch: int) -> bool:
        return self.until_epoch is None or epoch < self.until_epoch

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.hits = self.misses = 0
        self.cache = None
        if not self._active(trainer.current_epoch):  # resumed after the backbone was unfrozen
            return
        # After `init_from` and a resumed checkpoint are loaded: the backbone training really uses.
        self._frozen = copy.deepcopy(pl_module.model).eval().requires_grad_(False)
        if self.use_cache:
            self.key = backbone_key(self._frozen)
            self.cache = FeatureCache(Path(self.cache_dir) / self.key, rank=trainer.global_rank)
            data = training_data(trainer)
            # Another data module says nothing of its distortions: assume each epoch's inputs are new.
            self.cache_train = data is not None and not data.random_train_inputs
            if not self.cache_train:
                rank_zero_warn("bottleneck cache disabled for training: random distortions are on, so every "
                               "epoch's inputs are new; switch data.augmentation off (crop_area and crop_aspect "
                               "[1, 1], hflip false, brightness and contrast 0) to train from cached features")
            rank_zero_info(f"bottleneck cache {self.cache.folder}: {len(self.cache)} images cached")
        pl_module.use_backbone_features(self.features)

    @torch.no_grad()
    def features(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """Pooled backbone features [N, C, 1, 1] for the batch, from the cache where possible."""
        model = self._frozen
        if next(model.parameters()).device != x.device:
            model.to(x.device)
        if self.cache is None or (training and not self.cache_train):
            return self._compute(model, x)
        keys = image_keys(x)
        rows = [self.cache.get(k) for k in keys]
        missing = [i for i, row in enumerate(rows) if row is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            computed = self._compute(model, x[missing]).flatten(1).cpu().numpy()
            for i, row in zip(missing, computed):
                rows[i] = row
                self.cache.put(keys[i], row)
        return torch.from_numpy(np.stack(rows)).to(x.device)[:, :, None, None]

    @staticmethod
    def _compute(model, x: torch.Tensor) -> torch.Tensor:
        return model.forward_features(x)  # `model` is in eval mode: running BatchNorm statistics

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._frozen is not None and not self._active(trainer.current_epoch):
            pl_module.use_backbone_features(None)
            self._frozen = None
            if self.cache is not None:
                self.cache.flush()
            rank_zero_info(f"epoch {trainer.current_epoch}: bottleneck mode ends ({self.hits} cache hits, "
                           f"{self.misses} misses); the whole model trains on images from now on")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.cache is not None:
            self.cache.flush()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.cache is not None:
            self.cache.flush()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.use_backbone_features(None)  # evaluation after fit runs the whole model again
        self._frozen = None
        if self.cache is not None:
            self.cache.flush()
            rank_zero_info(f"bottleneck cache {self.cache.folder}: {self.hits} hits, {self.misses} misses")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self.cache is not None:
            self.cache.flush()  # an interrupted run keeps the features it computed
