"""ResNet-18 for CIFAR (3x3 stem, no max-pool) and its pre-activation variant.

He et al. 2016 ("Deep Residual Learning", "Identity Mappings in Deep Residual
Networks"), in the layout the robustness literature uses (HYDRA, HARP, the
Adversarial Pruning Benchmark): ``conv1/bn1/layer1..4/linear`` with projection
``shortcut`` Sequentials, so those codebases' state dicts map key for key.
Inputs in [0, 1], normalised by the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import CIFAR10_MEAN, CIFAR10_STD, Normalize
from .registry import register_model


def _projection(in_planes: int, planes: int, stride: int, with_bn: bool = True) -> nn.Sequential:
    if stride == 1 and in_planes == planes:
        return nn.Sequential()
    layers: list[nn.Module] = [nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)]
    if with_bn:
        layers.append(nn.BatchNorm2d(planes))
    return nn.Sequential(*layers)


class Block(nn.Module):
    """Basic block: conv-BN-ReLU-conv-BN, plus the (projected) input, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _projection(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv-BN-ReLU-conv, plus the (projected) input."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = _projection(in_planes, planes, stride, with_bn=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if len(self.shortcut) else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class ResNet(nn.Module):
    """Four stages of two blocks (64, 128, 256, 512 channels), global average pool, one linear head."""

    def __init__(self, block: type[nn.Module], num_blocks: Sequence[int] = (2, 2, 2, 2), num_classes: int = 10,
                 in_channels: int = 3, mean: Sequence[float] = CIFAR10_MEAN,
                 std: Sequence[float] = CIFAR10_STD) -> None:
        super().__init__()
        self.preact = block is PreActBlock
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        # The pre-activation network normalises inside its blocks and once after the last one.
        self.bn1 = nn.BatchNorm2d(512 if self.preact else 64)
        planes, layers = 64, []
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
            strides = [1 if i == 0 else 2] + [1] * (n - 1)
            stage = []
            for s in strides:
                stage.append(block(planes, width, s))
                planes = width
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        if not self.preact:
            out = F.relu(self.bn1(out))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        if self.preact:
            out = F.relu(self.bn1(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_model("resnet18", params=11_173_962)
def resnet18(**kw) -> ResNet:
    """CIFAR ResNet-18 (3x3 stem): 11,173,962 parameters with 10 classes."""
    return ResNet(Block, **kw)


@register_model("preact_resnet18", params=11_172_170)
def preact_resnet18(**kw) -> ResNet:
    """Pre-activation ResNet-18 with the final BN-ReLU of Wong et al. 2020: 11,172,170 parameters, 10 classes."""
    return ResNet(PreActBlock, **kw)
