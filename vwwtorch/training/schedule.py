"""The book's learning-rate schedule: staircase exponential decay, as `tf.train.exponential_decay`."""

from __future__ import annotations

import math


def decay_steps(num_train_images: int, global_batch_size: int, epochs_per_decay: float) -> int:
    """slim: `int(num_samples_per_epoch * num_epochs_per_decay / batch_size)`, at least 1."""
    return max(1, int(num_train_images * epochs_per_decay / global_batch_size))


def staircase_factor(step: int, steps_per_decay: int, decay_factor: float) -> float:
    """Multiplier of the base learning rate after `step` optimizer steps."""
    return decay_factor ** math.floor(step / steps_per_decay)
