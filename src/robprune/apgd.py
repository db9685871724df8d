"""APGD: Auto-PGD of Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks" (ICML), Algorithm 1, L-inf.

Inputs in [0, 1], eps in pixel units. Per image, the step size starts at
2 * eps and is halved at checkpoints w_j when the loss rose in fewer than
rho = 75% of the steps since the last checkpoint, or when neither the step
size nor the best loss changed; the iterate then restarts from the best
point. Steps use momentum alpha = 0.75 (Eq. 2 of the paper).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .attacks import check_eps, check_loss, check_steps, frozen, loss_and_gradient


def apgd_checkpoints(steps: int) -> list[int]:
    """w_j = ceil(p_j * steps), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(round(q * steps, 6)) for q in p[1:] if q <= 1.0})  # round: float noise


def apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 100,
    loss: str = "ce",
    seed: int = 0,
    rho: float = 0.75,
    alpha: float = 0.75,
) -> torch.Tensor:
    """L-inf APGD on ``loss`` (ce or dlr); returns a misclassified point where one was found, else the best."""
    check_eps(eps)
    check_loss(loss)
    check_steps(steps)
    lower, upper = (x - eps).clamp_min(0.0), (x + eps).clamp_max(1.0)

    view = (-1,) + (1,) * (x.dim() - 1)
    g = torch.Generator(device=x.device).manual_seed(seed)
    with frozen(model):
        x_cur = (x + eps * torch.empty_like(x).uniform_(-1.0, 1.0, generator=g)).clamp(lower, upper)
        loss_cur, grad, logits = loss_and_gradient(model, x_cur, y, loss)
        x_out = x_cur.clone()  # first misclassified point found, else the best-loss point
        fooled = logits.argmax(1) != y
        x_best, loss_best, grad_best = x_cur.clone(), loss_cur.clone(), grad.clone()
        eta = torch.full((len(x),), 2.0 * eps, device=x.device, dtype=x.dtype)
        x_prev = x_cur.clone()
        checkpoints = set(apgd_checkpoints(steps))
        last_ckpt, increases = 0, torch.zeros(len(x), device=x.device)
        eta_at_ckpt, best_at_ckpt = eta.clone(), loss_best.clone()
        for k in range(steps):
            # Only images not yet misclassified are attacked further: their result is fixed (x_out), and in an
            # eval-mode model each image's trajectory does not depend on the others, so this changes nothing
            # but the cost (at large eps most images fall in the first steps).
            a = (~fooled).nonzero().squeeze(1)
            if len(a) == 0:
                break
            xa, lo, hi = x_cur[a], lower[a], upper[a]
            z = (xa + eta[a].view(view) * grad[a].sign()).clamp(lo, hi)
            if k > 0:
                z = (xa + alpha * (z - xa) + (1 - alpha) * (xa - x_prev[a])).clamp(lo, hi)
            loss_next, grad_next, logits = loss_and_gradient(model, z, y[a], loss)
            newly = logits.argmax(1) != y[a]
            x_out[a[newly]] = z[newly]
            fooled[a[newly]] = True
            increases[a] += (loss_next > loss_cur[a]).float()
            better = loss_next > loss_best[a]
            b = a[better]
            x_best[b], loss_best[b], grad_best[b] = z[better], loss_next[better], grad_next[better]
            x_prev[a], x_cur[a], loss_cur[a], grad[a] = xa, z, loss_next, grad_next
            if k + 1 in checkpoints:
                stalled = increases < rho * (k + 1 - last_ckpt)
                unchanged = (eta == eta_at_ckpt) & (loss_best == best_at_ckpt)
                halve = stalled | unchanged
                eta[halve] /= 2.0
                x_cur[halve], grad[halve], loss_cur[halve] = x_best[halve], grad_best[halve], loss_best[halve]
                x_prev[halve] = x_best[halve]
                last_ckpt, increases = k + 1, torch.zeros_like(increases)
                eta_at_ckpt, best_at_ckpt = eta.clone(), loss_best.clone()
        x_out[~fooled] = x_best[~fooled]
    return x_out.detach()
