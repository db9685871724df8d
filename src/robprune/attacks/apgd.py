"""APGD: Auto-PGD of Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks" (ICML), Algorithm 1, L-inf; untargeted (CE, DLR) and targeted (APGD-T).

Inputs in [0, 1], eps in pixel units (or per channel). Per image, the step
size starts at 2 * eps and is halved at checkpoints w_j when the loss rose in
fewer than rho = 75% of the steps since the last checkpoint, or when neither
the step size nor the best loss changed; the iterate then restarts from the
best point. Steps use momentum alpha = 0.75 (Eq. 2 of the paper).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import (Eps, any_in_group, check_eps, check_loss, check_positive_int, check_steps, eps_tensor,
                     frozen, loss_and_gradient, misclassified, prepare_inputs)
from .registry import register_attack


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
    eps: Eps,
    steps: int = 100,
    loss: str = "ce",
    seed: int = 0,
    rho: float = 0.75,
    alpha: float = 0.75,
    target: torch.Tensor | None = None,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """L-inf APGD on ``loss`` (ce or dlr), or on the targeted DLR loss towards ``target`` when given.

    Returns a misclassified point where one was found, else the best-loss point. ``groups`` (one id per row)
    marks rows that are copies of one image (one per target class): once one copy is misclassified the image is
    broken, and its other copies stop too.
    """
    check_eps(eps)
    check_loss(loss)
    check_steps(steps)
    x, y = prepare_inputs(x, y)
    eps_t = eps_tensor(eps, x)
    lower, upper = (x - eps_t).clamp_min(0.0), (x + eps_t).clamp_max(1.0)

    view = (-1,) + (1,) * (x.dim() - 1)
    g = torch.Generator(device=x.device).manual_seed(seed)
    with frozen(model):
        x_cur = (x + eps_t * torch.empty_like(x).uniform_(-1.0, 1.0, generator=g)).clamp(lower, upper)
        loss_cur, grad, logits = loss_and_gradient(model, x_cur, y, loss, target)
        x_out = x_cur.clone()  # first misclassified point found, else the best-loss point
        fooled = logits.argmax(1) != y
        gid = torch.unique(groups, return_inverse=True)[1] if groups is not None else None
        x_best, loss_best, grad_best = x_cur.clone(), loss_cur.clone(), grad.clone()
        eta = torch.full((len(x),), 2.0, device=x.device, dtype=x.dtype)  # step size in units of eps
        x_prev = x_cur.clone()
        checkpoints = set(apgd_checkpoints(steps))
        last_ckpt, increases = 0, torch.zeros(len(x), device=x.device)
        eta_at_ckpt, best_at_ckpt = eta.clone(), loss_best.clone()
        for k in range(steps):
            # Only images not yet misclassified are attacked further: their result is fixed (x_out), and in an
            # eval-mode model each image's trajectory does not depend on the others, so this changes nothing
            # but the cost (at large eps most images fall in the first steps). Copies of a broken image stop too.
            a = (~(fooled if gid is None else any_in_group(gid, fooled))).nonzero().squeeze(1)
            if len(a) == 0:
                break
            xa, lo, hi = x_cur[a], lower[a], upper[a]
            z = (xa + eta[a].view(view) * eps_t * grad[a].sign()).clamp(lo, hi)
            if k > 0:
                z = (xa + alpha * (z - xa) + (1 - alpha) * (xa - x_prev[a])).clamp(lo, hi)
            loss_next, grad_next, logits = loss_and_gradient(model, z, y[a], loss,
                                                             None if target is None else target[a])
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


@register_attack("apgd-ce", label="APGD-CE ({steps} steps)", default_budget=100)
def apgd_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Eps, steps: int = 100, *,
            seed: int = 0) -> torch.Tensor:
    """APGD on the cross-entropy loss (AutoAttack's first attack)."""
    return apgd(model, x, y, eps, steps, loss="ce", seed=seed)


@register_attack("apgd-dlr", label="APGD-DLR ({steps} steps)", default_budget=100)
def apgd_dlr(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Eps, steps: int = 100, *,
             seed: int = 0) -> torch.Tensor:
    """APGD on the scale-invariant DLR loss (Croce & Hein 2020, Eq. 6)."""
    return apgd(model, x, y, eps, steps, loss="dlr", seed=seed)


def target_classes(logits: torch.Tensor, y: torch.Tensor, targets: int) -> torch.Tensor:
    """(N, targets): the other classes in order of decreasing clean logit (AutoAttack's target order)."""
    num_classes = logits.shape[1]
    if isinstance(targets, bool) or not isinstance(targets, int) or not 1 <= targets <= num_classes - 1:
        raise ValueError(f"targets must be an integer in 1..{num_classes - 1} (classes - 1), got {targets!r}")
    ranked = logits.masked_fill(torch.nn.functional.one_hot(y, num_classes).bool(), -torch.inf)
    return ranked.argsort(dim=1, descending=True)[:, :targets]


@register_attack("apgd-t", label="APGD-T ({steps} steps, {targets} targets)", default_budget=100,
                 options=("targets",))
def apgd_t(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Eps, steps: int = 100, *, seed: int = 0,
           targets: int = 9) -> torch.Tensor:
    """APGD-T: APGD on the targeted DLR loss (Eq. 7), once per target class; a point is broken when any target
    breaks it (the targets run as one batch, see ``over_targets``).

    Targets are the ``targets`` highest-scoring other classes on the clean
    input; with 10 classes, 9 targets is AutoAttack's standard version. Needs
    at least 4 classes (the loss's denominator).
    """
    x, y = prepare_inputs(x, y)
    check_positive_int(steps, "steps")
    with torch.no_grad(), frozen(model):
        logits = model(x).float()
    if logits.shape[1] < 4:
        raise ValueError(f"APGD-T's targeted DLR loss needs at least 4 classes, the model has {logits.shape[1]}")

    def attack(idx: torch.Tensor, target: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        return apgd(model, x[idx], y[idx], eps, steps, seed=seed, target=target, groups=groups)

    return over_targets(model, x, y, logits, targets, attack)


MAX_TARGET_ROWS = 2048  # rows (image x target copies) attacked in one batch by over_targets


def over_targets(model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, targets: int,
                 attack) -> torch.Tensor:
    """AutoAttack's targeted attack over the ``targets`` highest-scoring other classes, all targets in one batch.

    Every still-robust image is copied once per target and ``attack(idx, target, groups)`` runs on all copies
    together (``groups``: the image of each copy); the attack stops an image's copies once one of them breaks it.
    An image is broken when any target breaks it, as in AutoAttack's loop over targets (which runs target k only on
    the images targets 1..k-1 left robust): each copy's trajectory depends only on its own image and target, so the
    set of images broken is the same, and the work on a robust image, 9 x 100 steps, is the same, in batches nine
    times as large. Returned: the first target's success in target order, else the last target's attempt.
    """
    order = target_classes(logits, y, targets)
    x_adv = x.clone()
    robust = (logits.argmax(1) == y).nonzero().squeeze(1)
    t = order.shape[1]
    for chunk in robust.split(max(1, MAX_TARGET_ROWS // t)):
        p = len(chunk)
        idx = chunk.repeat(t)  # row k * p + i: image chunk[i], target order[chunk[i], k]
        x_k = attack(idx, order[chunk].t().reshape(-1), idx)
        fooled = misclassified(model, x_k, y[idx]).view(t, p)
        k = torch.where(fooled.any(0), fooled.float().argmax(0), torch.full((p,), t - 1, device=x.device))
        x_adv[chunk] = x_k[k * p + torch.arange(p, device=x.device)]
    return x_adv
