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
    """The weight-only criteria (``compute_masks``); ``list_methods`` adds those that learn from data."""
    return CRITERIA.names()


LEARNED: Registry[Callable] = Registry("learned pruning method")


def register_learned(name: str | None = None, **info):
    """Register ``learn(model, data, config, amount, scope, keep_ends, previous, out_dir, resume, progress)
    -> (masks, history)``: a method that learns its mask from data under a training objective."""
    return LEARNED.register(name, needs_data=True, **info)


def list_methods() -> dict[str, dict]:
    """Every pruning method by name, with whether it needs data (a learned method) or only the weights."""
    return {**{n: {"needs_data": False} for n in CRITERIA.names()},
            **{n: {"needs_data": True} for n in LEARNED.names()}}


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


@register_criterion("lamp", label="LAMP")
def lamp_scores(w: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """LAMP (Lee et al., ICLR 2021, "Layer-adaptive sparsity for the magnitude-based pruning", Eq. 2): with the
    layer's weights sorted by magnitude, ``score(u) = w_u^2 / sum_{v >= u} w_v^2`` (the sum over u and every
    weight at least as large). One global threshold over these scores gives each layer its own sparsity, and a
    layer's largest weight scores 1, so no layer is pruned entirely. Ties are ordered by position."""
    sq = w.detach().float().flatten() ** 2
    order = torch.sort(sq, stable=True).indices
    sorted_sq = sq[order]
    suffix = torch.flip(torch.cumsum(torch.flip(sorted_sq, [0]), 0), [0])  # sum over v >= u in sorted order
    scores = torch.empty_like(sq)
    scores[order] = sorted_sq / suffix.clamp_min(torch.finfo(sq.dtype).tiny)
    return scores.view(w.shape).to(w.device)


SCORERS = CRITERIA  # the old name
