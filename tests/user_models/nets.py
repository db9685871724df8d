"""A user's own networks, defined outside robprune, reached through ``--arch user_models.nets:factory``."""

import torch
from torch import nn


def tiny_cnn(num_classes: int = 10, width: int = 8) -> nn.Module:
    """Conv-BN-ReLU twice in a Sequential, global pooling, linear head; no input normalisation of its own."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))


def tiny_mlp(num_classes: int = 10) -> nn.Module:
    """No BatchNorm: the same on every rank of a data-parallel run."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes))


def broken(num_classes: int = 10):
    raise RuntimeError("this factory is broken on purpose")


def not_a_module(num_classes: int = 10):
    return {"weights": 1}


class DownsampleBlock(nn.Module):
    """A torchvision-style residual block: conv/bn pairs and a ``downsample`` Sequential(conv, bn)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.downsample(x))


def downsample_net(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), DownsampleBlock(8, 16), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(16, num_classes))


def channels_cnn(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """A factory that builds for the channels it is given (robprune passes the data's)."""
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, num_classes))


def rgb_only(num_classes: int = 10) -> nn.Module:
    """A factory that always builds 3-channel inputs."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, num_classes))


def exits(num_classes: int = 10):
    import sys

    sys.exit(0)


def three_logits(num_classes: int = 10) -> nn.Module:
    """A factory that ignores num_classes and always gives 3 logits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
