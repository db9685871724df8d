"""Learned layer-wise rates in the spirit of HARP (Zhao & Wressnegger, ICLR 2023, "Holistic Adversarially Robust
Pruning"): HYDRA's importance scores plus one learned keep fraction per layer, under a global target.

Every prunable layer l has HYDRA's scores s_l (scaled initialisation, straight-through gradient) and a keep
fraction k_l = sigmoid(rho_l), started at what global magnitude pruning (CP) keeps of the layer, so the first mask
is CP's (at least one weight a layer). The forward pass keeps the
top round(k_l * n_l) of |s_l| (at least one weight). So that the objective can price a layer's rate, the mask's
backward pass adds a soft step in rank space, sigmoid((rank_i - (1 - k_l)) / width), whose gradient reaches rho_l
(the rank of |s_i| in its layer is held fixed for the step; the width is half the kept fraction); a rate moves by
the sign of its gradient (SGD with momentum at a tenth of the scores' learning rate), since the gradient of a
layer's rate grows with the layer's size. The loss adds a
size term, gamma(t) * relu(sum_l k_l n_l / K - 1) with K the target's kept count, and gamma follows HARP's
step-wise schedule: low in the first third of the steps (robustness first), high in the second (reach the target),
then 1 (both objectives equally). At the end each layer keeps a count proportional to its learned k_l n_l, scaled
so that exactly ``round(amount * n)`` weights are pruned (largest remainder; each layer keeps at least one weight
and at most all), the highest |s| of each layer.

How it differs from HARP (read in its paper; their code was not read): HARP's size objective can count
operations or parameters (here parameters only); its rate parameterisation, optimiser and regularisation
constants are its own (the schedule's shape, not its numbers, is followed here); this starts from global
magnitude pruning's allocation; and the last rounding step here makes the sparsity exact, which HARP reaches
through its loss. The weights are frozen as in HYDRA and fine-tuned under the mask afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..pruning.criteria import register_learned
from ..pruning.masks import Masks, check_amount, masks_from_ranks
from .hydra import _ScoredWeight, learn_with

GAMMA = (0.1, 10.0, 1.0)  # the size term's weight in each third of the steps
SIZE_SLACK = 1e-6  # float noise in the kept size is no excess (its gradient's sign would move every rate)
RATE_LR_SCALE = 0.1  # the rates' learning rate, relative to the scores' (their steps are gradient signs)
RATE_PREFIX = "rate:"


class _RatedWeight(_ScoredWeight):
    """``w -> w * m``: m the layer's current top-k of |s|; backward: straight-through to s, the soft rank step to
    the rate."""

    def __init__(self, scores: torch.Tensor, keep: float) -> None:
        super().__init__(scores)
        self.rate = nn.Parameter(torch.tensor(math.log(keep / (1 - keep)), device=scores.device))
        self.register_buffer("rank", torch.zeros_like(scores), persistent=False)  # rank of |s| / n, fixed a step

    def keep(self) -> torch.Tensor:
        return torch.sigmoid(self.rate)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        magnitude = self.scores.abs()
        keep = self.keep()
        width = (0.5 * keep.detach()).clamp_min(1.0 / self.scores.numel())
        soft = torch.sigmoid((self.rank - (1 - keep)) / width)
        return w * (self.mask.to(w.dtype) + magnitude - magnitude.detach() + soft - soft.detach())


def allocate(wanted: dict[str, float], sizes: dict[str, int], total_keep: int) -> dict[str, int]:
    """Kept counts proportional to ``wanted`` (per layer), summing to exactly ``total_keep``, each in [1, size]."""
    names = list(sizes)
    if not len(names) <= total_keep <= sum(sizes.values()):
        raise ValueError(f"cannot keep {total_keep} weights in {len(names)} layers of {sum(sizes.values())} weights "
                         "with at least one per layer")
    fixed: dict[str, int] = {}
    share: dict[str, float] = {}
    while True:  # scale the free layers to what is left; pin those that leave [1, size]; repeat until none does
        free = [n for n in names if n not in fixed]
        if not free:
            break
        left = total_keep - sum(fixed.values())
        weight = sum(max(wanted[n], 1e-12) for n in free)
        share = {n: left * max(wanted[n], 1e-12) / weight for n in free}
        over = {n: sizes[n] for n in free if share[n] > sizes[n]}
        under = {n: 1 for n in free if share[n] < 1}
        if not over and not under:
            break
        fixed |= over or under
    counts = {n: math.floor(share[n]) for n in free} | fixed
    rest = total_keep - sum(counts.values())
    for n in sorted(free, key=lambda n: share[n] - math.floor(share[n]), reverse=True)[:rest]:
        counts[n] += 1
    return counts


class LearnedRates:
    """The strategy ``hydra.learn_with`` runs: scores and a keep fraction per layer, the size term, the exact end."""

    lr_scale = RATE_LR_SCALE

    def __init__(self, inits: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], amount: float) -> None:
        self.sizes = {n: s.numel() for n, s in inits.items()}
        n = sum(self.sizes.values())
        self.target = n - round(amount * n)
        start = masks_from_ranks({k: w.abs() for k, w in weights.items()}, amount, "global")  # CP's global mask
        self.parts = {k: _RatedWeight(s, min(max(float(start[k].float().mean()), 1 / s.numel()), 1 - 1e-4))
                      for k, s in inits.items()}
        self.params = {n: p.scores for n, p in self.parts.items()} | {
            RATE_PREFIX + n: p.rate for n, p in self.parts.items()}
        self.no_decay = tuple(n for n in self.params if n.startswith(RATE_PREFIX))  # no pull of k towards 1/2

    def _top(self, counts: dict[str, int]) -> Masks:
        masks = {}
        for name, part in self.parts.items():
            flat = part.scores.detach().abs().flatten()
            order = flat.argsort(stable=True)
            rank = torch.empty_like(flat)
            rank[order] = torch.arange(flat.numel(), device=flat.device, dtype=flat.dtype) / flat.numel()
            part.rank = rank.view_as(part.scores)
            keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
            keep[order[flat.numel() - counts[name]:]] = True
            masks[name] = keep.view_as(part.scores)
        return masks

    def masks(self) -> Masks:
        return self._top({n: min(self.sizes[n], max(1, round(float(p.keep().detach()) * self.sizes[n])))
                          for n, p in self.parts.items()})

    def final(self) -> Masks:
        wanted = {n: float(p.keep().detach()) * self.sizes[n] for n, p in self.parts.items()}
        return self._top(allocate(wanted, self.sizes, self.target))

    def before_step(self) -> None:
        """Each rate moves by its gradient's sign (scale-free: a layer's rate gradient grows with its size)."""
        for part in self.parts.values():
            if part.rate.grad is not None:
                part.rate.grad.sign_()

    def loss(self, done: float) -> torch.Tensor:
        gamma = GAMMA[min(int(3 * done), 2)]
        size = sum(p.keep() * self.sizes[n] for n, p in self.parts.items())
        return gamma * torch.relu(size / self.target - 1 - SIZE_SLACK)

    def summary(self) -> dict:
        size = sum(float(p.keep().detach()) * self.sizes[n] for n, p in self.parts.items())
        return {"layer_keep": {n: round(float(p.keep().detach()), 6) for n, p in self.parts.items()},
                "size_vs_target": size / self.target}


@register_learned("hydra-rates", label="HYDRA + learned layer rates", default_scope="global", scopes=("global",),
                  default_lr=0.1, version=2)
def learn_rated_masks(model: nn.Module, data, config, amount: float, scope: str = "global", keep_ends: bool = False,
                      previous: Masks | None = None, out_dir: str | Path | None = None, resume: bool = False,
                      progress: Callable[[dict], None] | None = None) -> tuple[Masks, list[dict]]:
    """Scores and each layer's rate learned together under ``config``'s objective (see the module); returns the
    masks (exactly ``round(amount * n)`` pruned over all layers) and one metrics dict per epoch, with each layer's
    learned keep fraction."""
    amount = check_amount(amount)
    if scope != "global":
        raise ValueError("hydra-rates learns how much of each layer to keep under one global target; its scope is "
                         "global (use --method hydra for a fixed rate per layer)")
    if previous:
        raise ValueError("hydra-rates starts from a dense model (its first mask is global magnitude pruning's); give "
                         "an unpruned checkpoint, or use --method hydra to keep a pruned checkpoint's zeros")
    return learn_with(model, data, config, amount, keep_ends, None, out_dir, resume, progress,
                      lambda inits, weights: LearnedRates(inits, weights, amount), scope)
