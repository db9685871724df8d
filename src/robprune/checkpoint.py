"""Checkpoints as safetensors files: weights, masks and JSON metadata; loading never unpickles.

Layout: tensors ``model.<name>`` (the state_dict), ``mask.<name>`` (bool
masks) and ``state.<name>`` (extra training state such as momentum buffers);
the metadata key ``robprune`` holds a JSON object with at least ``arch``,
``num_classes`` and ``in_channels``.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from . import __version__
from .io import write_bytes_atomic
from .models import create_model
from .pruning import Masks, check_masks

FORMAT = 1
MAX_HEADER_BYTES = 16 * 1024 * 1024  # a header (tensor index + metadata) larger than this is refused
# Normalisation of the community pytorch_resnet_cifar10 checkpoints.
COMMUNITY_MEAN = (0.485, 0.456, 0.406)
COMMUNITY_STD = (0.229, 0.224, 0.225)


def model_spec(model: nn.Module) -> dict:
    """Architecture name and shape of a model built by :func:`create_model`."""
    spec = getattr(model, "robprune_spec", None)
    if spec is None:
        raise ValueError("model was not built by robprune.create_model; its architecture is unknown")
    return dict(spec)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    masks: Mapping[str, torch.Tensor] | None = None,
    meta: Mapping | None = None,
    state: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write model weights, masks, optional extra tensors and JSON metadata atomically."""
    if masks:
        check_masks(model, masks)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors |= {f"mask.{k}": m.detach().cpu().contiguous() for k, m in (masks or {}).items()}
    tensors |= {f"state.{k}": t.detach().cpu().contiguous() for k, t in (state or {}).items()}
    info = {**dict(meta or {}), **model_spec(model), "format": FORMAT, "robprune_version": __version__}
    data = safetensors.torch.save(tensors, metadata={"robprune": json.dumps(info)})
    return write_bytes_atomic(path, data)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """All tensors and the metadata of a robprune safetensors file, after checking its header."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise ValueError(f"{path} is not a safetensors checkpoint (only {size} bytes)")
    (header_len,) = struct.unpack("<Q", head)
    if header_len > min(MAX_HEADER_BYTES, size - 8):
        raise ValueError(f"{path} is corrupt or not a safetensors file: header claims {header_len} bytes "
                         f"in a file of {size} bytes")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            raw_meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is corrupt or not a safetensors file: {err}") from None
    if "robprune" not in raw_meta:
        raise ValueError(f"{path} is a safetensors file but not a robprune checkpoint (no metadata)")
    try:
        meta = json.loads(raw_meta["robprune"])
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} has unreadable metadata: {err}") from None
    for key in ("arch", "num_classes", "in_channels"):
        if key not in meta:
            raise ValueError(f"{path} metadata lacks {key!r}")
    return tensors, meta


def _prefixed(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_checkpoint(
    path: str | os.PathLike, expect_arch: str | None = None
) -> tuple[nn.Module, Masks, dict]:
    """(model, masks, meta) from a robprune checkpoint; strict: every weight must match."""
    tensors, meta = read_checkpoint(path)
    if expect_arch is not None and meta["arch"] != expect_arch:
        raise ValueError(f"{path} holds a {meta['arch']} model, not {expect_arch}")
    model = create_model(meta["arch"], num_classes=meta["num_classes"], in_channels=meta["in_channels"])
    state_dict = _prefixed(tensors, "model.")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise ValueError(f"{path} does not match a {meta['arch']} with {meta['num_classes']} classes: "
                         f"{' '.join(line.strip() for line in first[:3])}") from None
    masks = _prefixed(tensors, "mask.")
    check_masks(model, masks)
    return model, masks, meta


def import_checkpoint(
    path: str | os.PathLike,
    arch: str,
    num_classes: int = 10,
    mean=COMMUNITY_MEAN,
    std=COMMUNITY_STD,
) -> nn.Module:
    """Read a pytorch_resnet_cifar10 checkpoint (``torch.load(weights_only=True)``) into our model.

    ``module.`` prefixes are stripped; the model normalises with the
    checkpoint's own mean/std so it still takes inputs in [0, 1].
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for bad or unsafe pickles
        raise ValueError(f"cannot read {path} as a weights-only torch checkpoint: "
                         f"{str(err).strip().splitlines()[0]}") from None
    state_dict = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path} holds no state_dict of tensors")
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    model = create_model(arch, num_classes=num_classes, mean=mean, std=std)
    for name, buf in model.state_dict().items():
        if name.endswith("num_batches_tracked") and name not in state_dict:
            state_dict[name] = torch.zeros_like(buf)
        if name.startswith("normalize."):
            state_dict[name] = buf
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit {arch}: {str(err).strip().splitlines()[0]} "
                         f"{str(err).strip().splitlines()[1:2]}") from None
    return model
