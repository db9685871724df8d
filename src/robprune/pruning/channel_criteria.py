"""Channel criteria: a criterion scores every channel of a coupled group, and the lowest-scoring channels go.

A group is the set of layers whose channels must be removed together (a
conv, its BatchNorm, the next conv's inputs; in a ResNet every conv and
shortcut writing into the same residual sum). A criterion sees the group as
``ChannelGroup``: ``filters``, one ``(channels, fan_in)`` tensor per conv or
linear that *produces* the group's channels, and ``bn_scales``, one
``(channels,)`` tensor per BatchNorm on them, rows aligned to the group's
channels. A new criterion is one function plus ``@register_channel_criterion``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..registry import Registry


@dataclass
class ChannelGroup:
    channels: int
    filters: list[torch.Tensor]
    bn_scales: list[torch.Tensor]


ChannelScorer = Callable[[ChannelGroup, torch.Generator], torch.Tensor]
CHANNEL_CRITERIA: Registry[ChannelScorer] = Registry("channel criterion")


def register_channel_criterion(name: str | None = None, **info):
    """Register ``score(group, generator) -> (channels,) tensor``; the lowest scores are removed."""
    return CHANNEL_CRITERIA.register(name, **info)


def _filter_l1(group: ChannelGroup) -> torch.Tensor:
    total = torch.zeros(group.channels)
    for w in group.filters:
        total += w.detach().abs().sum(1).float().cpu()
    return total


@register_channel_criterion("l1", label="L1 filter norm")
def l1_channels(group: ChannelGroup, generator: torch.Generator) -> torch.Tensor:
    """CP at channel level (Li et al. 2017): the channels whose filters have the smallest L1 norm go first."""
    return _filter_l1(group)


@register_channel_criterion("reverse", label="reverse L1")
def reverse_channels(group: ChannelGroup, generator: torch.Generator) -> torch.Tensor:
    """The paper's RP at channel level: the channels with the largest filter L1 norm go first."""
    return -_filter_l1(group)


@register_channel_criterion("random", label="random channels")
def random_channels(group: ChannelGroup, generator: torch.Generator) -> torch.Tensor:
    """A control: channels removed uniformly at random under the seed."""
    return torch.rand(group.channels, generator=generator)


@register_channel_criterion("bn_scale", label="BN scale")
def bn_scale_channels(group: ChannelGroup, generator: torch.Generator) -> torch.Tensor:
    """Network slimming (Liu et al. 2017): the channels whose BatchNorm scales |gamma| are smallest go first.

    A group without BatchNorm (a plain conv net) falls back to the L1 filter norm."""
    if not group.bn_scales:
        return _filter_l1(group)
    total = torch.zeros(group.channels)
    for g in group.bn_scales:
        total += g.detach().abs().float().cpu()
    return total
