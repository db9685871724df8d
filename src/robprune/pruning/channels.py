"""Channel pruning: whole channels removed for real, the dependent layers shrunk through Torch-Pruning's graph.

Torch-Pruning (DepGraph, Fang et al. CVPR'23) traces the model once and
groups every layer whose channels are coupled (a conv, its BatchNorm, the next
conv's inputs; every conv and shortcut feeding one residual sum). Each group
loses ``round(amount * channels)`` channels, the lowest scores of a registered
channel criterion (``channel_criteria.py``); the classifier's outputs are never
touched. robprune's option-A ``PadShortcut`` is taught to it here (a custom
pruner that rewrites its channel slots), so the paper's ResNet-20/56 prune
correctly. The slim model keeps its module names; what a dense rebuild needs
to take the slim shapes (the shortcut slots; conv, BatchNorm and linear sizes
come from the weights) is ``slim.channel_structure(model)``, recorded in the
checkpoint, and ``reshape_to`` applies it on load.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from ..models.layers import PadShortcut
from .channel_criteria import CHANNEL_CRITERIA, ChannelGroup
from .masks import Masks


class _PadShortcutPruner(tp.pruner.BasePruningFunc):
    """Input and output channels of the option-A shortcut are independent: removing an output drops whatever
    input landed there; removing an input drops its slot."""

    TARGET_MODULES = PadShortcut

    def prune_out_channels(self, layer: PadShortcut, idxs: Sequence[int]) -> PadShortcut:
        slots, out = layer.layout()
        gone = {int(i) for i in idxs}
        new_position = {p: i for i, p in enumerate(p for p in range(out) if p not in gone)}
        layer.set_layout([new_position.get(s, -1) for s in slots], out - len(gone))
        return layer

    def prune_in_channels(self, layer: PadShortcut, idxs: Sequence[int]) -> PadShortcut:
        slots, out = layer.layout()
        gone = {int(i) for i in idxs}
        layer.set_layout([s for i, s in enumerate(slots) if i not in gone], out)
        return layer

    def get_out_channels(self, layer: PadShortcut) -> int:
        return layer.layout()[1]

    def get_in_channels(self, layer: PadShortcut) -> int:
        return len(layer.layout()[0])


@dataclass
class ChannelPruning:
    """What ``prune_channels`` did: per module, the original indices removed from its outputs and inputs."""

    removed: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    groups: list[dict] = field(default_factory=list)  # per group: root module, channels, removed
    params_before: int = 0
    params_after: int = 0


def _head(model: nn.Module) -> nn.Module | None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _channel_group(dg, group) -> ChannelGroup:
    """The group as the criterion sees it: producing filters and BatchNorm scales, rows aligned to the channels."""
    channels = len(group[0].idxs)
    filters, scales = [], []
    for item in group:
        dep, idxs, root = item.dep, item.idxs, item.root_idxs
        layer, fn = dep.target.module, dep.handler
        if any(r is None for r in root):
            continue
        rows = torch.as_tensor(root, dtype=torch.long)
        if fn in (tp.prune_conv_out_channels, tp.prune_linear_out_channels):
            w = layer.weight.detach()[list(idxs)].flatten(1).cpu()
            aligned = torch.zeros(channels, w.shape[1])
            aligned[rows] = w.float()
            filters.append(aligned)
        elif fn == tp.prune_batchnorm_out_channels and layer.weight is not None:
            aligned = torch.zeros(channels)
            aligned[rows] = layer.weight.detach()[list(idxs)].float().cpu()
            scales.append(aligned)
    return ChannelGroup(channels, filters, scales)


def dependency_graph(model: nn.Module, example_inputs: torch.Tensor):
    """Torch-Pruning's dependency graph of ``model`` (in eval mode), with robprune's option-A shortcut taught."""
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs,
                                                     customized_pruners={PadShortcut: _PadShortcutPruner()})
    except Exception as err:  # Torch-Pruning raises many kinds for graphs it cannot follow
        raise ValueError(f"Torch-Pruning cannot trace this model for channel pruning: {type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}; weight-level pruning "
                         "(--structure weight) works on any model") from None


def coupled_groups(dg, skip: Sequence[nn.Module]):
    """Every group of coupled channels rooted at a conv or linear layer, the ``skip`` layers left whole."""
    return dg.get_all_groups(ignored_layers=list(skip), root_module_types=[nn.Conv2d, nn.Linear])


def prune_channels(
    model: nn.Module,
    criterion: str,
    amount: float,
    example_inputs: torch.Tensor,
    seed: int = 0,
    masks: Mapping[str, torch.Tensor] | None = None,
    ignored: Sequence[nn.Module] = (),
    scores: Mapping[str, torch.Tensor] | None = None,
    scope: str = "layer",
) -> tuple[nn.Module, Masks, ChannelPruning]:
    """A slim copy of ``model`` with ``round(amount * channels)`` channels removed from every coupled group
    (``scope="layer"``), or that many of all groups' channels together (``scope="global"``: each group's scores
    divided by their mean, the lowest removed wherever they are, every group keeping at least one channel).

    Returns (slim model, the weight masks carried over to its shapes, a record
    of what was removed); ``model`` itself is never changed. Refused when a
    group would lose every channel or the model cannot be traced. The slim
    model is checked on ``example_inputs``: its logits must equal the
    original's with the removed channels zeroed where they are consumed (a
    mis-tracked graph fails here, not later). ``scores`` (one tensor per group, keyed by the group's root module
    name, as ``learn_channel_scores`` returns) replace the criterion's.
    """
    scorer = CHANNEL_CRITERIA.get(criterion)
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"channel amount must be in [0, 1), got {amount}: a layer keeps at least one channel")
    original = model
    model = copy.deepcopy(model)
    names = {m: n for n, m in model.named_modules()}
    head = _head(model)
    skip = [m for m in (head, *ignored) if m is not None]
    was_training = model.training
    model.eval()
    dg = dependency_graph(model, example_inputs)
    generator = torch.Generator().manual_seed(seed)
    if scope not in ("layer", "global"):
        raise ValueError(f"unknown channel pruning scope {scope!r}; choose layer or global")
    groups = list(coupled_groups(dg, skip))

    def score_of(group) -> torch.Tensor:
        root = group[0].dep.target.module
        ranked = scores[names[root]] if scores is not None else scorer(_channel_group(dg, group), generator)
        return ranked.detach().float().cpu()

    known = [score_of(g) for g in groups] if scope == "global" else [None] * len(groups)
    counts = (_global_counts(known, amount) if scope == "global"
              else [round(amount * len(g[0].idxs)) for g in groups])
    plans = []
    for group, score, k in zip(groups, known, counts):
        root, fn = group[0].dep.target.module, group[0].dep.handler
        channels = len(group[0].idxs)
        if k == 0:
            continue
        if k >= channels:
            raise ValueError(f"removing {amount:.0%} of the channels would leave {names.get(root, root)} with none "
                             f"of its {channels}; nothing was changed")
        order = torch.sort(score_of(group) if score is None else score, stable=True).indices
        plans.append((root, fn, channels, sorted(order[:k].tolist())))
    record = ChannelPruning(params_before=sum(p.numel() for p in model.parameters()))
    alive: dict[tuple[str, str], list[int]] = {}
    for root, fn, channels, idxs in plans:
        pg = dg.get_pruning_group(root, fn, idxs)
        for item in pg:
            layer, handler = item.dep.target.module, item.dep.handler
            if layer not in names:
                continue
            side = "out" if dg.is_out_channel_pruning_fn(handler) else "in"
            size = dg.get_out_channels(layer) if side == "out" else dg.get_in_channels(layer)
            current = alive.setdefault((names[layer], side), list(range(size)))
            gone = [current[i] for i in item.idxs]
            record.removed.setdefault(names[layer], {}).setdefault(side, []).extend(gone)
            alive[(names[layer], side)] = [c for i, c in enumerate(current) if i not in set(item.idxs)]
        record.groups.append({"root": names.get(root, ""), "channels": channels, "removed": len(idxs)})
        pg.prune()
    for sides in record.removed.values():
        for side in sides:
            sides[side] = sorted(set(sides[side]))
    record.params_after = sum(p.numel() for p in model.parameters())
    new_masks = _carry_masks(masks or {}, record.removed)
    check_forward(model, example_inputs)
    check_equivalent(original, model, record.removed, example_inputs)
    model.robprune_channel_pruned = True
    model.train(was_training)
    return model, new_masks, record


def _global_counts(scores: Sequence[torch.Tensor], amount: float) -> list[int]:
    """Channels to remove per group so that ``round(amount * all channels)`` go, lowest normalised score first
    (a group's scores over their mean absolute value), no group losing its last channel."""
    total = sum(len(score) for score in scores)
    entries = sorted((float(v) / max(float(score.abs().mean()), 1e-12), g, i)
                     for g, score in enumerate(scores) for i, v in enumerate(score))
    counts, left = [0] * len(scores), round(amount * total)
    for _, g, _ in entries:
        if left == 0:
            break
        if counts[g] < len(scores[g]) - 1:
            counts[g] += 1
            left -= 1
    return counts


def _carry_masks(masks: Mapping[str, torch.Tensor], removed: Mapping[str, Mapping[str, list[int]]]) -> Masks:
    """Weight masks of the dense shapes cut to the slim shapes (conv/linear weights: outputs dim 0, inputs dim 1)."""
    out = {}
    for name, mask in masks.items():
        module_name, _, param = name.rpartition(".")
        cut = removed.get(module_name, {})
        keep = mask
        for side, dim in (("out", 0), ("in", 1)):
            if side in cut and (param == "weight" or dim == 0) and keep.dim() > dim:
                kept = [i for i in range(keep.shape[dim]) if i not in set(cut[side])]
                keep = keep.index_select(dim, torch.as_tensor(kept, dtype=torch.long))
        out[name] = keep.clone()
    return out


def check_forward(model: nn.Module, example_inputs: torch.Tensor) -> None:
    """One forward pass; an error names the module it happened in (or the last one that ran before it)."""
    stack: list[str] = []
    last: list[str] = []

    def enter(mod, inputs, name):
        stack.append(name)

    def leave(mod, inputs, output, name):
        last[:] = [stack.pop()]

    hooks = []
    for n, m in model.named_modules():
        if n:
            hooks.append(m.register_forward_pre_hook(lambda mod, inp, n=n: enter(mod, inp, n)))
            hooks.append(m.register_forward_hook(lambda mod, inp, out, n=n: leave(mod, inp, out, n)))
    try:
        with torch.no_grad():
            model(example_inputs)
    except Exception as err:
        where = f"in module {stack[-1]!r}" if stack else f"after module {last[0]!r}" if last else "at its input"
        raise ValueError(f"channel pruning left the model inconsistent {where}: {type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}") from None
    finally:
        for h in hooks:
            h.remove()


def zeroed_logits(model: nn.Module, removed: Mapping[str, Mapping[str, list[int]]], x: torch.Tensor) -> torch.Tensor:
    """Logits of the *unpruned* ``model`` with every removed channel zeroed at the input of each layer that
    consumes it: what the slim network computes exactly, if the removal was consistent."""
    def zero(idxs):
        def hook(module, inputs):
            h = inputs[0].clone()
            h[:, idxs] = 0
            return (h, *inputs[1:])
        return hook

    hooks = [model.get_submodule(name).register_forward_pre_hook(zero(sides["in"]))
             for name, sides in removed.items() if sides.get("in")]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()


def check_equivalent(original: nn.Module, slim: nn.Module, removed: Mapping, x: torch.Tensor) -> None:
    expected = zeroed_logits(original, removed, x)
    with torch.no_grad():
        got = slim.eval()(x)
    scale = max(1.0, float(expected.abs().max()))
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * scale):
        raise ValueError("Torch-Pruning mis-tracked this model's channels: the slim network does not compute the "
                         "original with the removed channels zeroed (a channel-mixing operation outside a module?); "
                         "nothing was changed; weight-level pruning (--structure weight) works on any model")
