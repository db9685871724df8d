"""Square attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box adversarial
attack via random search", ECCV), L-inf, score-based: it uses only the model's outputs, never gradients,
so a model that hides its gradients (gradient masking) cannot stop it.

Inputs in [0, 1], eps in pixel units. Start from vertical stripes of +-eps;
each query redraws the perturbation inside one random square (side from the
schedule p) to +-eps per channel and keeps it when the margin loss
z_y - max_{j != y} z_j decreases. An image is done once it is misclassified.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import Eps, check_eps, check_positive_int, cw_loss, eps_tensor, frozen, prepare_inputs
from .registry import register_attack

# Iterations (out of 10,000) at which the square's area fraction p is halved (the paper's schedule).
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(p_init: float, it: int, queries: int) -> float:
    """p at query ``it``: p_init halved at each of HALVINGS, rescaled to ``queries``."""
    t = int(it / queries * 10000)
    return p_init / 2 ** sum(t > h for h in HALVINGS)


@register_attack("square", label="Square ({queries} queries, margin loss)", budget="queries",
                 default_budget=5000, options=("p_init",), gradient_free=True)
@torch.no_grad()
def square_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Eps,
    queries: int = 5000,
    p_init: float = 0.8,
    seed: int = 0,
) -> torch.Tensor:
    """L-inf Square attack with at most ``queries`` model evaluations per image."""
    check_eps(eps)
    check_positive_int(queries, "queries")
    x, y = prepare_inputs(x, y)
    eps = eps_tensor(eps, x)  # a scalar, or (1, C, 1, 1) per channel
    n, c, h, w = x.shape
    g = torch.Generator(device=x.device).manual_seed(seed)

    def signs(*shape: int) -> torch.Tensor:
        return torch.randint(0, 2, shape, generator=g, device=x.device).to(x.dtype) * 2 - 1

    with frozen(model):
        x_best = (x + eps * signs(n, c, 1, w)).clamp(0.0, 1.0)
        margin = -cw_loss(model(x_best), y)  # > 0 while correctly classified
        rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
        for it in range(1, queries):
            active = (margin > 0).nonzero().squeeze(1)
            if len(active) == 0:
                break
            side = max(1, min(h - 1, int(round(math.sqrt(square_fraction(p_init, it, queries) * h * w)))))
            m = len(active)
            top = torch.randint(0, h - side + 1, (m, 1, 1, 1), generator=g, device=x.device)
            left = torch.randint(0, w - side + 1, (m, 1, 1, 1), generator=g, device=x.device)
            window = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
            xa = x[active]
            delta = x_best[active] - xa
            delta = torch.where(window, eps * signs(m, c, 1, 1), delta)
            x_new = (xa + delta).clamp(0.0, 1.0)
            new_margin = -cw_loss(model(x_new), y[active])
            better = new_margin < margin[active]
            x_best[active[better]] = x_new[better]
            margin[active[better]] = new_margin[better]
    return x_best
