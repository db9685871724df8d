"""L2 PGD: Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks" (ICLR).

Inputs in [0, 1]; eps is an L2 radius in pixel units (one number).
"""

from __future__ import annotations

import torch
from torch import nn

from .common import check_eps, check_loss, check_steps, frozen, input_gradient, prepare_inputs
from .registry import register_attack


@register_attack("pgd-l2", label="pgd-l2 ({steps} steps, loss {loss})", budget="steps", default_budget=10,
                 options=("step_size", "random_start", "loss"), per_channel_eps=False, norm="l2")
def pgd_l2(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    seed: int = 0,
    loss: str = "ce",
) -> torch.Tensor:
    """L2 PGD (Madry et al. 2018): steps along the L2-normalised gradient, projected onto ||x_adv - x||_2 <= eps
    and [0, 1]."""
    check_eps(eps, limit=float("inf"))
    check_loss(loss)
    check_steps(steps)
    x, y = prepare_inputs(x, y)
    alpha = 2.5 * eps / steps if step_size is None else step_size

    def project(x_adv: torch.Tensor) -> torch.Tensor:
        delta = x_adv - x
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        delta = delta * torch.clamp(eps / norms, max=1.0)
        return (x + delta).clamp(0.0, 1.0)

    x_adv = x.detach().clone()
    if random_start and eps > 0:
        g = torch.Generator(device=x.device).manual_seed(seed)
        noise = torch.empty_like(x).normal_(generator=g)
        noise = noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        radius = torch.rand(len(x), 1, 1, 1, generator=g, device=x.device) * eps
        x_adv = project(x_adv + noise * radius)
    with frozen(model):
        for _ in range(steps):
            grad = input_gradient(model, x_adv, y, loss)
            g_norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            x_adv = project(x_adv + alpha * grad / g_norm)
    return x_adv.detach()
