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


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image cross-entropy (to be maximised)."""
    return F.cross_entropy(logits, y, reduction="none")


def _other_max(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -torch.inf).amax(1)


def cw_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin max_{j != y} z_j - z_y (Carlini & Wagner 2017); > 0 means misclassified."""
    return _other_max(logits, y) - logits.gather(1, y[:, None]).squeeze(1)


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020, Eq. 6): -(z_y - max_{j!=y} z_j) / (z_pi1 - z_pi3).

    Invariant to shifting and rescaling the logits, so it cannot be defeated
    by a model that merely scales its logits up (a cause of masking for CE).
    """
    top = logits.sort(dim=1, descending=True).values
    return cw_loss(logits, y) / (top[:, 0] - top[:, 2] + 1e-12)


LOSSES = {"ce": ce_loss, "cw": cw_loss, "dlr": dlr_loss}


def check_steps(steps: int) -> int:
    """Validate an iteration count: an integer >= 1."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return steps


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"unknown attack loss {loss!r}; choose one of {', '.join(LOSSES)}")
    return loss


def loss_and_gradient(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor,
                      loss: str = "ce") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-image loss, its gradient w.r.t. the input, logits) at ``x_adv``."""
    x_adv = x_adv.detach().requires_grad_(True)
    logits = model(x_adv)
    per_image = LOSSES[loss](logits, y)
    # Summed, not averaged: each image's gradient is independent of the batch size.
    (grad,) = torch.autograd.grad(per_image.sum(), x_adv)
    return per_image.detach(), grad, logits.detach()


def _input_gradient(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    return loss_and_gradient(model, x_adv, y, loss)[1]


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
    loss: str = "ce",
    restarts: int = 1,
) -> torch.Tensor:
    """L-inf projected gradient descent (Madry et al. 2018) on ``loss`` (ce, cw or dlr).

    Starting from x (or a uniform point in the eps-ball when ``random_start``),
    repeat ``steps`` times: x_adv <- Proj_{B(x, eps) & [0,1]}(x_adv + step_size * sign(grad)).
    ``step_size`` defaults to 2.5 * eps / steps. ``seed`` fixes the random start.
    With ``restarts`` > 1 the attack is rerun from new random starts on the
    images it has not yet misclassified, keeping the first success of each.
    """
    check_eps(eps)
    check_loss(loss)
    check_steps(steps)
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")
    if restarts > 1:
        return _with_restarts(lambda xs, ys, r: pgd(model, xs, ys, eps, steps, step_size, True, seed + 1000 * r,
                                                    loss), model, x, y, restarts)
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
            grad = _input_gradient(model, x_adv, y, loss)
            x_adv = torch.minimum(torch.maximum(x_adv + alpha * grad.sign(), lower), upper)
    return x_adv.detach()


@torch.no_grad()
def misclassified(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with frozen(model):
        return model(x).argmax(1) != y


def _with_restarts(attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, restarts: int) -> torch.Tensor:
    """Run ``attack(x, y, r)`` for r = 0..restarts-1 on the images still correctly classified."""
    x_best = x.detach().clone()
    robust = ~misclassified(model, x, y)
    for r in range(restarts):
        if not robust.any():
            break
        # The first run sees the whole batch, so it draws the same random start as a single run would.
        idx = torch.arange(len(x), device=x.device) if r == 0 else robust.nonzero().squeeze(1)
        x_adv = attack(x[idx], y[idx], r)
        fooled = misclassified(model, x_adv, y[idx])
        x_best[idx[fooled]] = x_adv[fooled]
        if r == restarts - 1:
            still = idx[~fooled]
            x_best[still] = x_adv[~fooled]
        robust[idx[fooled]] = False
    return x_best


def pgd_l2(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float | None = None,
    random_start: bool = True,
    seed: int = 0,
    loss: str = "ce",
) -> torch.Tensor:
    """L2 PGD (Madry et al. 2018): steps along the L2-normalised gradient, projected onto ||x_adv - x||_2 <= eps and [0, 1]."""
    check_eps(eps)
    check_loss(loss)
    check_steps(steps)
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
            grad = _input_gradient(model, x_adv, y, loss)
            g_norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            x_adv = project(x_adv + alpha * grad / g_norm)
    return x_adv.detach()
