"""Building blocks shared by the architectures: input normalisation and the option-A shortcut."""

from __future__ import annotations

from collections.abc import Sequence

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
    """Option-A shortcut: subsample by 2 and zero-pad the channels.

    Input channel ``i`` lands on output channel ``slots[i]`` (``-1``: dropped)
    of ``out_channels``; by default ``slots[i] = pad + i`` and ``out_channels =
    in_channels + 2 pad``, the paper's shortcut. Channel pruning rewrites the
    slots (``robprune.pruning.channels``); they are plain attributes, recorded
    in a slim checkpoint's metadata, so a dense model's state dict is unchanged.
    """

    def __init__(self, pad_channels: int, in_channels: int | None = None) -> None:
        super().__init__()
        self.pad_channels = pad_channels
        self.in_channels = in_channels
        self.slots: list[int] | None = None  # None: the padded layout above
        self.out_channels: int | None = None if in_channels is None else in_channels + 2 * pad_channels

    def layout(self) -> tuple[list[int], int]:
        """(slots, out_channels) in the explicit form, whatever the current form."""
        if self.slots is not None:
            return list(self.slots), int(self.out_channels)
        if self.in_channels is None:
            raise ValueError("a PadShortcut built without in_channels has no explicit channel layout")
        return [self.pad_channels + i for i in range(self.in_channels)], self.in_channels + 2 * self.pad_channels

    def set_layout(self, slots: Sequence[int], out_channels: int) -> None:
        slots = [int(s) for s in slots]
        if any(s < -1 or s >= out_channels for s in slots) or len({s for s in slots if s >= 0}) != sum(
                s >= 0 for s in slots):
            raise ValueError(f"PadShortcut slots must be distinct channels of {out_channels} or -1, got {slots}")
        self.slots, self.out_channels, self.in_channels = slots, int(out_channels), len(slots)
        # output channel j reads input channel source[j]; len(slots) names the zero channel appended in forward
        source = [len(slots)] * int(out_channels)
        for i, s in enumerate(slots):
            if s >= 0:
                source[s] = i
        self._source = source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.slots is None:
            p = self.pad_channels
            return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))
        # one zero channel appended, then a gather: traceable by torch.fx (BatchNorm folding) and Torch-Pruning
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, 1))[:, self._source]


class Normalized(nn.Module):
    """Any network behind a :class:`Normalize`: inputs in [0, 1], eps in pixel units (see ``wrap_model``)."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))
