"""CIFAR ResNets of He et al. 2016, "Deep Residual Learning for Image Recognition", Sec. 4.2.

Option-A shortcut (identity, stride-2 subsampling, zero channel padding),
parameter names of the community project pytorch_resnet_cifar10 so its
checkpoints import directly. Inputs in [0, 1], normalised by the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import CIFAR10_MEAN, CIFAR10_STD, Normalize, PadShortcut
from .registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = PadShortcut(planes // 4, in_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs; any input size works (global average pool)."""

    def __init__(
        self,
        depth: int,
        num_classes: int = 10,
        in_channels: int = 3,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, n, stride=1)
        self.layer2 = self._stage(16, 32, n, stride=2)
        self.layer3 = self._stage(32, 64, n, stride=2)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


@register_model("resnet20", params=269_722)
def resnet20(**kw) -> CifarResNet:
    """ResNet-20: 269,722 parameters (0.27M) with 10 classes."""
    return CifarResNet(20, **kw)


@register_model("resnet32", params=464_154)
def resnet32(**kw) -> CifarResNet:
    """ResNet-32: 464,154 parameters (0.46M) with 10 classes."""
    return CifarResNet(32, **kw)


@register_model("resnet44", params=658_586)
def resnet44(**kw) -> CifarResNet:
    """ResNet-44: 658,586 parameters (0.66M) with 10 classes."""
    return CifarResNet(44, **kw)


@register_model("resnet56", params=853_018)
def resnet56(**kw) -> CifarResNet:
    """ResNet-56: 853,018 parameters (0.85M) with 10 classes."""
    return CifarResNet(56, **kw)


@register_model("resnet110", params=1_727_962)
def resnet110(**kw) -> CifarResNet:
    """ResNet-110: 1,727,962 parameters (1.7M) with 10 classes."""
    return CifarResNet(110, **kw)
