"""LightningDataModule over a dataset folder in the vwwtorch format (docs/dataset_format.md).

Training reads whole batches of uint8 images from the memory-mapped split (one gather per batch, no
per-image Python), moves them to the training device as they are, and augments them there, the
whole batch at once (`vwwtorch.data.batch_augmentation`, in `on_after_batch_transfer`). Validation
and test images go through the deployment rule one by one, as every evaluation does.

Two properties the recipe needs and stock DataLoaders do not give:
- augmentation is a pure function of (seed, epoch, rank, batch number), so results do not depend on
  the number of workers, the device or on where a run was interrupted;
- the train loader is resumable mid-epoch: its state (epoch, batches done) goes into Lightning
  checkpoints, and a resumed run skips exactly the batches it already trained on.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Callable, Iterator, NamedTuple, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vwwtorch.data.batch_augmentation import BatchAugmentation
from vwwtorch.data.format import SplitArrays, open_split, read_meta
from vwwtorch.data.transforms import Augmentation, eval_transform
from vwwtorch.contract.deployment import normalization
from vwwtorch.plumbing.errors import UserError


class SplitDataset(Dataset):
    """Memory-mapped split for evaluation: one image at a time through a deterministic transform."""

    def __init__(self, arrays: SplitArrays, transform: Callable):
        self.arrays, self.transform = arrays, transform

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, key):
        _, index = key if isinstance(key, tuple) else (0, key)
        image = torch.from_numpy(np.array(self.arrays.images[index])).permute(2, 0, 1)  # HWC -> CHW
        return self.transform(image), int(self.arrays.labels[index])


class BatchKey(NamedTuple):
    """What the train sampler yields: which images, and what seeds their augmentation."""

    epoch: int
    rank: int
    number: int         # the batch's place in the rank's epoch
    indices: tuple


class SplitBatches(Dataset):
    """Memory-mapped split read a batch at a time: uint8 [B, C, H, W] images (or, when the split is
    resident on the training device, only their indices), labels, and the seed of the batch's
    augmentation (which `BatchAugmentation` applies on the training device)."""

    def __init__(self, arrays: SplitArrays, seed: int, read_images: bool = True):
        self.arrays, self.seed, self.read_images = arrays, seed, read_images

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, key: BatchKey) -> dict:
        indices = np.asarray(key.indices)
        batch = {"labels": torch.from_numpy(np.asarray(self.arrays.labels[indices], dtype=np.int64)),
                 "seed": _mix(self.seed, key.epoch, key.rank, key.number)}  # an int: stays on the host
        if not self.read_images:
            return {**batch, "indices": torch.from_numpy(indices.astype(np.int64))}
        order = np.argsort(indices, kind="stable")    # ascending reads from the memory map
        images = np.empty((len(indices), *self.arrays.images.shape[1:]), dtype=np.uint8)
        images[order] = self.arrays.images[indices[order]]
        return {**batch, "images": torch.from_numpy(images).permute(0, 3, 1, 2)}  # NHWC -> NCHW view


def resident_images(arrays: SplitArrays, device: torch.device) -> torch.Tensor:
    """The whole split's uint8 images as one [N, C, H, W] tensor on `device`: copied there once (a
    GPU), or the memory map itself (the CPU)."""
    with warnings.catch_warnings():  # a read-only memory map: the tensor is only ever read
        warnings.simplefilter("ignore", UserWarning)
        images = torch.from_numpy(np.asarray(arrays.images))
    return images.to(device).permute(0, 3, 1, 2)


def _mix(*values: int) -> int:
    return int(np.random.SeedSequence(list(values)).generate_state(1)[0])


class EpochSampler(Sampler):
    """Shuffled (epoch, index) pairs, split across DDP ranks like DistributedSampler.

    Lightning calls `set_epoch` on it every epoch.
    """

    def __init__(self, size: int, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skip = 0  # samples of this rank to skip once (set when resuming mid-epoch)
        self.per_rank = math.ceil(size / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = np.random.default_rng(_mix(self.seed, self.epoch)).permutation(self.size)
        else:
            order = np.arange(self.size)
        padded = np.resize(order, self.per_rank * self.world_size)  # wrap around, as DistributedSampler
        mine = padded[self.rank::self.world_size]
        skip, self.skip = self.skip, 0
        for index in mine[skip:]:
            yield self.epoch, int(index)


class EpochBatchSampler(Sampler):
    """`EpochSampler`'s order cut into full batches (the last partial one is dropped), as `BatchKey`s."""

    def __init__(self, samples: EpochSampler, batch_size: int):
        self.samples, self.batch_size = samples, batch_size
        self.skip = 0  # batches to skip once (set when resuming mid-epoch)

    @property
    def epoch(self) -> int:
        return self.samples.epoch

    def set_epoch(self, epoch: int) -> None:
        self.samples.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.samples) // self.batch_size

    def __iter__(self) -> Iterator[BatchKey]:
        skip, self.skip = self.skip, 0
        self.samples.skip = skip * self.batch_size
        pairs = iter(self.samples)
        for number in range(skip, len(self)):
            chunk = [next(pairs) for _ in range(self.batch_size)]
            yield BatchKey(self.samples.epoch, self.samples.rank, number, tuple(i for _, i in chunk))


class ResumableLoader(DataLoader):
    """Train DataLoader over `SplitBatches`, whose position inside the epoch is saved in Lightning
    checkpoints.

    `batches_done` is asked of the trainer at save time, so batches the loader has prefetched but the
    loop has not trained on are not counted.
    """

    def __init__(self, dataset: SplitBatches, sampler: EpochBatchSampler, *, batches_done: Callable[[], int],
                 **kwargs):
        super().__init__(dataset, batch_size=None, sampler=sampler, **kwargs)
        self._batches_done = batches_done

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batches_done": int(self._batches_done())}

    def load_state_dict(self, state: dict) -> None:
        done = state["batches_done"]
        if 0 < done < len(self):  # a finished epoch needs no skipping: the next one starts fresh
            self.sampler.set_epoch(state["epoch"])
            self.sampler.skip = done


class VWWDataModule(pl.LightningDataModule):
    """Reads a vwwtorch dataset folder.

    Args:
        data_dir: dataset folder (meta.json + split arrays).
        batch_size: per-device batch size (the book uses 96).
        num_workers: DataLoader worker processes; by default none when training on the CPU (reading
            a batch is one gather from the memory map, and a worker would only take a core from
            the training step) and up to 4 on an accelerator, to read ahead while it computes.
        resolution: model input size; set from the model by the CLI.
        channels: model input channels; set from the model by the CLI.
        convert_channels: allow feeding RGB data to a grayscale model (or the reverse) by converting.
        augmentation: train-time distortions (slim's inception preprocessing by default).
        input_range: the model's input range, "[-1, 1]" or "[0, 1]"; set from the model by the CLI.
        train_split, val_split, test_split: split names inside the dataset.
        seed: seed for shuffling and augmentation.
        resident: keep the whole train split in the training device's memory and gather batches
            there (no per-batch copies from the host). Default: on a GPU, when the split takes at
            most a quarter of its free memory (VWW at 128x128 grayscale is ~2 GB); never on a CPU,
            where the memory map already is the resident copy.
    """

    def __init__(self, data_dir: str, batch_size: int = 96, num_workers: Optional[int] = None, resolution: int = 96,
                 channels: int = 1, convert_channels: bool = False,
                 augmentation: Optional[Augmentation] = None, train_split: str = "train",
                 val_split: str = "val", test_split: str = "test", seed: int = 0,
                 input_range: str = "[-1, 1]", resident: Optional[bool] = None):
        super().__init__()
        if batch_size < 1:
            raise UserError(f"--data.batch_size must be at least 1, got {batch_size}")
        if num_workers is not None and num_workers < 0:
            raise UserError(f"--data.num_workers must be 0 or more, got {num_workers}")
        self.data_dir, self.batch_size, self.num_workers = data_dir, batch_size, num_workers
        self.resolution, self.channels, self.convert_channels = resolution, channels, convert_channels
        self.augmentation = augmentation or Augmentation()
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.seed = seed
        self.input_range = normalization(input_range).name
        self.meta: Optional[dict] = None
        self.resident = resident
        self._augmenter: Optional[BatchAugmentation] = None
        self._resident: Optional[torch.Tensor] = None

    # -- dataset checks -------------------------------------------------------------------------
    def _load_meta(self) -> dict:
        if self.meta is None:
            meta = read_meta(self.data_dir)
            if meta["channels"] != self.channels and not self.convert_channels:
                raise UserError(
                    f"dataset {self.data_dir} has {meta['channels']}-channel images but the model takes "
                    f"{self.channels}; pass --data.convert_channels true to convert them"
                )
            self.meta = meta
        return self.meta

    @property
    def classes(self) -> list[str]:
        return self._load_meta()["classes"]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def num_train_images(self) -> int:
        """Size of the train split (the LR schedule's epochs are counted in it)."""
        return self._load_meta()["splits"][self.splits["train"]]["count"]

    # -- what the training recipe asks (`vwwtorch.training.data_needs.TrainingData`) ----------------
    def train_labels(self) -> np.ndarray:
        """The train split's labels (for inverse-frequency class weights)."""
        return np.asarray(open_split(self.data_dir, self.splits["train"]).labels)

    @property
    def random_train_inputs(self) -> bool:
        """Whether augmentation makes each epoch's training inputs new (then they cannot be cached)."""
        return self.augmentation.random

    def _arrays(self, stage: str) -> SplitArrays:
        meta = self._load_meta()
        arrays = open_split(self.data_dir, self.splits[stage], meta)
        if len(arrays) == 0:
            raise UserError(f"split {self.splits[stage]!r} of {self.data_dir} is empty")
        if int(np.max(arrays.labels)) >= len(meta["classes"]) or int(np.min(arrays.labels)) < 0:
            raise UserError(f"split {self.splits[stage]!r} of {self.data_dir} has labels outside "
                            f"0..{len(meta['classes']) - 1}")
        return arrays

    def augmenter(self) -> BatchAugmentation:
        """The train-time augmentation, for uint8 batches on any device."""
        return BatchAugmentation(self.resolution, self.augmentation, self._load_meta()["channels"], self.channels,
                                 self.input_range)

    def augment(self, batch):
        """A train batch as the loader gives it (uint8, any device) -> (model input, labels); any
        other batch (validation, test) passes unchanged."""
        if not (isinstance(batch, dict) and "seed" in batch):
            return batch
        if self._augmenter is None:
            self._augmenter = self.augmenter()
        if "indices" in batch:
            device = batch["indices"].device
            if self._resident is None or self._resident.device != device:
                self._resident = resident_images(self._arrays("train"), device)
            images = self._resident[batch["indices"]]
        else:
            images = batch["images"]
        return self._augmenter(images, batch["seed"]), batch["labels"]

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        return self.augment(batch)

    # -- Lightning hooks ------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        self._load_meta()

    def _rank_info(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loader(self, stage: str, train: bool):
        arrays = self._arrays(stage)
        rank, world = self._rank_info()
        samples = EpochSampler(len(arrays), self.seed, shuffle=train, rank=rank, world_size=world)
        count = self._workers()
        workers = dict(num_workers=count, persistent_workers=count > 0)
        if train:
            batches = SplitBatches(arrays, self.seed, read_images=not self._keep_resident(arrays))
            return ResumableLoader(batches, EpochBatchSampler(samples, self.batch_size),
                                   batches_done=self._train_batches_done, **workers)
        dataset = SplitDataset(arrays, eval_transform(self.resolution, self.channels, self.input_range))
        return DataLoader(dataset, batch_size=self.batch_size, sampler=samples, **workers)

    def _device(self) -> torch.device:
        return torch.device("cpu") if self.trainer is None else self.trainer.strategy.root_device

    def _keep_resident(self, arrays: SplitArrays) -> bool:
        if self.resident is not None:
            return self.resident
        device = self._device()
        if device.type != "cuda":
            return False
        free, _ = torch.cuda.mem_get_info(device)
        return arrays.images.nbytes <= free / 4

    def _workers(self) -> int:
        if self.num_workers is not None:
            return self.num_workers
        return 0 if self._device().type == "cpu" else min(4, os.cpu_count() or 1)

    def _train_batches_done(self) -> int:
        return self.trainer.fit_loop.epoch_loop.batch_idx + 1

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader("test", train=False)
