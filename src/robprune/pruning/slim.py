"""A slim (channel-pruned) model's shapes: what its checkpoint records, how a dense rebuild takes them, and
its size (parameters and multiply-accumulates, counted by Torch-Pruning)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch_pruning as tp
from torch import nn

from ..models.layers import PadShortcut


def channel_structure(model: nn.Module) -> dict | None:
    """What rebuilding the dense architecture needs to take this model's slim shapes (None if not channel-pruned)."""
    if not getattr(model, "robprune_channel_pruned", False):
        return None
    shortcuts = {}
    for name, m in model.named_modules():
        if isinstance(m, PadShortcut) and m.slots is not None:
            slots, out = m.layout()
            shortcuts[name] = {"slots": slots, "out_channels": out}
    return {"channels": True, "shortcuts": shortcuts}


def reshape_to(model: nn.Module, shapes: Mapping[str, torch.Size], structure: Mapping) -> nn.Module:
    """Give a freshly built dense ``model`` the slim shapes of a state dict (``{name: shape}``), in place."""
    for name, m in model.named_modules():
        w = shapes.get(f"{name}.weight")
        if isinstance(m, nn.Conv2d) and w is not None and tuple(w) != tuple(m.weight.shape):
            depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
            m.out_channels = int(w[0])
            m.groups = int(w[0]) if depthwise else m.groups
            m.in_channels = int(w[1]) * m.groups
            _resize(m, ("weight", "bias"), shapes, name)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and w is not None and w[0] != m.num_features:
            m.num_features = int(w[0])
            _resize(m, ("weight", "bias", "running_mean", "running_var"), shapes, name)
        elif isinstance(m, nn.Linear) and w is not None and tuple(w) != tuple(m.weight.shape):
            m.out_features, m.in_features = int(w[0]), int(w[1])
            _resize(m, ("weight", "bias"), shapes, name)
    for name, layout in (structure.get("shortcuts") or {}).items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"the checkpoint's channel structure names a shortcut {name!r} the model lacks") from None
        if not isinstance(module, PadShortcut):
            raise ValueError(f"the checkpoint's channel structure names {name!r}, which is not a PadShortcut")
        if not isinstance(layout, dict) or not isinstance(layout.get("slots"), list) or \
                not isinstance(layout.get("out_channels"), int) or not all(isinstance(i, int) for i in layout["slots"]):
            raise ValueError(f"the checkpoint's channel structure of {name!r} is not slots (integers) and out_channels")
        module.set_layout(layout["slots"], layout["out_channels"])
    model.robprune_channel_pruned = True
    return model


def _resize(module: nn.Module, attrs: Sequence[str], shapes: Mapping[str, torch.Size], prefix: str) -> None:
    for attr in attrs:
        old = getattr(module, attr, None)
        shape = shapes.get(f"{prefix}.{attr}")
        if old is None or shape is None:
            continue
        new = torch.zeros(tuple(shape), dtype=old.dtype, device=old.device)
        if isinstance(old, nn.Parameter):
            setattr(module, attr, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            setattr(module, attr, new)  # a registered buffer stays registered under the same name


def example_input(meta: Mapping, size: int | None = None) -> torch.Tensor:
    """A batch of two inputs in [0, 1] of the checkpoint's channels, at ``size`` or the size it was traced at."""
    recorded = [h.get("input_size") for h in meta.get("channel_pruning") or [] if h.get("input_size")]
    if size is None and recorded:
        c, h, w = recorded[-1]
        return torch.rand(2, c, h, w, generator=torch.Generator().manual_seed(0))
    side = size or (8 if meta.get("data") == "digits" else 32)
    return torch.rand(2, int(meta["in_channels"]), side, side, generator=torch.Generator().manual_seed(0))


def count_macs(model: nn.Module, example_inputs: torch.Tensor) -> tuple[int, int]:
    """(multiply-accumulates of one forward pass of ``example_inputs``, parameters), counted by Torch-Pruning."""
    was_training = model.training
    model.eval()
    try:
        macs, params = tp.utils.count_ops_and_params(model, example_inputs)
    finally:
        model.train(was_training)
    return int(macs), int(params)
