"""What every attack shares: eval-mode freezing, eps and step checks, the attack losses, input gradients.

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


def gradient_model(model: nn.Module, exact_model: bool = False) -> nn.Module:
    """What an attack differentiates through: ``model`` itself, or (default) its cached BatchNorm-folded, frozen,
    channels_last copy, the same function in eval mode to float tolerance (``models/folding.py``)."""
    if exact_model or getattr(model, "robprune_attack_copy", False):
        return model
    from ..models.folding import cached_attack_model

    return cached_attack_model(model)


def check_eps(eps: Eps, limit: float = 1.0) -> Eps:
    """Validate an attack radius: a finite number in [0, limit], or a sequence of them (per channel).

    The default limit 1 is the whole pixel range of an L-inf radius; an eps
    above it is a unit mistake (8 meant as 8/255).
    """
    values = [eps] if not isinstance(eps, (list, tuple)) else list(eps)
    for e in values:
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or e < 0:
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        if e > limit:
            raise ValueError(f"eps {e!r} is larger than the whole [0, 1] pixel range; eps is in pixel units "
                             "(8/255 = 0.0314)")
    return eps


def eps_tensor(eps: Eps, x: torch.Tensor) -> torch.Tensor:
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


def dlr_targeted_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR (Croce & Hein 2020, Eq. 7): -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2); needs >= 4 classes."""
    top = logits.sort(dim=1, descending=True).values
    gap = logits.gather(1, y[:, None]).squeeze(1) - logits.gather(1, target[:, None]).squeeze(1)
    return -gap / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


LOSSES = {"ce": ce_loss, "cw": cw_loss, "dlr": dlr_loss}


def check_steps(steps: int) -> int:
    """Validate an iteration count: an integer >= 1."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return steps


def check_loss(loss: str) -> str:
    """Validate an attack loss name (ce, cw or dlr)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown attack loss {loss!r}; choose one of {', '.join(LOSSES)}")
    return loss


def loss_and_gradient(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, loss: str = "ce",
                      target: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-image loss, its gradient w.r.t. the input, logits) at ``x_adv``; ``target`` selects targeted DLR."""
    x_adv = x_adv.detach().requires_grad_(True)
    logits = model(x_adv).float()
    per_image = dlr_targeted_loss(logits, y, target) if target is not None else LOSSES[loss](logits, y)
    # Summed, not averaged: each image's gradient is independent of the batch size.
    (grad,) = torch.autograd.grad(per_image.sum(), x_adv)
    return per_image.detach(), grad, logits.detach()


def input_gradient(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """Gradient of the summed per-image ``loss`` with respect to the input."""
    return loss_and_gradient(model, x_adv, y, loss)[1]


def any_in_group(gid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row, whether some row of its group (``gid``: group index 0..G-1 per row) is set in ``mask``."""
    table = torch.zeros(int(gid.max()) + 1 if len(gid) else 0, dtype=torch.bool, device=gid.device)
    table[gid[mask]] = True
    return table[gid]


@torch.no_grad()
def misclassified(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with frozen(model):  # no graph (the decorator): the same kernels as any no_grad check of the result
        logits = model(x)
        return (logits.argmax(1) != y) | ~torch.isfinite(logits).all(1)  # a NaN output is no correct answer


def with_restarts(attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, restarts: int) -> torch.Tensor:
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


def prepare_inputs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float images in [0, 1] (uint8 0..255 are scaled) and int64 labels on x's device; shapes checked."""
    from ..data.batches import as_float_images

    if x.dim() != 4:
        raise ValueError(f"images must be a (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    if y.dim() != 1 or len(y) != len(x):
        raise ValueError(f"labels must be a vector of {len(x)} class indices, got shape {tuple(y.shape)}")
    return as_float_images(x), y.to(x.device).long()


def check_positive_int(value, name: str) -> int:
    """An integer >= 1 (queries, restarts, targets), or ValueError naming the value."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value
