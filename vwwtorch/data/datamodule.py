"""LightningDataModule over a dataset folder in the vwwtorch format (docs/dataset_format.md).

Two properties the recipe needs and stock DataLoaders do not give:
- augmentation is a pure function of (seed, epoch, sample index), so results do not depend on the
  number of workers or on where a run was interrupted;
- the train loader is resumable mid-epoch: its state (epoch, batches done) goes into Lightning
  checkpoints, and a resumed run skips exactly the batches it already trained on.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Callable, Iterator, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vwwtorch.data.format import SplitArrays, open_split, read_meta
from vwwtorch.data.transforms import Augmentation, eval_transform, train_transform
from vwwtorch.contract.deployment import normalization
from vwwtorch.contract.errors import UserError


class SplitDataset(Dataset):
    """Memory-mapped split; `__getitem__` takes (epoch, index) so augmentation can be seeded per sample."""

    def __init__(self, arrays: SplitArrays, transform: Callable, seed: int):
        self.arrays, self.transform, self.seed = arrays, transform, seed

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        image = torch.from_numpy(np.array(self.arrays.images[index])).permute(2, 0, 1)  # HWC -> CHW
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, epoch, index))
            x = self.transform(image)
        return x, int(self.arrays.labels[index])


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


class ResumableLoader(DataLoader):
    """DataLoader whose position inside the epoch is saved in Lightning checkpoints.

    `batches_done` is asked of the trainer at save time, so batches the loader has prefetched but the
    loop has not trained on are not counted.
    """

    def __init__(self, *args, batches_done: Callable[[], int], **kwargs):
        super().__init__(*args, **kwargs)
        self._batches_done = batches_done

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batches_done": int(self._batches_done())}

    def load_state_dict(self, state: dict) -> None:
        done = state["batches_done"]
        if 0 < done < len(self):  # a finished epoch needs no skipping: the next one starts fresh
            self.sampler.set_epoch(state["epoch"])
            self.sampler.skip = done * self.batch_size


class VWWDataModule(pl.LightningDataModule):
    """Reads a vwwtorch dataset folder.

    Args:
        data_dir: dataset folder (meta.json + split arrays).
        batch_size: per-device batch size (the book uses 96).
        num_workers: DataLoader worker processes.
        resolution: model input size; set from the model by the CLI.
        channels: model input channels; set from the model by the CLI.
        convert_channels: allow feeding RGB data to a grayscale model (or the reverse) by converting.
        augmentation: train-time distortions (slim's inception preprocessing by default).
        input_range: the model's input range, "[-1, 1]" or "[0, 1]"; set from the model by the CLI.
        train_split, val_split, test_split: split names inside the dataset.
        seed: seed for shuffling and augmentation.
    """

    def __init__(self, data_dir: str, batch_size: int = 96, num_workers: int = 2, resolution: int = 96,
                 channels: int = 1, convert_channels: bool = False,
                 augmentation: Optional[Augmentation] = None, train_split: str = "train",
                 val_split: str = "val", test_split: str = "test", seed: int = 0,
                 input_range: str = "[-1, 1]"):
        super().__init__()
        if batch_size < 1:
            raise UserError(f"--data.batch_size must be at least 1, got {batch_size}")
        if num_workers < 0:
            raise UserError(f"--data.num_workers must be 0 or more, got {num_workers}")
        self.data_dir, self.batch_size, self.num_workers = data_dir, batch_size, num_workers
        self.resolution, self.channels, self.convert_channels = resolution, channels, convert_channels
        self.augmentation = augmentation or Augmentation()
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.seed = seed
        self.input_range = normalization(input_range).name
        self.meta: Optional[dict] = None

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

    def _dataset(self, stage: str, train: bool) -> SplitDataset:
        meta = self._load_meta()
        arrays = open_split(self.data_dir, self.splits[stage], meta)
        if len(arrays) == 0:
            raise UserError(f"split {self.splits[stage]!r} of {self.data_dir} is empty")
        if int(np.max(arrays.labels)) >= len(meta["classes"]) or int(np.min(arrays.labels)) < 0:
            raise UserError(f"split {self.splits[stage]!r} of {self.data_dir} has labels outside "
                            f"0..{len(meta['classes']) - 1}")
        if train:
            tf = train_transform(self.resolution, self.augmentation, meta["channels"], self.channels,
                                 self.input_range)
        else:
            tf = eval_transform(self.resolution, self.channels, self.input_range)
        return SplitDataset(arrays, tf, self.seed)

    # -- Lightning hooks ------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        self._load_meta()

    def _rank_info(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loader(self, stage: str, train: bool):
        dataset = self._dataset(stage, train)
        rank, world = self._rank_info()
        sampler = EpochSampler(len(dataset), self.seed, shuffle=train, rank=rank, world_size=world)
        common = dict(batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                      persistent_workers=self.num_workers > 0, drop_last=train)
        if train:
            return ResumableLoader(dataset, batches_done=self._train_batches_done, **common)
        return DataLoader(dataset, **common)

    def _train_batches_done(self) -> int:
        return self.trainer.fit_loop.epoch_loop.batch_idx + 1

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader("test", train=False)

    def augmentation_config(self) -> dict:
        return asdict(self.augmentation)
