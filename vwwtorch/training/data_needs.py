"""What the training recipe needs to know of its data, as one small interface.

The LR schedule counts epochs in training images and steps in global batches, inverse-frequency
class weights need the training labels, and bottleneck mode can cache training features only when
the training inputs are not randomly distorted. `VWWDataModule` answers these; the recipe asks
`training_data(trainer)` rather than reading the data module's attributes.
"""

from __future__ import annotations

from typing import Optional, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TrainingData(Protocol):
    batch_size: int                              # per device

    def num_train_images(self) -> int: ...

    def train_labels(self) -> np.ndarray: ...

    @property
    def random_train_inputs(self) -> bool: ...   # whether each epoch's training inputs are new


def training_data(trainer) -> Optional[TrainingData]:
    """The trainer's data module when it answers `TrainingData` (None: another one, or none)."""
    datamodule = getattr(trainer, "datamodule", None)
    return datamodule if isinstance(datamodule, TrainingData) else None
