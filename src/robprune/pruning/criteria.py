"""Pruning criteria: a criterion is a scoring function, and the weights with the *lowest* scores are pruned.

Conventional pruning (CP) scores by ``|w|``; reverse pruning (RP, the
paper's Sec. 3) scores by ``-|w|`` so the largest-magnitude weights go first.
A new criterion is one function plus ``@register_criterion``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..registry import Registry

Scorer = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
CRITERIA: Registry[Scorer] = Registry("pruning method")


def register_criterion(name: str | None = None, **info):
    """Register ``score(w, generator) -> tensor of w's shape``; the lowest scores are pruned."""
    return CRITERIA.register(name, **info)


def list_criteria() -> list[str]:
    return CRITERIA.names()


@register_criterion("cp", label="CP")
def magnitude_scores(w: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """CP: the smallest |w| is pruned first."""
    return w.abs()


@register_criterion("rp", label="RP")
def reverse_magnitude_scores(w: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """RP: the largest |w| is pruned first."""
    return -w.abs()


@register_criterion("random", label="random")
def random_scores(w: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random pruning, a control: scores drawn uniformly under ``generator``."""
    return torch.rand(w.shape, generator=generator).to(w.device)


SCORERS = CRITERIA  # the old name
