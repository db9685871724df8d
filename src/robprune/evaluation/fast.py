"""Faster attacks: BatchNorm folded into the convolutions (by the traced graph), frozen parameters, channels_last.

Only for a frozen model: :func:`fold_batchnorm` refuses a model in training
mode, since folding bakes the running statistics into the weights. Outputs of
the folded model equal the original's to float tolerance (tested).
"""

from __future__ import annotations

import copy
import logging
from contextlib import nullcontext

import torch
from torch import nn

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "bf16", "fp16")


def _batchnorm_calls(graph_module: torch.fx.GraphModule) -> int:
    modules = dict(graph_module.named_modules())
    return sum(1 for node in graph_module.graph.nodes
               if node.op == "call_module" and isinstance(modules.get(node.target), nn.modules.batchnorm._BatchNorm))


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of an eval-mode model with every conv -> BatchNorm pair of its traced graph merged into one conv.

    The pairs are found on the ``torch.fx`` graph (``torch.fx.experimental.optimization.fuse``, which
    uses torch's own ``fuse_conv_bn_eval``), so any module layout works: ``convN``/``bnN`` attributes,
    ``nn.Sequential(Conv2d, BatchNorm2d, ...)``, ``downsample.0/1``, VGG's ``features.N``. A model that
    cannot be traced is returned as an unfolded copy, and the reason is logged.
    """
    if model.training:
        raise ValueError("refusing to fold BatchNorm of a model in training mode; call model.eval() first")
    from torch.fx.experimental.optimization import fuse

    try:
        traced = torch.fx.symbolic_trace(copy.deepcopy(model))  # fuse replaces submodules in place
    except Exception as err:  # tracing fails on data-dependent control flow, in many ways
        log.info("BatchNorm not folded: %s cannot be traced by torch.fx (%s: %s)", type(model).__name__,
                 type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        return copy.deepcopy(model).eval()
    before = _batchnorm_calls(traced)
    folded = fuse(traced, inplace=True, no_trace=True)
    log.debug("folded %d of %d BatchNorm layers of %s", before - _batchnorm_calls(folded), before,
              type(model).__name__)
    return folded.eval()


def attack_model(model: nn.Module, channels_last: bool = True, compile: bool = False) -> nn.Module:
    """The model to differentiate through during an attack: BN folded, optionally channels_last.

    ``compile`` wraps it in ``torch.compile`` (worth it on a GPU for long attacks; the first
    call pays the compilation).
    """
    was_training = model.training
    try:
        fast = fold_batchnorm(model.eval())  # attacks run in eval mode; the copy bakes in the running statistics
    finally:
        model.train(was_training)
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
