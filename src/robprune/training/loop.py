"""Training and fine-tuning with pruning masks, the high-magnitude regulariser and a training objective.

Loss = objective (CE, PGD-AT, TRADES or FGSM-RS) + lam * R(W) (paper Eq. 4);
SGD with momentum and weight decay; the masks are re-applied after every
optimiser step so pruned weights stay exactly zero. Optional autocast (bf16,
or fp16 with a gradient scaler on a GPU); masks, the penalty and the optimiser
state stay fp32. With an output folder, a checkpoint with the full training
state (weights, masks, momentum buffers, data-order RNG) is written atomically
after every epoch and ``resume=True`` continues from it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from ..attacks.pgd import pgd
from ..attacks.pgd_l2 import pgd_l2
from ..checkpoint import save_checkpoint
from ..data import ImageData, iterate_batches
from ..data.batches import balanced_subset
from ..evaluation.accuracy import predict
from ..io import write_text_atomic
from ..pruning.masks import Masks, apply_masks, compute_masks, mask_lists, prunable_parameters, sparsity_report
from ..pruning.regularizer import max_abs_weight, proximal_shrink, resolve_tau, weights_penalty
from . import distributed
from .config import TrainConfig
from .resume import momentum_state, restore
from .objectives import OBJECTIVES

DIVERGENCE_FACTOR = 1e3  # a loss this many times its first value (and above 1) is divergence, not noise
GUARD_IMAGES = 256  # fixed training images of the catastrophic-overfitting check
CLEAN_PROBE_EVERY = 10  # adversarial objectives: clean training accuracy measured on every 10th batch


class DivergenceError(RuntimeError):
    """The training loss stopped being finite or grew by orders of magnitude."""


class CatastrophicOverfitting(DivergenceError):
    """Robust accuracy of the guard batch collapsed during adversarial training."""


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """LR at optimiser step ``step`` (a pure function, so resuming needs no scheduler state)."""
    t = step / max(total_steps, 1)
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * t))
    if config.schedule == "multistep":
        return config.lr * 0.1 ** ((t >= 0.5) + (t >= 0.75))
    return config.lr


def gradual_amount(final: float, epoch: int, epochs: int) -> float:
    """Cubic sparsity ramp of Zhu & Gupta 2017, reaching ``final`` at half the epochs."""
    ramp = max(1, epochs // 2)
    frac = min(1.0, (epoch + 1) / ramp)
    return final * (1.0 - (1.0 - frac) ** 3)


def autocast_factory(device: torch.device, precision: str) -> Callable:
    """A context-manager factory for the forward passes of training (fp32 = none)."""
    if precision == "fp32":
        return nullcontext
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 training needs a CUDA GPU (with a gradient scaler); use --precision bf16 on the CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def subset_data(data: ImageData, config: TrainConfig) -> ImageData:
    """The fixed, class-balanced, seeded subsets that ``n_train`` / ``n_test`` ask for."""
    if config.n_train is not None:
        idx = balanced_subset(data.y_train, config.n_train, config.seed)
        data = replace(data, x_train=data.x_train[idx], y_train=data.y_train[idx])
    if config.n_test is not None:
        idx = balanced_subset(data.y_test, config.n_test, config.seed)
        data = replace(data, x_test=data.x_test[idx], y_test=data.y_test[idx])
    if len(data.x_train) == 0 or len(data.x_test) == 0:
        raise ValueError(f"{data.name} has {len(data.x_train)} training and {len(data.x_test)} test images; "
                         "training needs both")
    return data


def _guard_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf") -> float:
    """PGD-10 accuracy (step 2.5 * eps / 10, fixed random start) on the guard batch, eval mode, in the training
    attack's norm."""
    if norm == "l2":
        x_adv = pgd_l2(model, x, y, eps, 10, seed=0)
    else:  # the weights change every epoch: nothing to cache
        x_adv = pgd(model, x, y, eps, 10, seed=0, exact_model=True)
    return float((predict(model, x_adv, len(x)).to(y.device) == y).float().mean())


def train(
    model: nn.Module,
    data: ImageData,
    config: TrainConfig,
    out_dir: str | Path | None = None,
    masks: Masks | None = None,
    resume: bool = False,
    progress: Callable[[dict], None] | None = None,
    meta: dict | None = None,
    channels_last: bool = True,
) -> dict:
    """Train ``model`` in place on ``data.x_train``; returns history, masks and the resolved tau.

    ``masks`` are existing masks to keep (fine-tuning a pruned model); the
    config's pruning method adds to them. ``progress`` receives a dict per
    step (``kind="step"``) and per epoch (``kind="epoch"``, the metrics).
    ``meta["identity"]`` (data, architecture, init) is stored with the
    checkpoint and must match on resume. In a torch.distributed run (see
    ``training.distributed``) every rank takes its slice of each global batch
    and only rank 0 writes.
    """
    config.validate()
    device = next(model.parameters()).device
    data = subset_data(data, config)
    names = {p: n for n, p in model.named_parameters()}
    masks = {k: v.to(device) for k, v in (masks or {}).items()}
    dist = distributed.context(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    attack_generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    augment = data.augment if config.augment == "auto" else config.augment
    tau = resolve_tau(model, config.tau, config.keep_ends) if config.lam > 0 else None
    autocast = autocast_factory(device, config.precision)
    scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None
    objective = OBJECTIVES.get(config.adv)
    adversarial = OBJECTIVES.info(config.adv)["adversarial"]
    proximal = config.penalty_mode == "proximal" and config.lam > 0
    history: list[dict] = []
    start_epoch = 0
    out = Path(out_dir) if out_dir is not None else None
    last = out / "last.safetensors" if out is not None else None
    best = out / "best.safetensors" if out is not None else None
    meta = dict(meta or {})

    if resume and last is not None and last.is_file():
        start_epoch, tau, history, masks = restore(last, model, optimizer, (generator, attack_generator), config,
                                                   names, device, meta.get("identity"))

    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    x_train = data.x_train.to(device)
    y_train = data.y_train.to(device)
    guard_idx = balanced_subset(data.y_train, min(GUARD_IMAGES, len(data.y_train)), config.seed).to(device)
    x_guard, y_guard = x_train[guard_idx].float().div(255.0), y_train[guard_idx]
    batch = config.batch_size
    dist.check_batch(batch)
    steps_per_epoch = len(x_train) // batch if len(x_train) >= batch else 1
    total_steps = steps_per_epoch * config.epochs
    train_model = dist.wrap(model)
    reference_loss = None
    guard_best = max((h.get("guard_pgd_acc", -1.0) for h in history), default=-1.0)
    penalty_weights = list(prunable_parameters(model, config.keep_ends).values())  # the same tensors every step
    for epoch in range(start_epoch, config.epochs):
        if config.method is not None and config.amount > 0 and (
                epoch == 0 or config.prune_schedule == "gradual"):
            amount = config.amount if config.prune_schedule == "oneshot" else \
                gradual_amount(config.amount, epoch, config.epochs)
            masks = compute_masks(model, config.method, amount, config.scope, config.keep_ends,
                                  seed=config.seed, previous=masks or None)
            dist.check_equal(masks, "pruning masks")
        apply_masks(model, masks)
        kept = mask_lists(model, masks)  # re-applied after every step in one fused call
        model.train()
        t0 = time.perf_counter()
        sums = {"loss": 0.0, "penalty": 0.0, "correct": 0, "seen": 0, "adv_correct": 0, "probe_correct": 0,
                "probe_seen": 0}
        batches = iterate_batches(x_train, y_train, batch, generator, augment, data.crop_padding)
        for i, (x, y) in enumerate(batches):
            x, y = dist.shard(x, y)
            step = epoch * steps_per_epoch + i
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step, total_steps)
            x = x.contiguous(memory_format=memory_format)
            outcome = objective(train_model, x, y, config, attack_generator, autocast)
            penalty = weights_penalty(penalty_weights, tau, config.p) if tau is not None and not proximal else None
            total = outcome.loss if penalty is None else outcome.loss + config.lam * penalty
            value = total.item()
            reference_loss = reference_loss if reference_loss is not None else max(abs(value), 1.0)
            if not math.isfinite(value) or value > DIVERGENCE_FACTOR * reference_loss:
                kept = f"; the last good checkpoint is {last}" if last is not None and last.is_file() else ""
                raise DivergenceError(f"loss became {value:.4g} at epoch {epoch + 1}, step {i + 1} (it started at "
                                      f"{reference_loss:.4g}){kept}; lower the learning rate, the momentum or lam")
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(total).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                total.backward()
                optimizer.step()
            if proximal:
                proximal_shrink(model, tau, optimizer.param_groups[0]["lr"] * config.lam, config.keep_ends)
            if kept[0]:
                with torch.no_grad():
                    torch._foreach_mul_(kept[0], kept[1])
            _count(sums, outcome, x, y, model, i)
            sums["loss"] += outcome.loss.item() * len(y)
            sums["penalty"] += 0.0 if penalty is None else penalty.item() * len(y)
            if progress is not None and dist.rank == 0:
                progress({"kind": "step", "epoch": epoch + 1, "epochs": config.epochs, "step": i + 1,
                          "steps": steps_per_epoch, "loss": value, "images": len(y) * dist.world})
        seconds = time.perf_counter() - t0
        sums = dist.all_reduce_sums(sums)
        test_acc = float((predict(model, data.x_test) == data.y_test).float().mean())
        seen = max(sums["seen"], 1)
        metrics = {"epoch": epoch + 1, "train_loss": sums["loss"] / seen,
                   "train_acc": (sums["correct"] if not adversarial else sums["probe_correct"])
                   / max(sums["seen"] if not adversarial else sums["probe_seen"], 1),
                   "penalty": sums["penalty"] / seen, "test_acc": test_acc,
                   "lr_end": optimizer.param_groups[0]["lr"],
                   "sparsity": sparsity_report(model, config.keep_ends)["sparsity"],
                   "max_abs_weight": max_abs_weight(model, config.keep_ends),
                   "seconds": seconds, "images_per_s": sums["seen"] / max(seconds, 1e-9)}
        if adversarial:
            metrics["train_adv_acc"] = sums["adv_correct"] / seen
        state_meta = {**meta, "config": asdict(config), "epoch": epoch + 1, "tau_resolved": tau}
        collapse = None
        if adversarial and config.guard:
            metrics["guard_pgd_acc"] = acc = _guard_accuracy(model, x_guard, y_guard, config.adv_eps, config.adv_norm)
            if acc > guard_best:
                guard_best = acc
                if best is not None and dist.rank == 0:
                    save_checkpoint(best, model, masks, {**state_meta, "history": history + [metrics]})
            elif guard_best - acc >= 0.1 and acc < 0.5 * guard_best:
                collapse = (f"robust accuracy of the {len(y_guard)} guard images under PGD-10 at "
                            f"{config.adv_eps * 255:g}/255 collapsed from {100 * guard_best:.1f}% to "
                            f"{100 * acc:.1f}% at epoch {epoch + 1}: catastrophic overfitting of "
                            f"{config.adv} training")
        history.append(metrics)
        if out is not None and dist.rank == 0:
            state = {"rng": generator.get_state(), "rng_attack": attack_generator.get_state(),
                     **momentum_state(optimizer, names)}
            save_checkpoint(last, model, masks, {**state_meta, "history": history}, state)
            write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
        if progress is not None and dist.rank == 0:
            progress({"kind": "epoch", **metrics})
        if collapse is not None:
            kept = f"; the best checkpoint (epoch of the best guard accuracy) is {best}" if best is not None else ""
            raise CatastrophicOverfitting(f"{collapse}{kept}. Use a smaller --adv-step-size, --adv pgd, or fewer "
                                          "epochs")
    return {"history": history, "masks": masks, "tau_resolved": tau, "config": asdict(config)}


def _count(sums: dict, outcome, x: torch.Tensor, y: torch.Tensor, model: nn.Module, i: int) -> None:
    """Training accuracies: clean (from the objective, or a probe on every 10th batch) and adversarial."""
    sums["seen"] += len(y)
    if outcome.logits is not None:
        correct = int((outcome.logits.argmax(1) == y).sum())
        sums["correct"] += correct
        sums["probe_correct"] += correct
        sums["probe_seen"] += len(y)
    elif i % CLEAN_PROBE_EVERY == 0:
        sums["probe_correct"] += int((predict(model, x, len(x)).to(y.device) == y).sum())
        sums["probe_seen"] += len(y)
        model.train()
    if outcome.adv_logits is not None:
        sums["adv_correct"] += int((outcome.adv_logits.argmax(1) == y).sum())
