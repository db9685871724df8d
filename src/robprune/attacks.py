"""White-box L-inf attacks in [0, 1] input space.

Inputs ``x`` are images in [0, 1]; models normalise them themselves, so
``eps`` is in pixel units (``8/255``). ``eps`` may also be a per-channel
sequence, which is how an eps quoted on the *normalised* input translates to
pixel units (``eps * std``). Attacks run the model in eval mode, take
gradients only with respect to the input, and leave the model as they found it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

Eps = float | Sequence[float]


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients for the duration; both restored afterwards.

    Turning off ``requires_grad`` also skips the weight-gradient kernels, so
    each attack step costs one forward and one backward to the input only.
    """
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def check_eps(eps: Eps) -> Eps:
    """Validate an attack radius: a finite number >= 0, or a sequence of them (per channel)."""
    values = [eps] if not isinstance(eps, (list, tuple)) else list(eps)
    for e in values:
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or e < 0:
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return eps


def _eps_tensor(eps: Eps, x: torch.Tensor) -> torch.Tensor:
    if isinstance(eps, (list, tuple)):
        if len(eps) != x.shape[1]:
            raise ValueError(f"per-channel eps has {len(eps)} values, input has {x.shape[1]} channels")
        return torch.tensor(eps, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return torch.tensor(float(eps), dtype=x.dtype, device=x.device)


def _input_gradient(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x_adv = x_adv.detach().requires_grad_(True)
    # Summed, not averaged, loss: each image's gradient is independent of the batch size.
    loss = F.cross_entropy(model(x_adv), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x_adv)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Eps) -> torch.Tensor:
    """Fast Gradient Sign Method (Goodfellow et al. 2015): x + eps * sign(grad_x CE), clipped to [0, 1]."""
    check_eps(eps)
    with frozen(model):
        grad = _input_gradient(model, x, y)
        return (x + _eps_tensor(eps, x) * grad.sign()).clamp(0.0, 1.0).detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Eps,
    steps: int,
    step_size: Eps | None = None,
    random_start: bool = True,
    seed: int = 0,
) -> torch.Tensor:
    """L-inf projected gradient descent on the cross-entropy (Madry et al. 2018).

    Starting from x (or a uniform point in the eps-ball when ``random_start``),
    repeat ``steps`` times: x_adv <- Proj_{B(x, eps) & [0,1]}(x_adv + step_size * sign(grad)).
    ``step_size`` defaults to 2.5 * eps / steps. ``seed`` fixes the random start.
    """
    check_eps(eps)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    eps_t = _eps_tensor(eps, x)
    alpha = 2.5 * eps_t / steps if step_size is None else _eps_tensor(check_eps(step_size), x)
    lower, upper = (x - eps_t).clamp_min(0.0), (x + eps_t).clamp_max(1.0)
    x_adv = x.detach().clone()
    if random_start:
        generator = torch.Generator(device=x.device).manual_seed(seed)
        noise = torch.empty_like(x).uniform_(-1.0, 1.0, generator=generator)
        x_adv = torch.minimum(torch.maximum(x_adv + noise * eps_t, lower), upper)
    with frozen(model):
        for _ in range(steps):
            grad = _input_gradient(model, x_adv, y)
            x_adv = torch.minimum(torch.maximum(x_adv + alpha * grad.sign(), lower), upper)
    return x_adv.detach()
