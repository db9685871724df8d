"""FGSM training with a random start, Wong, Rice & Kolter 2020, "Fast is better than free" (ICLR).

d ~ U(-eps, eps); d <- clip_eps(d + alpha * sign(grad_d CE(f(x + d), y))) with
alpha = 1.25 * eps; train on CE(f(x + d), y). Cheap (one attack step) but prone
to catastrophic overfitting, which the training loop's PGD guard detects.
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import Outcome, crafting_mode, cross_entropy, linf_pgd_steps, register_objective, uniform_noise


@register_objective("fgsm", default_step=1.25)
def fgsm(model, x, y, config, generator, autocast) -> Outcome:
    eps = config.adv_eps
    with crafting_mode(model, config.adv_bn):
        start = (x + uniform_noise(x, eps, generator)).clamp(0.0, 1.0)
        x_adv = linf_pgd_steps(model, x, start, eps, config.step_size(), 1, cross_entropy(y), autocast)
    with autocast():
        adv_logits = model(x_adv)
    return Outcome(F.cross_entropy(adv_logits.float(), y), None, adv_logits)
