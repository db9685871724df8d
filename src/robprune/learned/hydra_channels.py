"""HYDRA at channel level: one importance score per channel of every coupled group, learned under the (robust)
training objective with the weights frozen; then the lowest-scoring channels are removed for real.

The scores start from the groups' L1 filter norms, divided by each group's largest (HYDRA's scaled start at
channel level). The forward pass multiplies every removed-to-be channel by zero where it is consumed (the input
of each conv, linear or shortcut reading the group: exactly what removal computes), keeping the
``channels - round(amount * channels)`` highest scores of each group; the mask is a step function of the
scores, so its gradient is passed straight through. Only the scores are trained (SGD, cosine learning rate,
momentum, the config's objective: ce, pgd, trades or fgsm). As in ``hydra.py`` the model is in train mode while
scores are learned and every weight, buffer and flag is restored afterwards. Given a folder, the state is saved
after every epoch and a stopped run resumes from it (the same file format and checks as ``hydra.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..data import iterate_batches
from ..evaluation.accuracy import predict
from ..models.layers import PadShortcut
from ..pruning.channels import _channel_group, _head, coupled_groups, dependency_graph
from ..training.loop import learning_rate, subset_data
from .hydra import STATE_FILE, _restore, _save, score_learning


def _consumers(dg, group) -> list[tuple[nn.Module, list[int], list[int]]]:
    """(module, its input indices, the group channel of each) for every conv, linear or shortcut that reads the
    group (a BatchNorm on the group's own channels is not a reader)."""
    out = []
    for item in group:
        handler, module = item.dep.handler, item.dep.target.module
        if (dg.is_in_channel_pruning_fn(handler) and isinstance(module, (nn.Conv2d, nn.Linear, PadShortcut))
                and not any(r is None for r in item.root_idxs)):
            out.append((module, list(item.idxs), list(item.root_idxs)))
    return out


def learn_channel_scores(model: nn.Module, data, config, amount: float, example_inputs: torch.Tensor,
                         progress: Callable[[dict], None] | None = None, out_dir=None,
                         resume: bool = False) -> tuple[dict[str, torch.Tensor], list]:
    """({root module name: learned score per channel}, one metrics dict per epoch); ``model`` comes back as it
    went in. Give the scores to ``prune_channels(model, "l1", amount, x, scores=...)``.

    ``out_dir``: the scores, momentum, BatchNorm buffers and generators are saved there after every epoch
    (safetensors, as weight-level HYDRA); with ``resume`` a run continues from them, bit for bit."""

    if not 0.0 <= amount < 1.0:
        raise ValueError(f"channel amount must be in [0, 1), got {amount}")
    config.validate()
    device = next(model.parameters()).device
    names = {m: n for n, m in model.named_modules()}
    was_training = model.training
    model.eval()
    dg = dependency_graph(model, example_inputs.to(device))
    groups = []
    for group in coupled_groups(dg, [m for m in (_head(model),) if m is not None]):
        channels = len(group[0].idxs)
        keep = channels - round(amount * channels)
        if keep <= 0:
            raise ValueError(f"removing {amount:.0%} of the channels would leave {names[group[0].dep.target.module]}"
                             f" with none of its {channels}")
        l1 = sum(w.abs().sum(1) for w in _channel_group(dg, group).filters)
        start = (l1 / l1.max().clamp_min(1e-12)).to(device)
        groups.append((names[group[0].dep.target.module], keep, nn.Parameter(start), _consumers(dg, group)))
    scores = {name: s for name, _, s, _ in groups}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    gates: dict[nn.Module, list] = {}
    for _, keep, s, consumers in groups:
        for module, idxs, roots in consumers:
            gates.setdefault(module, []).append((keep, s, torch.as_tensor(idxs, device=device),
                                                 torch.as_tensor(roots, device=device)))

    def gate(module, inputs):
        x = inputs[0]
        factor = torch.ones(x.shape[1], device=x.device, dtype=x.dtype)
        for keep, s, idxs, roots in gates[module]:
            mask = torch.zeros_like(s)
            mask[torch.topk(s.detach(), keep).indices] = 1.0
            factor = factor.index_put((idxs,), (mask + s - s.detach())[roots].to(x.dtype))  # straight through
        return (x * factor.view(1, -1, *([1] * (x.dim() - 2))), *inputs[1:])

    hooks = [m.register_forward_pre_hook(gate) for m in gates]
    history = []
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        data = subset_data(data, config)
        objective, optimizer, generator, attack_generator, autocast, augment = score_learning(scores, config, data,
                                                                                              device)
        state_path = Path(out_dir) / STATE_FILE if out_dir is not None else None
        start = 0
        if resume and state_path is not None and state_path.is_file():
            start, history = _restore(state_path, model, scores, optimizer, (generator, attack_generator), config,
                                      amount)
        x_train, y_train = data.x_train.to(device), data.y_train.to(device)
        steps = max(1, len(x_train) // config.batch_size)
        for epoch in range(start, config.epochs):
            model.train()
            loss_sum, seen = 0.0, 0
            for i, (x, y) in enumerate(iterate_batches(x_train, y_train, config.batch_size, generator, augment,
                                                       data.crop_padding)):
                for g in optimizer.param_groups:
                    g["lr"] = learning_rate(config, epoch * steps + i, steps * config.epochs)
                loss = objective(model, x, y, config, attack_generator, autocast).loss
                if not math.isfinite(loss.item()):
                    raise RuntimeError(f"the channel-score loss became {loss.item()} at epoch {epoch + 1}; lower --lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum, seen = loss_sum + loss.item() * len(y), seen + len(y)
            metrics = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                       "test_acc": float((predict(model, data.x_test) == data.y_test).float().mean())}
            history.append(metrics)
            if state_path is not None:
                _save(state_path, model, scores, optimizer, (generator, attack_generator), config, amount, history)
            if progress is not None:
                progress({"kind": "note", "text": f"  channel scores epoch {epoch + 1}: loss "
                                                  f"{metrics['train_loss']:.4f}  test (masked, frozen weights) "
                                                  f"{100 * metrics['test_acc']:.2f}%"})
    finally:
        for h in hooks:
            h.remove()
        for n, p in model.named_parameters():
            p.requires_grad_(flags.get(n, True))
        with torch.no_grad():
            for n, b in model.named_buffers():
                b.copy_(buffers[n])
        model.train(was_training)
    return {name: s.detach().cpu() for name, s in scores.items()}, history
