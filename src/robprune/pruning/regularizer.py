"""The paper's high-magnitude regulariser (Eq. 4).

    R(W) = sum over prunable layers l of || ReLU(|W_l| - tau) ||_p

Only the part of each weight's magnitude above ``tau`` is penalised, so small
weights are left alone and large ones are pulled down towards ``tau``. The
training loss is ``CE + lam * R(W)``.

``tau`` is either an absolute magnitude or a quantile of the current ``|W|``
written ``"q0.9"``. The default, ``"q0.9"``, penalises exactly the weights
that reverse pruning at 10% (the paper's RP setting) would remove: the paper
sets tau from the weight range that RP leaves. Training resolves a quantile
once, on the weights it starts from (before any pruning), and keeps it fixed,
so the target does not drift as the weights shrink.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .masks import prunable_parameters

DEFAULT_TAU = "q0.9"


def parse_tau(tau: float | str) -> float | str:
    """Validate ``tau``: a non-negative number, or ``"qF"`` with F in [0, 1]."""
    if isinstance(tau, str):
        text = tau.strip()
        if text.startswith("q"):
            try:
                q = float(text[1:])
            except ValueError:
                raise ValueError(f"tau quantile must look like 'q0.9', got {tau!r}") from None
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"tau quantile must be in [0, 1], got {tau!r}")
            return f"q{q}"
        try:
            tau = float(text)
        except ValueError:
            raise ValueError(f"tau must be a number or a quantile like 'q0.9', got {tau!r}") from None
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not np.isfinite(tau) or tau < 0:
        raise ValueError(f"tau must be a finite number >= 0, got {tau!r}")
    return float(tau)


def resolve_tau(model: nn.Module, tau: float | str, keep_ends: bool = False) -> float:
    """Turn ``tau`` into an absolute magnitude (a quantile is taken over all prunable |W|)."""
    tau = parse_tau(tau)
    if isinstance(tau, float):
        return tau
    weights = prunable_parameters(model, keep_ends).values()
    magnitudes = torch.cat([w.detach().abs().flatten().float().cpu() for w in weights]).numpy()
    return float(np.quantile(magnitudes, float(tau[1:])))


def high_magnitude_penalty(
    model: nn.Module, tau: float | str, p: int = 1, keep_ends: bool = False
) -> torch.Tensor:
    """R(W) of Eq. 4 (without ``lam``): sum over layers of ||ReLU(|W_l| - tau)||_p, p in {1, 2}."""
    return weights_penalty(prunable_parameters(model, keep_ends).values(), resolve_tau(model, tau, keep_ends), p)


def weights_penalty(weights, tau: float, p: int = 1) -> torch.Tensor:
    """R(W) of Eq. 4 over the given weight tensors, ``tau`` an absolute magnitude."""
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    terms = []
    for w in weights:
        excess = torch.relu(w.abs() - tau)
        if p == 1:
            terms.append(excess.sum())
        else:
            # sqrt of a sum of squares has no gradient at 0; the excess is zero there anyway.
            sq = excess.square().sum()
            terms.append(torch.where(sq > 0, sq.clamp_min(1e-30).sqrt(), sq))
    return torch.stack(terms).sum()


@torch.no_grad()
def proximal_shrink(model: nn.Module, tau: float, step: float, keep_ends: bool = False) -> None:
    """The proximal step of the p = 1 penalty: every |w| above ``tau`` moves ``step`` towards ``tau``, never past it.

    With ``step = lr * lam`` after each optimiser step this is the proximal-gradient form of Eq. 4: the
    penalty's pull is applied exactly, not through the momentum buffer, so a weight reaches ``tau`` in
    ``(|w| - tau) / (lr * lam)`` steps whatever the loss gradient's scale.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step!r}")
    for w in prunable_parameters(model, keep_ends).values():
        magnitude = w.abs()
        w.copy_(torch.where(magnitude > tau, w.sign() * (magnitude - step).clamp_min(tau), w))


@torch.no_grad()
def max_abs_weight(model: nn.Module, keep_ends: bool = False) -> float:
    """The largest |w| over the prunable weights (the paper's weight range)."""
    return max(float(w.abs().max()) for w in prunable_parameters(model, keep_ends).values())
