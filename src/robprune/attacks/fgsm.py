"""FGSM: Goodfellow et al. 2015, "Explaining and harnessing adversarial examples" (ICLR), L-inf.

One step of size eps along the sign of the input gradient of the CE loss,
clipped to [0, 1]. Inputs in [0, 1], eps in pixel units (or per channel).
"""

from __future__ import annotations

import torch
from torch import nn

from .common import Eps, check_eps, eps_tensor, frozen, input_gradient, prepare_inputs
from .registry import register_attack


@register_attack("fgsm", label="FGSM (one step of eps, loss ce)", budget="steps", default_budget=1)
def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Eps, steps: int = 1, *,
         seed: int = 0) -> torch.Tensor:
    """x + eps * sign(grad_x CE), clipped to [0, 1]. ``steps`` and ``seed`` are accepted for the common signature."""
    check_eps(eps)
    x, y = prepare_inputs(x, y)
    with frozen(model):
        grad = input_gradient(model, x, y)
        return (x + eps_tensor(eps, x) * grad.sign()).clamp(0.0, 1.0).detach()
