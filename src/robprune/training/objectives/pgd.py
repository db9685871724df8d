"""PGD adversarial training, Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks".

min_theta E max_{||d||_inf <= eps} CE(f(x + d), y): the inner maximum by k
sign-gradient steps of size alpha from a uniform random start in the eps-ball
(pixel units), the outer minimum by SGD on the CE at the attack's points. With
``adv_norm="l2"`` the ball is ||d||_2 <= eps and the steps follow the
L2-normalised gradient (alpha = 2.5 * eps / k by default).
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import Outcome, crafting_mode, cross_entropy, pgd_steps, random_start, register_objective


@register_objective("pgd", default_step=0.25, norms=("linf", "l2"))
def pgd(model, x, y, config, generator, autocast) -> Outcome:
    with crafting_mode(model, config.adv_bn):
        start = random_start(x, config, generator)
        x_adv = pgd_steps(model, x, start, config, config.adv_steps, cross_entropy(y), autocast)
    with autocast():
        adv_logits = model(x_adv)
    return Outcome(F.cross_entropy(adv_logits.float(), y), None, adv_logits)
