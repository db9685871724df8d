"""HYDRA: masks learned from data under a (robust) training objective, with the weights frozen.

Sehwag, Wang, Mittal & Jana 2020, "HYDRA: Pruning Adversarially Robust Neural Networks" (NeurIPS). Every
prunable weight w gets a real-valued importance score s, initialised as ``sqrt(6 / fan_in) * w / max|w|`` (their
scaled initialisation). The forward pass uses ``w * m`` where m keeps the weights of the largest |s| (exactly
``n - round(amount * n)`` per layer, HYDRA's default, or over all layers with ``scope="global"``); m is a step
function of s, so its gradient is passed straight through (d m / d|s| := 1). Only s is trained, by SGD on the
objective (any of robprune's training objectives: ce, pgd, trades, fgsm, plus the paper's Eq. 4 hinge on the
masked weights when lam > 0). The result is an ordinary ``{param: bool}`` mask mapping; the weights come back
unchanged and are fine-tuned under the mask afterwards (``robprune train --init``).

As in HYDRA's code the model is in train mode while scores are learned (BatchNorm normalises the masked
network's batches and its running statistics follow them, which the per-epoch test accuracy uses); at the end
every buffer is put back, so this stage changes nothing of the checkpoint but its masks, and the fine-tuning
stage adapts BatchNorm to the mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..data import iterate_batches
from ..evaluation.accuracy import predict
from ..io import write_bytes_atomic
from ..pruning.criteria import register_learned
from ..pruning.masks import (SCOPES, Masks, _check_keeps_previous, check_amount, masks_from_ranks,
                             prunable_parameters, warn_collapsed)
from ..pruning.regularizer import resolve_tau, weights_penalty
from ..training.loop import autocast_factory, learning_rate, subset_data
from ..training.objectives import OBJECTIVES

STATE_FILE = "scores.safetensors"


class _ScoredWeight(nn.Module):
    """Parametrisation ``w -> w * m(s)``: m is the current top-k mask of |s| in the forward pass and the identity
    in the backward pass (straight-through), so the objective's gradient reaches the scores."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = nn.Parameter(scores)
        self.register_buffer("mask", torch.ones_like(scores, dtype=torch.bool), persistent=False)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        magnitude = self.scores.abs()
        return w * (self.mask.to(w.dtype) + magnitude - magnitude.detach())


def initial_scores(w: torch.Tensor) -> torch.Tensor:
    """HYDRA's scaled initialisation: ``sqrt(6 / fan_in) * w / max|w|``."""
    fan_in = w[0].numel()
    return math.sqrt(6.0 / fan_in) * w.detach().float() / w.detach().abs().max().clamp_min(1e-12)


def masks_from_scores(scores: dict[str, torch.Tensor], amount: float, scope: str = "layer") -> Masks:
    """Keep the largest |score|: exactly ``round(amount * n)`` pruned per layer (``layer``) or over all layers."""
    return _lowest_ranks_pruned({n: s.detach().abs() for n, s in scores.items()}, amount, scope)


def _lowest_ranks_pruned(ranks: dict[str, torch.Tensor], amount: float, scope: str) -> Masks:
    amount = check_amount(amount)
    if scope not in SCOPES:
        raise ValueError(f"unknown pruning scope {scope!r}; choose one of {', '.join(SCOPES)}")
    return masks_from_ranks(ranks, amount, scope)


@register_learned("hydra", label="HYDRA", default_scope="layer", default_lr=0.1)
def learn_masks(model: nn.Module, data, config, amount: float, scope: str = "layer", keep_ends: bool = False,
                previous: Masks | None = None, out_dir: str | Path | None = None, resume: bool = False,
                progress: Callable[[dict], None] | None = None) -> tuple[Masks, list[dict]]:
    """HYDRA's score learning on ``model`` (weights, buffers and mode are restored; only masks are learned).

    ``config`` is a ``TrainConfig``: its objective (``adv`` and options), epochs, lr (cosine schedule), momentum,
    weight decay, batch size, augmentation, seed, precision and hinge (lam, tau, p) apply to the scores.
    ``previous`` masks (a pruned checkpoint) stay pruned: their weights score -inf. With ``out_dir`` the scores,
    momentum and generators are saved after every epoch and ``resume`` continues from them bit-exactly.
    Returns the masks and one metrics dict per epoch."""

    amount = check_amount(amount)
    if scope not in SCOPES:
        raise ValueError(f"unknown pruning scope {scope!r}; choose one of {', '.join(SCOPES)}")
    return learn_with(model, data, config, amount, keep_ends, previous, out_dir, resume, progress,
                      lambda inits, weights: TopK(inits, amount, scope, previous), scope)


class TopK:
    """HYDRA's strategy: each layer's (or the network's) top-k of |s|, exactly ``round(amount * n)`` pruned."""

    def __init__(self, inits: dict[str, torch.Tensor], amount: float, scope: str, previous: Masks | None) -> None:
        self.amount, self.scope, self.previous = amount, scope, previous
        self.parts = {n: _ScoredWeight(s) for n, s in inits.items()}
        self.params = {n: p.scores for n, p in self.parts.items()}

    def masks(self) -> Masks:
        return _current_masks(self.params, self.amount, self.scope, self.previous)

    final = masks

    def loss(self, done: float) -> torch.Tensor | None:  # no term beyond the objective (and the hinge)
        return None

    def before_step(self) -> None:  # the gradients as they are
        pass

    def summary(self) -> dict:
        return {}


def learn_with(model: nn.Module, data, config, amount: float, keep_ends: bool, previous: Masks | None, out_dir,
               resume: bool, progress, strategy_of: Callable, scope: str) -> tuple[Masks, list[dict]]:
    """Score learning with a strategy (``TopK``: HYDRA; ``rates.LearnedRates``): its parametrisations on every
    prunable weight, its parameters trained by SGD on the objective (+ the hinge, + its own loss term), its masks
    set before every step; weights, buffers, flags and mode restored at the end; returns its final masks."""
    config.validate()
    weights = prunable_parameters(model, keep_ends)
    if not weights:
        raise ValueError("the model has no conv or linear weight to prune")
    device = next(model.parameters()).device
    data = subset_data(data, config)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    was_training = model.training
    tau = resolve_tau(model, config.tau, keep_ends) if config.lam > 0 else None
    owners = {name: model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model for name in weights}
    inits = {}
    for name, w in weights.items():
        init = initial_scores(w)
        if previous is not None and name in previous:
            init = torch.where(previous[name].to(init.device), init, torch.zeros_like(init))
        inits[name] = init.to(device)
    if previous is not None:  # an amount below the old sparsity would unmask old zeros
        ranks = {n: torch.where(previous[n].to(w.device), w.detach().abs(), torch.full_like(w, -torch.inf))
                 if n in previous else w.detach().abs() for n, w in weights.items()}
        _check_keeps_previous(ranks, amount, scope)
    strategy = strategy_of(inits, {n: w.detach() for n, w in weights.items()})
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for name, part in strategy.parts.items():
            parametrize.register_parametrization(owners[name], name.rsplit(".", 1)[-1], part.to(device))
        history = _learn(model, data, config, amount, strategy, tau, out_dir, resume, progress, lambda: weights_penalty(
            [getattr(owners[n], n.rsplit(".", 1)[-1]) for n in strategy.parts], tau, config.p), device)
        masks = strategy.final()
        warn_collapsed(masks)
    finally:
        for name in strategy.parts:
            if parametrize.is_parametrized(owners[name], name.rsplit(".", 1)[-1]):
                parametrize.remove_parametrizations(owners[name], name.rsplit(".", 1)[-1], leave_parametrized=False)
        for n, p in model.named_parameters():
            p.requires_grad_(flags.get(n, True))
        with torch.no_grad():
            for n, b in model.named_buffers():
                if n in buffers:
                    b.copy_(buffers[n])
        model.train(was_training)
    return masks, history


def _current_masks(scores, amount, scope, previous) -> Masks:
    """The mask of the current scores; weights ``previous`` pruned rank below all others (pruned first)."""
    ranks = {n: s.detach().abs() if previous is None or n not in previous else
             torch.where(previous[n].to(s.device), s.detach().abs(), torch.full_like(s, -torch.inf))
             for n, s in scores.items()}
    return _lowest_ranks_pruned(ranks, amount, scope)


def _learn(model, data, config, amount, strategy, tau, out_dir, resume, progress, penalty_of, device) -> list[dict]:
    """The epochs of score learning (``learn_with`` has set up the parametrisations); returns the history."""

    params = strategy.params
    objective, optimizer, generator, attack_generator, autocast, augment = score_learning(
        params, config, data, device, no_decay=getattr(strategy, "no_decay", ()),
        no_decay_lr_scale=getattr(strategy, "lr_scale", 1.0))
    state_path = Path(out_dir) / STATE_FILE if out_dir is not None else None
    history, start = [], 0
    if resume and state_path is not None and state_path.is_file():
        start, history = _restore(state_path, model, params, optimizer, (generator, attack_generator), config,
                                  amount)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    steps_per_epoch = max(1, len(x_train) // config.batch_size)
    total = steps_per_epoch * config.epochs
    for epoch in range(start, config.epochs):
        model.train()  # as HYDRA: BatchNorm normalises by the masked network's batches (buffers restored after)
        before = {n: m.clone() for n, m in strategy.masks().items()}
        loss_sum, seen = 0.0, 0
        for i, (x, y) in enumerate(iterate_batches(x_train, y_train, config.batch_size, generator, augment,
                                                   data.crop_padding)):
            step = epoch * steps_per_epoch + i
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step, total) * group.get("lr_scale", 1.0)
            for name, mask in strategy.masks().items():
                strategy.parts[name].mask = mask
            outcome = objective(model, x, y, config, attack_generator, autocast)
            loss = outcome.loss if tau is None else outcome.loss + config.lam * penalty_of()  # on the masked weights
            extra = strategy.loss(step / total)
            if extra is not None:
                loss = loss + extra
            if not math.isfinite(loss.item()):
                raise RuntimeError(f"the score-learning loss became {loss.item()} at epoch {epoch + 1}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            strategy.before_step()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            seen += len(y)
            if progress is not None:
                progress({"kind": "step", "epoch": epoch + 1, "epochs": config.epochs, "step": i + 1,
                          "steps": steps_per_epoch, "loss": loss.item(), "images": len(y)})
        after = strategy.masks()
        for name, mask in after.items():
            strategy.parts[name].mask = mask
        changed = sum(int((before[n] != after[n]).sum()) for n in after)
        metrics = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                   "test_acc": float((predict(model, data.x_test) == data.y_test).float().mean()),
                   "mask_changes": changed, "lr_end": optimizer.param_groups[0]["lr"], **strategy.summary()}
        history.append(metrics)
        if state_path is not None:
            _save(state_path, model, params, optimizer, (generator, attack_generator), config, amount, history)
        if progress is not None:
            progress({"kind": "note", "text": f"  scores epoch {epoch + 1}: loss {metrics['train_loss']:.4f}  "
                                              f"test (masked, frozen weights) {100 * metrics['test_acc']:.2f}%  "
                                              f"mask entries changed {changed}"})
    return history


def score_learning(scores: dict[str, torch.Tensor], config, data, device: torch.device, no_decay=(),
                   no_decay_lr_scale: float = 1.0):
    """What learning scores under ``config`` needs (HYDRA's masks here, channel scores in hydra_channels.py): the
    objective, SGD on the scores (those named in ``no_decay`` without weight decay, at ``no_decay_lr_scale``
    times the learning rate), the data and attack generators, autocast and the augmentation."""

    groups = [{"params": [p for n, p in scores.items() if n not in no_decay]}]
    if any(n in no_decay for n in scores):
        groups.append({"params": [p for n, p in scores.items() if n in no_decay], "weight_decay": 0.0,
                       "lr_scale": no_decay_lr_scale})
    optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    attack_generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    augment = data.augment if config.augment == "auto" else config.augment
    return (OBJECTIVES.get(config.adv), optimizer, generator, attack_generator,
            autocast_factory(device, config.precision), augment)


def _save(path: Path, model, scores, optimizer, generators, config, amount, history) -> None:
    """Scores, momentum, BatchNorm buffers and generators after an epoch, as safetensors (nothing executes on
    load)."""
    import json

    import safetensors.torch


    tensors = {f"score.{n}": s.detach().cpu().contiguous() for n, s in scores.items()}
    names = {id(s): n for n, s in scores.items()}
    for p, st in optimizer.state.items():
        if st.get("momentum_buffer") is not None:
            tensors[f"momentum.{names[id(p)]}"] = st["momentum_buffer"].detach().cpu().contiguous()
    tensors |= {f"buffer.{n}": b.detach().cpu().contiguous() for n, b in model.named_buffers()
                if not n.endswith(".mask")}
    tensors["state.rng"], tensors["state.rng_attack"] = (g.get_state() for g in generators)
    info = {"config": asdict(config), "amount": amount, "history": history}
    write_bytes_atomic(path, safetensors.torch.save(tensors, metadata={"robprune-hydra": json.dumps(info)}))


def _restore(path: Path, model, scores, optimizer, generators, config, amount) -> tuple[int, list[dict]]:
    import json

    import safetensors

    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            info = json.loads((f.metadata() or {})["robprune-hydra"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # a damaged state file: say so, never start over silently
        raise ValueError(f"{path} is not a readable score-learning state ({type(err).__name__}: {err}); remove it "
                         "to start over") from None
    if info.get("config") != asdict(config) or info.get("amount") != amount:
        raise ValueError(f"{path} holds score learning with another configuration or amount; use another --out "
                         "or the same options")
    for n, s in scores.items():
        with torch.no_grad():
            s.copy_(tensors[f"score.{n}"])
        if f"momentum.{n}" in tensors:
            optimizer.state[s]["momentum_buffer"] = tensors[f"momentum.{n}"].to(s.device).clone()
    with torch.no_grad():
        for n, b in model.named_buffers():
            if f"buffer.{n}" in tensors:
                b.copy_(tensors[f"buffer.{n}"])
    generators[0].set_state(tensors["state.rng"])
    generators[1].set_state(tensors["state.rng_attack"])
    return len(info["history"]), list(info["history"])
