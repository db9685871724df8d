"""The paper's Eq. 3: an upper bound on ||f(x + d) - f(x)||_2 / ||d||_2 from per-layer weight norms.

For a CIFAR ResNet in eval mode, with every BatchNorm folded into the
convolution before it (BN is a per-channel affine map, so its scale
gamma / sqrt(var + eps) multiplies the conv's output channels):

    L(f) <= (1 / min std) * L(stem) * prod_blocks (1 + L(conv2) L(conv1)) * (1 / sqrt(HW)) * L(linear)

ReLU is 1-Lipschitz; the option-A shortcut (subsample, zero padding) is
1-Lipschitz, hence the ``1 +`` of each residual block; global average pooling
over H x W positions has Lipschitz constant 1 / sqrt(HW). Two choices of the
per-layer constant L:

* ``l1``: the entry-wise L1 norm of the (folded) weights, the paper's choice.
  It is a valid L2 bound for a convolution by Young's inequality
  (||w * x||_2 <= ||w||_1 ||x||_2 per channel pair, then ||A||_2 <= sum |A|).
* ``spectral``: the operator 2-norm of the layer at its real input size, by
  power iteration with conv2d and its adjoint conv_transpose2d; much tighter.

Power iteration converges from below, so the spectral figure is an estimate
of the true norm (to the tolerance reached), not a guaranteed bound.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import frozen, pgd
from .evaluation import as_float_images
from .models import BasicBlock, CifarResNet


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Weights of conv followed by eval-mode BN, as one conv (the bias does not affect Lipschitz constants)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return conv.weight * scale.view(-1, 1, 1, 1)


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


def _layer_norm(weight: torch.Tensor, kind: str, in_shape=None, stride=1, padding=1) -> float:
    if kind == "l1":
        return float(weight.abs().sum())
    if weight.dim() == 2:
        return float(torch.linalg.matrix_norm(weight, ord=2))
    return conv_spectral_norm(weight, in_shape, stride, padding)


@torch.no_grad()
def lipschitz_bound(model: CifarResNet, input_shape: tuple[int, int, int], kind: str = "spectral") -> dict:
    """Eq. 3 bound for a CIFAR ResNet (eval-mode BN); returns the bound and its log10."""
    if not isinstance(model, CifarResNet):
        raise TypeError("lipschitz_bound supports the CIFAR ResNets (option A)")
    if kind not in ("l1", "spectral"):
        raise ValueError(f"unknown norm {kind!r}; use l1 or spectral")
    c, h, w = input_shape
    log_bound = -math.log(float(model.normalize.std.min()))
    log_bound += math.log(_layer_norm(fold_bn(model.conv1, model.bn1), kind, (c, h, w)))
    channels = model.conv1.out_channels
    for stage in (model.layer1, model.layer2, model.layer3):
        for block in stage:
            assert isinstance(block, BasicBlock)
            stride = block.conv1.stride[0]
            l1 = _layer_norm(fold_bn(block.conv1, block.bn1), kind, (channels, h, w), stride)
            h, w = (h + 2 - 3) // stride + 1, (w + 2 - 3) // stride + 1
            channels = block.conv1.out_channels
            l2 = _layer_norm(fold_bn(block.conv2, block.bn2), kind, (channels, h, w), 1)
            log_bound += math.log1p(l1 * l2)
    log_bound += -0.5 * math.log(h * w)
    log_bound += math.log(_layer_norm(model.linear.weight, kind))
    return {"norm": kind, "log10_bound": log_bound / math.log(10)}


def measured_distortion(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 4,
                        batch_size: int = 256) -> dict:
    """||f(x + d) - f(x)||_2 / ||d||_2 over images, with d the PGD perturbation at ``eps`` (pixel units)."""
    device = next(model.parameters()).device
    ratios = []
    for start in range(0, len(x), batch_size):
        xb = as_float_images(x[start : start + batch_size].to(device))
        yb = y[start : start + batch_size].to(device)
        x_adv = pgd(model, xb, yb, eps, steps, random_start=True, seed=start)
        with torch.no_grad(), frozen(model):
            diff = (model(x_adv) - model(xb)).flatten(1).norm(dim=1)
        d = (x_adv - xb).flatten(1).norm(dim=1)
        keep = d > 0
        ratios.append((diff[keep] / d[keep]).cpu())
    r = torch.cat(ratios)
    return {"eps": eps, "n": int(r.numel()), "mean": float(r.mean()), "median": float(r.median()),
            "max": float(r.max())}
