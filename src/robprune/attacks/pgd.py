"""PGD: Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks" (ICLR), L-inf.

Inputs in [0, 1], eps in pixel units (or per channel, e.g. ``eps * std`` for
an eps quoted on the normalised input).
"""

from __future__ import annotations

import torch
from torch import nn

from .common import (Eps, check_eps, check_loss, check_positive_int, check_steps, eps_tensor, frozen,
                     gradient_model, input_gradient, prepare_inputs, with_restarts)
from .registry import register_attack


@register_attack("pgd", label="pgd ({steps} steps, loss {loss}, {restarts} restart(s))", budget="steps",
                 default_budget=10, options=("step_size", "random_start", "loss", "restarts", "generator"))
def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Eps,
    steps: int = 10,
    step_size: Eps | None = None,
    random_start: bool = True,
    seed: int = 0,
    loss: str = "ce",
    restarts: int = 1,
    generator: torch.Generator | None = None,
    exact_model: bool = False,
) -> torch.Tensor:
    """L-inf projected gradient descent on ``loss`` (ce, cw or dlr).

    Gradients come from the model's cached BatchNorm-folded, frozen, channels_last copy (the same function in
    eval mode, to float tolerance, and faster); ``exact_model=True`` differentiates through ``model`` itself.

    Starting from x (or a uniform point in the eps-ball when ``random_start``),
    repeat ``steps`` times: x_adv <- Proj_{B(x, eps) & [0,1]}(x_adv + step_size * sign(grad)).
    ``step_size`` defaults to 2.5 * eps / steps. The random start is drawn from
    ``generator`` when given (a training loop passes its own, so every step
    draws fresh noise), else from a new generator seeded with ``seed``.
    With ``restarts`` > 1 the attack is rerun from new random starts on the
    images it has not yet misclassified, keeping the first success of each.
    """
    check_eps(eps)
    check_loss(loss)
    check_steps(steps)
    check_positive_int(restarts, "restarts")
    x, y = prepare_inputs(x, y)
    if restarts > 1:
        return with_restarts(lambda xs, ys, r: pgd(model, xs, ys, eps, steps, step_size, True, seed + 1000 * r,
                                                   loss, exact_model=exact_model), model, x, y, restarts)
    eps_t = eps_tensor(eps, x)
    alpha = 2.5 * eps_t / steps if step_size is None else eps_tensor(check_eps(step_size), x)
    lower, upper = (x - eps_t).clamp_min(0.0), (x + eps_t).clamp_max(1.0)
    x_adv = x.detach().clone()
    if random_start:
        g = generator if generator is not None else torch.Generator(device=x.device).manual_seed(seed)
        noise = torch.empty_like(x).uniform_(-1.0, 1.0, generator=g)
        x_adv = torch.minimum(torch.maximum(x_adv + noise * eps_t, lower), upper)
    with frozen(model):
        through = gradient_model(model, exact_model)
        nchw = through is not model and x.is_contiguous()
        if nchw:  # the folded copy is channels_last: the loop's tensors too, so no step converts them
            x_adv, lower, upper = (t.contiguous(memory_format=torch.channels_last) for t in (x_adv, lower, upper))
        for _ in range(steps):
            grad = input_gradient(through, x_adv, y, loss)
            x_adv = torch.minimum(torch.maximum(x_adv + alpha * grad.sign(), lower), upper)
    return x_adv.detach().contiguous() if nchw else x_adv.detach()
