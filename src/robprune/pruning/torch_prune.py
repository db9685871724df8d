"""Interoperability with ``torch.nn.utils.prune``: our masks as its ``weight_mask`` reparametrisation and back.

robprune keeps state-dict keys unchanged (masks live beside the model); tools
built on ``torch.nn.utils.prune`` expect ``weight_orig`` + ``weight_mask``.
These two functions convert between the formats without losing a bit.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from .masks import Masks, check_masks


def to_torch_prune(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Attach ``masks`` with ``prune.custom_from_mask`` (in place): ``weight`` becomes ``weight_orig * weight_mask``."""
    check_masks(model, masks)
    for name, mask in masks.items():
        module_name, _, param = name.rpartition(".")
        module = model.get_submodule(module_name)
        if prune.is_pruned(module) and hasattr(module, f"{param}_mask"):
            raise ValueError(f"{name} already carries a torch.nn.utils.prune mask; call from_torch_prune first")
        prune.custom_from_mask(module, param, mask.to(getattr(module, param).device))
    return model


def from_torch_prune(model: nn.Module) -> Masks:
    """Read every ``*_mask`` of ``torch.nn.utils.prune`` as our boolean masks and remove the reparametrisation.

    Afterwards the state-dict keys are back to ``weight`` (pruned entries zero),
    as ``prune.remove`` leaves them.
    """
    masks: Masks = {}
    for module_name, module in list(model.named_modules()):
        hooks = [h for h in module._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]
        names = []
        for hook in hooks:
            # PruningContainer holds the methods applied one after another; all act on one tensor name.
            names.append(hook._tensor_name)
        for param in dict.fromkeys(names):
            mask = getattr(module, f"{param}_mask").detach().bool().clone()
            prune.remove(module, param)
            masks[f"{module_name}.{param}" if module_name else param] = mask
    return masks
