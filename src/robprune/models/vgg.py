"""VGG-16 with BatchNorm for 32x32 inputs (Simonyan & Zisserman 2015), with one linear head.

The layout of the CIFAR codebases (``features`` Sequential, ``classifier``
Linear(512, classes)) used by the Adversarial Pruning Benchmark's VGG-16-bn.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import CIFAR10_MEAN, CIFAR10_STD, Normalize
from .registry import register_model

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    def __init__(self, layout: Sequence[int | str] = VGG16, num_classes: int = 10, in_channels: int = 3,
                 mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        layers: list[nn.Module] = []
        channels = in_channels
        for v in layout:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(v), 3, padding=1), nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)]
                channels = int(v)
        # Global average pooling: 1x1 after five max-pools on 32x32, and any input size still works.
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)).flatten(1))


@register_model("vgg16_bn", params=14_728_266)
def vgg16_bn(**kw) -> VGG:
    """VGG-16-bn for CIFAR with one linear head: 14,728,266 parameters with 10 classes."""
    return VGG(VGG16, **kw)
