"""Export to and import from plain torch files, for tools outside robprune.

``export``: a dict that ``torch.load(path, weights_only=True)`` reads, with
``state_dict`` (masks folded into the weights), ``normalization`` (the mean
and std the model expects on [0, 1] inputs), ``sparsity`` and robprune's
metadata. Formats: ``torch`` (our state_dict, normalisation buffers included)
and ``apb`` (the key names of the Adversarial Pruning Benchmark's base
ResNet-18 and VGG-16-bn, kuangliu-style, without the normalisation layer,
whose statistics travel in ``normalization``). ``import`` reads either back,
the community pytorch_resnet_cifar10 files (``community``) and RobustBench's
model files (``robustbench``, see :mod:`robprune.robustbench`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping

import torch
from torch import nn

from .pruning.slim import channel_structure, reshape_to
from .checkpoint import (COMMUNITY_MEAN, COMMUNITY_STD, import_checkpoint, read_torch_state_dict, refuse_nonfinite,
                         summarise_key_mismatch)
from .io import write_bytes_atomic
from .models import create_model
from .pruning.masks import Masks, prunable_parameters, sparsity_report
from .robustbench import robustbench_state

FORMATS = ("torch", "apb", "community", "robustbench")
APB_ARCHS = ("resnet18", "vgg16_bn")  # the benchmark's base models; our key names are theirs


def _folded_state(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    for name, mask in masks.items():
        state[name] = state[name] * mask.cpu()
    return state


def export_model(model: nn.Module, masks: Masks, meta: dict, fmt: str, path: str | os.PathLike) -> dict:
    """Write ``model`` in ``fmt`` (torch or apb) to ``path`` atomically; returns the payload."""
    if fmt not in ("torch", "apb"):
        raise ValueError(f"unknown export format {fmt!r}; choose torch or apb")
    arch = meta.get("arch")
    if fmt == "apb" and arch not in APB_ARCHS:
        raise ValueError(f"the apb format knows {', '.join(APB_ARCHS)}; this checkpoint holds {arch}")
    state = _folded_state(model, masks)
    norm = getattr(model, "normalize", None)
    normalization = None
    if norm is not None:
        normalization = {"mean": norm.mean.flatten().tolist(), "std": norm.std.flatten().tolist()}
    if fmt == "apb":
        state = {k: v for k, v in state.items() if not k.startswith("normalize.")}
    payload = {"state_dict": state, "normalization": normalization, "format": fmt, "arch": arch,
               "sparsity": sparsity_report(model)["sparsity"] if prunable_parameters(model) else 0.0,
               "robprune": {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool)) or v is None}}
    structure = channel_structure(model)
    if structure is not None:  # a channel-pruned model: shapes are the tensors'; option-A shortcut slots are here
        payload["structure"] = structure
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_bytes_atomic(path, buf.getvalue())
    return payload


def import_model(path: str | os.PathLike, arch: str, fmt: str = "community", num_classes: int = 10,
                 mean=None, std=None) -> tuple[nn.Module, Masks | None]:
    """(model, masks) from a foreign torch file; masks are the zero pattern of a pruned (sparse) file.

    ``mean``/``std`` replace the normalisation of the formats that do not carry one for sure (community,
    robustbench); the torch and apb formats carry theirs."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown import format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    if mean is not None and fmt not in ("community", "robustbench"):
        raise ValueError(f"the {fmt} format carries its normalisation; mean and std apply to community and "
                         "robustbench files")
    if fmt == "community":
        given = {} if mean is None else {"mean": tuple(mean), "std": tuple(std)}
        return import_checkpoint(path, arch, num_classes=num_classes, **given), None
    if fmt == "robustbench":
        return _import_robustbench(path, arch, num_classes, mean, std)
    if fmt == "apb" and arch not in APB_ARCHS:
        raise ValueError(f"the apb format knows {', '.join(APB_ARCHS)}, not {arch}")
    state, obj = read_torch_state_dict(path)
    refuse_nonfinite(path, state)
    norm = obj.get("normalization")
    mean, std = (norm["mean"], norm["std"]) if isinstance(norm, dict) and "mean" in norm else \
        ((None, None) if fmt == "torch" else (COMMUNITY_MEAN, COMMUNITY_STD))
    model = create_model(arch, num_classes=num_classes, mean=mean, std=std)
    if isinstance(obj.get("structure"), dict):  # a channel-pruned export
        reshape_to(model, {k: v.shape for k, v in state.items()}, obj["structure"])
    return _load_into(model, state, path, arch, fmt)


def _load_into(model: nn.Module, state: dict, path, arch: str, fmt: str) -> tuple[nn.Module, Masks | None]:
    """``state`` loaded strictly into ``model`` (its normalisation and BatchNorm counters where the file has
    none), with the masks of the file's zeros (None when nothing is zero)."""
    for name, buf in model.state_dict().items():
        if name not in state and (name.startswith("normalize.") or name.endswith("num_batches_tracked")):
            state[name] = buf
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit {arch} ({fmt} layout): {summarise_key_mismatch(err)}") from None
    masks = {n: w.detach() != 0 for n, w in prunable_parameters(model).items()}
    return model, (masks if any(not m.all() for m in masks.values()) else None)


def _import_robustbench(path, arch: str, num_classes: int, mean, std) -> tuple[nn.Module, Masks | None]:
    state, _ = read_torch_state_dict(path)
    refuse_nonfinite(path, state)
    state, file_mean, file_std = robustbench_state(state, arch)
    model = create_model(arch, num_classes=num_classes, mean=file_mean if mean is None else tuple(mean),
                         std=file_std if std is None else tuple(std))
    return _load_into(model, state, path, arch, "robustbench")
