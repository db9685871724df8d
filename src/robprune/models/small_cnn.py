"""A small CNN for tiny inputs such as scikit-learn's 8x8 digits (the demo and the fast tests)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Normalize
from .registry import register_model


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU layers and a linear head, for tiny inputs such as 8x8 digits."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean or (0.5,) * in_channels, std or (0.5,) * in_channels)
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(64)
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = F.max_pool2d(F.relu(self.bn2(self.conv2(out))), 2)
        out = F.relu(self.bn3(self.conv3(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_model("small_cnn", params=56_554, in_channels=1)
def small_cnn(**kw) -> SmallCNN:
    """Small CNN for 8x8 digits: 56,554 parameters with 1 input channel, 10 classes."""
    return SmallCNN(**kw)
