"""The objective registry and what the objectives share: crafting a training attack without weight gradients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import Registry

OBJECTIVES: Registry[Callable[..., "Outcome"]] = Registry("training objective")


@dataclass
class Outcome:
    loss: torch.Tensor  # scalar to minimise (before the Eq. 4 penalty)
    logits: torch.Tensor | None  # clean logits, when the objective computed them
    adv_logits: torch.Tensor | None  # logits on the training attack's points (adversarial objectives)


def register_objective(name: str, *, default_step: float = 0.25, adversarial: bool = True,
                       norms: tuple[str, ...] = ("linf",)):
    """Register ``objective(model, x, y, config, generator, autocast) -> Outcome``.

    ``default_step`` is the attack step as a multiple of eps when the user gives none; ``norms`` the training
    attack's norms (``config.adv_norm``) the objective implements.
    """
    return OBJECTIVES.register(name, default_step=default_step, adversarial=adversarial, norms=norms)


def list_objectives() -> list[str]:
    return OBJECTIVES.names()


@contextmanager
def crafting_mode(model: nn.Module, bn_mode: str) -> Iterator[None]:
    """BatchNorm in ``bn_mode`` ("eval": running statistics, untouched; "train") while the attack is crafted.

    In "train" mode the crafting passes would also update the running
    statistics; they are saved and restored so only the training pass counts.
    """
    was_training = model.training
    saved = None
    if bn_mode == "train":
        saved = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k or "num_batches" in k}
    model.train(bn_mode == "train")
    try:
        yield
    finally:
        model.train(was_training)
        if saved is not None:
            model.load_state_dict(saved, strict=False)


def input_grad(model: nn.Module, x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor],
               autocast) -> torch.Tensor:
    """Gradient of ``loss_fn(model(x))`` with respect to x only: no weight gradient is computed or kept."""
    net = getattr(model, "module", model)  # crafting bypasses a DistributedDataParallel wrapper (no reduction)
    x = x.detach().requires_grad_(True)
    with autocast():
        logits = net(x)
    (grad,) = torch.autograd.grad(loss_fn(logits.float()), x)
    return grad


def uniform_noise(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    return torch.empty_like(x).uniform_(-1.0, 1.0, generator=generator) * eps


def linf_pgd_steps(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, eps: float, step: float, steps: int,
                   loss_fn: Callable[[torch.Tensor], torch.Tensor], autocast) -> torch.Tensor:
    """``steps`` sign-gradient ascent steps on ``loss_fn`` from ``x_adv``, projected on the eps-ball and [0, 1]."""
    lower, upper = (x - eps).clamp_min(0.0), (x + eps).clamp_max(1.0)
    for _ in range(steps):
        grad = input_grad(model, x_adv, loss_fn, autocast)
        x_adv = torch.minimum(torch.maximum(x_adv.detach() + step * grad.sign(), lower), upper)
    return x_adv.detach()


def _l2_norms(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def l2_project(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> torch.Tensor:
    """``x_adv`` moved onto ``||x_adv - x||_2 <= eps`` (radially) and then [0, 1]."""
    delta = x_adv - x
    return (x + delta * torch.clamp(eps / _l2_norms(delta), max=1.0)).clamp(0.0, 1.0)


def l2_ball_noise(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    """A random direction times a radius uniform in [0, eps], per image (the pgd-l2 attack's start)."""
    direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    radius = torch.rand((len(x),) + (1,) * (x.dim() - 1), generator=generator, device=x.device, dtype=x.dtype)
    return direction / _l2_norms(direction) * radius * eps


def l2_pgd_steps(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, eps: float, step: float, steps: int,
                 loss_fn: Callable[[torch.Tensor], torch.Tensor], autocast) -> torch.Tensor:
    """``steps`` ascent steps of length ``step`` along the L2-normalised gradient, projected on the L2 ball and
    [0, 1] (Madry et al. 2018)."""
    x_adv = l2_project(x, x_adv, eps)
    for _ in range(steps):
        grad = input_grad(model, x_adv, loss_fn, autocast)
        x_adv = l2_project(x, x_adv.detach() + step * grad / _l2_norms(grad), eps)
    return x_adv.detach()


def pgd_steps(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, config, steps: int,
              loss_fn: Callable[[torch.Tensor], torch.Tensor], autocast) -> torch.Tensor:
    """The training attack's steps in the config's norm (``adv_norm``), radius ``adv_eps``."""
    steps_in_norm = l2_pgd_steps if config.adv_norm == "l2" else linf_pgd_steps
    return steps_in_norm(model, x, x_adv, config.adv_eps, config.step_size(), steps, loss_fn, autocast)


def random_start(x: torch.Tensor, config, generator: torch.Generator) -> torch.Tensor:
    """A random start in the config's eps-ball around x, clipped to [0, 1]: uniform in the linf box, or a random
    direction at a radius uniform in [0, eps] for l2 (as the pgd-l2 attack)."""
    if config.adv_norm == "l2":
        return (x + l2_ball_noise(x, config.adv_eps, generator)).clamp(0.0, 1.0)
    return (x + uniform_noise(x, config.adv_eps, generator)).clamp(0.0, 1.0)


def cross_entropy(y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda logits: F.cross_entropy(logits, y, reduction="sum")
