"""The paper's Eq. 3: an upper bound on ||f(x + d) - f(x)||_2 / ||d||_2 from per-layer weight norms, for any
traceable network built from convolutions, linear layers and residual additions.

The model is BatchNorm-folded and traced (``torch.fx``); the bound is then
propagated through the graph, node by node, as a Lipschitz constant with
respect to the input: a conv or linear layer multiplies it by its norm L, an
eval-mode BatchNorm left unfolded by its largest |scale|, input normalisation
by 1 / min std, ReLU, zero padding, strided subsampling, flattening and
non-overlapping max pooling by 1, global average pooling over H x W positions
by 1 / sqrt(HW), and a residual addition a + b adds the constants of its two
branches. For a CIFAR ResNet this gives the paper's product

    L(f) <= (1 / min std) * L(stem) * prod_blocks (1 + L(conv2) L(conv1)) * (1 / sqrt(HW)) * L(linear).

Two choices of the per-layer constant L:

* ``l1``: the entry-wise L1 norm of the (folded) weights, the paper's choice.
  It is a valid L2 bound for a convolution by Young's inequality
  (||w * x||_2 <= ||w||_1 ||x||_2 per channel pair, then ||A||_2 <= sum |A|).
* ``spectral``: the operator 2-norm of the layer at its real input size, by
  power iteration with conv2d and its adjoint conv_transpose2d; much tighter.

Power iteration converges from below, so the spectral figure is an estimate
of the true norm (to the tolerance reached), not a guaranteed bound. A graph
node the propagation does not know raises "not supported for this model".
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.common import frozen
from ..attacks.pgd import pgd
from ..data.batches import as_float_images
from .fast import fold_batchnorm

def conv_spectral_norm(weight: torch.Tensor, in_shape: tuple[int, int, int], stride: int, padding: int,
                       iters: int = 50, seed: int = 0) -> float:
    """Largest singular value of the conv operator on inputs of shape (C, H, W), by power iteration."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn((1, *in_shape), generator=g, dtype=weight.dtype).to(weight.device)
    v /= v.norm()
    sigma = 0.0
    for _ in range(iters):
        u = F.conv2d(v, weight, stride=stride, padding=padding)
        sigma = float(u.norm())
        v = F.conv_transpose2d(u, weight, stride=stride, padding=padding,
                               output_padding=_output_padding(in_shape, u.shape, stride, padding, weight))
        v /= v.norm().clamp_min(1e-30)
    return sigma


def _output_padding(in_shape, out_shape, stride: int, padding: int, weight: torch.Tensor) -> int:
    k = weight.shape[-1]
    produced = (out_shape[-1] - 1) * stride - 2 * padding + k
    return in_shape[-1] - produced


def _conv_norm(conv: nn.Conv2d, kind: str, in_shape) -> float:
    if kind == "l1":
        return float(conv.weight.abs().sum())
    if conv.groups != 1 or conv.dilation != (1, 1) or len(set(conv.stride)) != 1 or isinstance(conv.padding, str) \
            or len(set(conv.padding)) != 1:
        raise ValueError(f"not supported for this model: spectral norm of {conv} (grouped, dilated or "
                         "asymmetric convolution); use the l1 bound")
    return conv_spectral_norm(conv.weight, tuple(in_shape), conv.stride[0], conv.padding[0])


def _linear_norm(linear: nn.Linear, kind: str) -> float:
    w = linear.weight
    return float(w.abs().sum()) if kind == "l1" else float(torch.linalg.matrix_norm(w, ord=2))


def _const(graph_module, arg):
    """The value of a non-input argument (a number or a buffer), or None when it depends on the input."""
    if isinstance(arg, (int, float)):
        return torch.tensor(float(arg))
    if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
        value = graph_module
        for part in arg.target.split("."):
            value = getattr(value, part)
        return value.detach()
    return None


_IDENTITY_FUNCTIONS = {F.relu, torch.relu, F.pad, torch.flatten, operator.getitem}
_IDENTITY_METHODS = {"relu", "flatten", "view", "reshape", "contiguous", "float", "to", "clone", "detach"}
_IDENTITY_MODULES = (nn.ReLU, nn.Identity, nn.Flatten, nn.Dropout)


@torch.no_grad()
def lipschitz_bound(model: nn.Module, input_shape: tuple[int, int, int], kind: str = "spectral") -> dict:
    """Eq. 3 bound of an eval-mode model with inputs of shape (C, H, W); returns the bound's log10.

    ValueError "not supported for this model" names the first graph node the
    propagation cannot bound (or says that the model cannot be traced).
    """
    if kind not in ("l1", "spectral"):
        raise ValueError(f"unknown norm {kind!r}; use l1 or spectral")
    from torch.fx.passes.shape_prop import ShapeProp

    was_training = model.training
    try:
        folded = fold_batchnorm(model.eval())
    finally:
        model.train(was_training)
    if not isinstance(folded, torch.fx.GraphModule):
        raise ValueError(f"the Eq. 3 bound is not supported for this model: {type(model).__name__} cannot be "
                         "traced by torch.fx")
    device = next(folded.parameters()).device
    ShapeProp(folded).propagate(torch.zeros((1, *input_shape), device=device))
    modules = dict(folded.named_modules())
    log_l: dict[torch.fx.Node, float] = {}

    def shape_of(node):
        return tuple(node.meta["tensor_meta"].shape[1:])

    def unsupported(node, why: str = "") -> ValueError:
        return ValueError(f"the Eq. 3 bound is not supported for this model: node {node.name} "
                          f"({node.op} {getattr(node.target, '__name__', node.target)}){why}")

    def inputs(node):
        return [a for a in node.args if isinstance(a, torch.fx.Node) and a in log_l]

    for node in folded.graph.nodes:
        if node.op == "placeholder":
            log_l[node] = 0.0
        elif node.op == "get_attr":
            continue
        elif node.op == "output":
            (out,) = inputs(node) or [None]
            if out is None:
                raise unsupported(node)
            bound = log_l[out]
        else:
            ins = inputs(node)
            if not ins:
                continue
            x_node = ins[0]
            prev = log_l[x_node]
            target = node.target
            if node.op == "call_module":
                m = modules[target]
                if isinstance(m, nn.Conv2d):
                    log_l[node] = prev + math.log(_conv_norm(m, kind, shape_of(x_node)))
                elif isinstance(m, nn.Linear):
                    log_l[node] = prev + math.log(_linear_norm(m, kind))
                elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                    scale = (m.weight / torch.sqrt(m.running_var + m.eps)).abs().max()
                    log_l[node] = prev + math.log(float(scale))
                elif isinstance(m, _IDENTITY_MODULES):
                    log_l[node] = prev
                elif isinstance(m, nn.MaxPool2d) and m.kernel_size == m.stride:
                    log_l[node] = prev
                elif isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1)):
                    h, w = shape_of(x_node)[-2:]
                    log_l[node] = prev - 0.5 * math.log(h * w)
                else:
                    raise unsupported(node, f": {type(m).__name__}")
            elif target in (operator.add, torch.add, operator.iadd) or target == "add":
                if len(ins) == 2:
                    log_l[node] = float(torch.logaddexp(torch.tensor(log_l[ins[0]]), torch.tensor(log_l[ins[1]])))
                else:
                    log_l[node] = prev  # adding a constant
            elif target in (operator.sub, torch.sub) and len(ins) == 1:
                log_l[node] = prev
            elif target in (operator.truediv, torch.div) and len(ins) == 1 and node.args[0] is x_node:
                c = _const(folded, node.args[1])
                if c is None:
                    raise unsupported(node)
                log_l[node] = prev - math.log(float(c.abs().min()))
            elif target in (operator.mul, torch.mul) and len(ins) == 1:
                other = node.args[1] if node.args[0] is x_node else node.args[0]
                c = _const(folded, other)
                if c is None:
                    raise unsupported(node)
                log_l[node] = prev + math.log(float(c.abs().max()))
            elif target in (F.adaptive_avg_pool2d,) and node.args[1] in (1, (1, 1)):
                h, w = shape_of(x_node)[-2:]
                log_l[node] = prev - 0.5 * math.log(h * w)
            elif target in _IDENTITY_FUNCTIONS or (node.op == "call_method" and target in _IDENTITY_METHODS):
                log_l[node] = prev
            else:
                raise unsupported(node)
    return {"norm": kind, "log10_bound": bound / math.log(10)}


def measured_distortion(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 4,
                        batch_size: int = 256) -> dict:
    """||f(x + d) - f(x)||_2 / ||d||_2 over images, with d the PGD perturbation at ``eps`` (pixel units)."""
    device = next(model.parameters()).device
    ratios = []
    for start in range(0, len(x), batch_size):
        xb = as_float_images(x[start : start + batch_size].to(device))
        yb = y[start : start + batch_size].to(device)
        x_adv = pgd(model, xb, yb, eps, steps, random_start=True, seed=start, exact_model=True)
        with torch.no_grad(), frozen(model):
            diff = (model(x_adv) - model(xb)).flatten(1).norm(dim=1)
        d = (x_adv - xb).flatten(1).norm(dim=1)
        keep = d > 0
        ratios.append((diff[keep] / d[keep]).cpu())
    r = torch.cat(ratios)
    return {"eps": eps, "n": int(r.numel()), "mean": float(r.mean()), "median": float(r.median()),
            "max": float(r.max())}
