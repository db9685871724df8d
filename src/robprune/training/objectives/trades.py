"""TRADES, Zhang et al. 2019, "Theoretically principled trade-off between robustness and accuracy" (ICML).

loss = CE(f(x), y) + beta * KL(f(x) || f(x')), with x' found by k sign-gradient
steps on the KL term from x + 0.001 * N(0, 1), projected on the eps-ball (pixel
units) and [0, 1]; beta = 6 in the paper's CIFAR-10 setting. With
``adv_norm="l2"`` the steps follow the L2-normalised gradient in the L2 ball.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Outcome, crafting_mode, pgd_steps, register_objective


def _kl(logits_adv: torch.Tensor, p_clean: torch.Tensor, reduction: str) -> torch.Tensor:
    return F.kl_div(F.log_softmax(logits_adv, dim=1), p_clean, reduction=reduction)


@register_objective("trades", default_step=0.25, norms=("linf", "l2"))
def trades(model, x, y, config, generator, autocast) -> Outcome:
    with crafting_mode(model, config.adv_bn):
        with torch.no_grad(), autocast():
            p_clean = F.softmax(model(x).float(), dim=1)
        start = (x + 0.001 * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)).clamp(0, 1)
        x_adv = pgd_steps(model, x, start, config, config.adv_steps, lambda logits: _kl(logits, p_clean, "sum"),
                          autocast)
    with autocast():
        logits = model(x)
        adv_logits = model(x_adv)
    loss = F.cross_entropy(logits.float(), y) + config.trades_beta * _kl(
        adv_logits.float(), F.softmax(logits.float(), dim=1), "batchmean")
    return Outcome(loss, logits, adv_logits)
