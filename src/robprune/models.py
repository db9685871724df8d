"""Models that take inputs in [0, 1] and normalise them in their first layer.

Because normalisation lives inside the model, every attack radius in robprune
is in pixel units (``8/255``), as in RobustBench.

The CIFAR ResNets follow He et al. 2016, "Deep Residual Learning for Image
Recognition", Sec. 4.2, with the option-A shortcut (identity, stride-2
subsampling, zero channel padding), and use the parameter names of the
community project pytorch_resnet_cifar10 so its checkpoints import directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """(x - mean) / std with per-channel buffers; x is expected in [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad the channels."""

    def __init__(self, pad_channels: int) -> None:
        super().__init__()
        self.pad_channels = pad_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad_channels
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = PadShortcut(planes // 4)

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


def resnet20(**kw) -> CifarResNet:
    """ResNet-20: 269,722 parameters (0.27M) with 10 classes."""
    return CifarResNet(20, **kw)


def resnet32(**kw) -> CifarResNet:
    """ResNet-32: 464,154 parameters (0.46M) with 10 classes."""
    return CifarResNet(32, **kw)


def resnet44(**kw) -> CifarResNet:
    """ResNet-44: 658,586 parameters (0.66M) with 10 classes."""
    return CifarResNet(44, **kw)


def resnet56(**kw) -> CifarResNet:
    """ResNet-56: 853,018 parameters (0.85M) with 10 classes."""
    return CifarResNet(56, **kw)


def resnet110(**kw) -> CifarResNet:
    """ResNet-110: 1,727,962 parameters (1.7M) with 10 classes."""
    return CifarResNet(110, **kw)


def small_cnn(**kw) -> SmallCNN:
    """Small CNN for 8x8 digits: 56,554 parameters with 1 input channel, 10 classes."""
    return SmallCNN(**kw)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "small_cnn": small_cnn,
}


def create_model(
    name: str,
    num_classes: int = 10,
    in_channels: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Module:
    """Build an architecture by name; inputs in [0, 1], normalised by the model.

    ``in_channels`` defaults to 3 for ResNets and 1 for ``small_cnn``; ``mean``
    and ``std`` default to the CIFAR-10 statistics (ResNets) or 0.5 (small_cnn).
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    kw: dict = {"num_classes": num_classes}
    if in_channels is not None:
        kw["in_channels"] = in_channels
    channels = in_channels or (1 if name == "small_cnn" else 3)
    if mean is not None or std is not None:
        kw["mean"] = tuple(mean) if mean is not None else (0.0,) * channels
        kw["std"] = tuple(std) if std is not None else (1.0,) * channels
    model = ARCHITECTURES[name](**kw)
    # Read back by save_checkpoint so a checkpoint knows how to rebuild its model.
    model.robprune_spec = {"arch": name, "num_classes": num_classes, "in_channels": channels}
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
