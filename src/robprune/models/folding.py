"""BatchNorm folding and the copy attacks differentiate through (folded, frozen, channels_last), cached per model.

Attacks always run a model in eval mode, so folding the running statistics
into the convolutions changes nothing but speed (outputs equal to float
tolerance, tested). ``cached_attack_model`` keeps one folded copy per model
and rebuilds it when any parameter or buffer changed (in place, through
``.data``, or by moving the model), so a loop of attack calls folds once.
"""

from __future__ import annotations

import copy
import logging
import weakref

import torch
from torch import nn

log = logging.getLogger(__name__)
_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


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
    fast.robprune_attack_copy = True  # an attack given this copy uses it as it is
    return torch.compile(fast) if compile else fast


def _signature(model: nn.Module) -> tuple:
    """Changes whenever a weight or buffer does: storage, version counter, and two sums of every tensor (a write
    through ``.data`` bypasses the version counter)."""
    tensors = [t.detach() for t in (*model.parameters(), *model.buffers())]
    if not tensors:
        return ()
    with torch.no_grad():
        sums = torch.stack([torch.stack([t.float().sum(), t.float().abs().sum()]) for t in tensors]).cpu()
    return (tuple((t.data_ptr(), t._version, t.device, t.dtype, tuple(t.shape)) for t in tensors),
            tuple(sums.flatten().tolist()))


def cached_attack_model(model: nn.Module) -> nn.Module:
    """``attack_model(model)``, built once and reused until ``model``'s weights, buffers or device change."""
    signature = _signature(model)
    hit = _CACHE.get(model)
    if hit is not None and hit[0] == signature:
        return hit[1]
    fast = attack_model(model)
    _CACHE[model] = (signature, fast)
    return fast
