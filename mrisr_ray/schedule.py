"""The seed paper's learning-rate schedule, relative to the epochs actually run (docs/training.md)."""

from __future__ import annotations

import math

from mrisr_ray.config import TrainConfig, epochs_share


def learning_rate(epoch: int, train: TrainConfig) -> float:
    """lr for 1-based `epoch`: constant for the first ceil(decay_start·epochs) epochs, then
    linear down to `lr_final` at the last epoch (paper: 1e-4 for 1-50, 2e-6 at 100; a 1-epoch
    run trains at `lr`)."""
    constant = math.ceil(epochs_share(train.decay_start, train.epochs))
    if epoch <= constant or train.epochs == constant:
        return train.lr
    progress = (epoch - constant) / (train.epochs - constant)
    return train.lr + (train.lr_final - train.lr) * progress
