"""Faster inference for attacks: BatchNorm folded into the convolutions, channels_last, reduced precision.

Only for a frozen model: :func:`fold_batchnorm` refuses a model in training
mode, since folding bakes the running statistics into the weights. Outputs of
the folded model equal the original's to float tolerance (tested).
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16")


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of an eval-mode model with every ``convN`` + ``bnN`` pair merged into one conv with bias."""
    if model.training:
        raise ValueError("refusing to fold BatchNorm of a model in training mode; call model.eval() first")
    folded = copy.deepcopy(model)
    for parent in folded.modules():
        children = dict(parent.named_children())
        for name, conv in children.items():
            bn_name = name.replace("conv", "bn", 1)
            if not (name.startswith("conv") and isinstance(conv, nn.Conv2d)
                    and isinstance(children.get(bn_name), nn.BatchNorm2d)):
                continue
            bn = children[bn_name]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              conv.dilation, conv.groups, bias=True).to(conv.weight.device)
            fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
            setattr(parent, name, fused)
            setattr(parent, bn_name, nn.Identity())
    return folded.eval()


def attack_model(model: nn.Module, channels_last: bool = True, compile: bool = False) -> nn.Module:
    """The model to differentiate through during an attack: BN folded, optionally channels_last.

    ``compile`` wraps it in ``torch.compile`` (worth it on a GPU for long attacks; the first
    call pays the compilation).
    """
    fast = fold_batchnorm(model)
    for p in fast.parameters():
        p.requires_grad_(False)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return torch.compile(fast) if compile else fast


def autocast_context(device: torch.device, precision: str):
    """Autocast for the attack's forward and backward passes (fp32 = no autocast)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return nullcontext()
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("fp16 autocast is for GPUs; use bf16 on the CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
