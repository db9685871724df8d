"""PGD adversarial training, Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks".

min_theta E max_{||d||_inf <= eps} CE(f(x + d), y): the inner maximum by k
sign-gradient steps of size alpha from a uniform random start in the eps-ball
(pixel units), the outer minimum by SGD on the CE at the attack's points.
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import Outcome, crafting_mode, cross_entropy, linf_pgd_steps, register_objective, uniform_noise


@register_objective("pgd", default_step=0.25)
def pgd(model, x, y, config, generator, autocast) -> Outcome:
    eps = config.adv_eps
    with crafting_mode(model, config.adv_bn):
        start = (x + uniform_noise(x, eps, generator)).clamp(0.0, 1.0)
        x_adv = linf_pgd_steps(model, x, start, eps, config.step_size(), config.adv_steps, cross_entropy(y),
                               autocast)
    with autocast():
        adv_logits = model(x_adv)
    return Outcome(F.cross_entropy(adv_logits.float(), y), None, adv_logits)
