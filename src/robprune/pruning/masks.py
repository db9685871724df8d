"""Pruning masks as plain ``{param_name: bool tensor}`` mappings.

A mask entry is True where the weight is kept and False where it is pruned
(the convention of ``torch.nn.utils.prune``). Masks are computed by pure
functions; :func:`apply_masks` is the only function that changes a model.

A pruning criterion is a scoring function in :mod:`.criteria`: the weights
with the *lowest* scores are pruned.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import nn

from .criteria import CRITERIA

log = logging.getLogger(__name__)
Masks = dict[str, torch.Tensor]
SCOPES = ("global", "layer")


def check_amount(amount: float) -> float:
    """Validate a pruning fraction: a float in [0, 1)."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise TypeError(f"amount must be a float in [0, 1), got {amount!r}")
    if not 0.0 <= float(amount) < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    return float(amount)


def prunable_parameters(model: nn.Module, keep_ends: bool = False) -> dict[str, nn.Parameter]:
    """Conv and linear weights, in module order; ``keep_ends`` leaves the first conv and last linear dense."""
    names = []
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            names.append(f"{module_name}.weight" if module_name else "weight")
    if keep_ends:
        first_conv = next((i for i, n in enumerate(names) if _is_conv(model, n)), None)
        last_linear = max((i for i, n in enumerate(names) if not _is_conv(model, n)), default=None)
        names = [n for i, n in enumerate(names) if i not in (first_conv, last_linear)]
    params = dict(model.named_parameters())
    return {n: params[n] for n in names}


def _is_conv(model: nn.Module, param_name: str) -> bool:
    module = model.get_submodule(param_name.rsplit(".", 1)[0]) if "." in param_name else model
    return isinstance(module, nn.Conv2d)


def _lowest_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean tensor, True at exactly the k lowest scores (ties broken by position)."""
    pruned = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        idx = torch.topk(scores.flatten(), k, largest=False, sorted=False).indices
        pruned[idx] = True
    return pruned.view(scores.shape)


def compute_masks(
    model: nn.Module,
    method: str,
    amount: float,
    scope: str = "global",
    keep_ends: bool = False,
    seed: int = 0,
    previous: Mapping[str, torch.Tensor] | None = None,
) -> Masks:
    """Masks that prune exactly ``round(amount * n)`` prunable weights.

    ``scope="global"`` ranks all prunable weights together (one threshold);
    ``scope="layer"`` prunes ``round(amount * n_layer)`` in every layer.
    Weights already pruned in ``previous`` are pruned first, so a gradual
    schedule only ever grows the pruned set: ``amount`` is the total, old zeros included, and an amount below the
    fraction ``previous`` already prunes raises ValueError. A layer pruned entirely is logged as a warning.
    """
    scorer = CRITERIA.get(method)
    if scope not in SCOPES:
        raise ValueError(f"unknown pruning scope {scope!r}; choose one of {', '.join(SCOPES)}")
    amount = check_amount(amount)
    weights = prunable_parameters(model, keep_ends)
    generator = torch.Generator().manual_seed(seed)
    scores = {}
    for name, w in weights.items():
        s = scorer(w.detach(), generator).float()
        if previous is not None and name in previous:
            s = torch.where(previous[name].to(s.device), s, torch.full_like(s, -torch.inf))
        scores[name] = s

    if previous is not None:
        _check_keeps_previous(scores, amount, scope)
    masks = masks_from_ranks(scores, amount, scope)
    warn_collapsed(masks)
    return masks


def masks_from_ranks(ranks: Mapping[str, torch.Tensor], amount: float, scope: str = "global") -> Masks:
    """Prune the lowest ranks: exactly ``round(amount * n)`` over all tensors (``global``) or per tensor (``layer``)."""
    if scope == "layer":
        return {n: ~_lowest_k(r, round(amount * r.numel())) for n, r in ranks.items()}
    flat = torch.cat([r.flatten() for r in ranks.values()])
    pruned = _lowest_k(flat, round(amount * flat.numel()))
    masks, start = {}, 0
    for name, r in ranks.items():
        masks[name] = ~pruned[start : start + r.numel()].view(r.shape)
        start += r.numel()
    return masks


def warn_collapsed(masks: Mapping[str, torch.Tensor]) -> None:
    """Log a warning for every layer a mask prunes entirely (no signal passes: the network is a constant)."""
    for name, mask in masks.items():
        if mask.numel() and not mask.any():
            log.warning("pruning removes every weight of %s (%d of %d): no signal passes through that layer and "
                        "the network becomes a constant; prune less, use scope 'layer', or keep the ends dense",
                        name, mask.numel(), mask.numel())


def _check_keeps_previous(scores: Mapping[str, torch.Tensor], amount: float, scope: str) -> None:
    """An amount is the total pruned fraction, old zeros included; one below what ``previous`` already prunes would
    unmask old zeros (so training could grow them back): refused, naming the smallest amount that keeps them."""
    if scope == "layer":
        groups = {n: [s] for n, s in scores.items()}
    else:
        groups = {"the prunable weights": list(scores.values())}
    for name, group in groups.items():
        n = sum(s.numel() for s in group)
        old = sum(int(torch.isneginf(s).sum()) for s in group)
        if round(amount * n) < old:
            raise ValueError(f"amount {amount:g} is the total pruned fraction, but {name} already have {old} of {n} "
                             f"weights pruned ({old / n:.4f}); an amount of at least {old / n:.4f} keeps them pruned")


def check_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Raise ValueError if a mask names no parameter, has the wrong shape or is not boolean."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise ValueError(f"mask for {name!r} matches no parameter of the model")
        if mask.dtype != torch.bool:
            raise ValueError(f"mask for {name!r} must be boolean, got {mask.dtype}")
        if mask.shape != params[name].shape:
            raise ValueError(
                f"mask for {name!r} has shape {tuple(mask.shape)}, "
                f"the parameter has {tuple(params[name].shape)}"
            )


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Zero the pruned weights in place (the one function that mutates a model with masks).

    Called once after pruning and again after every optimiser step, so pruned
    weights stay exactly zero whatever momentum and weight decay do.
    """
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params or mask.shape != params[name].shape:
            check_masks(model, masks)
        params[name].mul_(mask)
    return model


def sparsity_report(model: nn.Module, keep_ends: bool = False) -> dict:
    """Per-layer and total count of zero weights over the prunable weights."""
    layers = []
    for name, w in prunable_parameters(model, keep_ends).items():
        zeros = int((w == 0).sum())
        layers.append({"name": name, "shape": list(w.shape), "numel": w.numel(),
                       "zeros": zeros, "sparsity": zeros / w.numel()})
    total = sum(r["numel"] for r in layers)
    zeros = sum(r["zeros"] for r in layers)
    return {"layers": layers, "numel": total, "zeros": zeros, "sparsity": zeros / max(total, 1)}


def mask_lists(model: nn.Module, masks: Masks) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(weights, masks in the weights' dtype) for one ``torch._foreach_mul_`` after each optimiser step."""
    params = dict(model.named_parameters())
    names = list(masks)
    return [params[n] for n in names], [masks[n].to(params[n].dtype) for n in names]
