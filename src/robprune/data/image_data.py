"""The in-memory dataset type every loader returns, and where decoded arrays are cached."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class ImageData:
    """A train/test split as uint8 tensors of shape (N, C, H, W) and int64 labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    augment: str  # default training augmentation: "crop-flip", "crop" or "none"
    crop_padding: int  # pixels of zero padding before the random crop

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the training images in [0, 1]."""
        x = self.x_train.float().div(255.0).transpose(0, 1).flatten(1)
        return tuple(x.mean(1).tolist()), tuple(x.std(1).clamp_min(1e-3).tolist())


def default_cache_dir() -> Path:
    return Path(os.environ.get("ROBPRUNE_CACHE", Path.home() / ".cache" / "robprune"))
