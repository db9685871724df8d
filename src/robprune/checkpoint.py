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
from .models import create_model, is_factory_spec
from .pruning.slim import channel_structure, reshape_to
from .pruning.masks import Masks, check_masks

FORMAT = 1
MAX_HEADER_BYTES = 16 * 1024 * 1024  # a header (tensor index + metadata) larger than this is refused
# Normalisation of the community pytorch_resnet_cifar10 checkpoints.
COMMUNITY_MEAN = (0.485, 0.456, 0.406)
COMMUNITY_STD = (0.229, 0.224, 0.225)


def model_spec(model: nn.Module) -> dict:
    """How to rebuild ``model``: registry name or ``package.module:factory``, classes, channels, kwargs, normalisation.

    A module not built by :func:`create_model` is saved too; its ``arch`` is
    then ``None`` and loading needs the module (``load_checkpoint(path, model=...)``).
    """
    spec = getattr(model, "robprune_spec", None)
    if spec is not None:
        return dict(spec)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return {"arch": None, "class": type(model).__name__,
            "num_classes": last[-1].out_features if last else None,
            "in_channels": first.in_channels if first is not None else None}


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
    structure = channel_structure(model)
    if structure is not None:
        info["structure"] = structure
    else:
        info.pop("structure", None)
    data = safetensors.torch.save(tensors, metadata={"robprune": json.dumps(info)})
    return write_bytes_atomic(path, data)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """All tensors and the metadata of a robprune safetensors file, after checking its header."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) < 8:
        raise ValueError(f"{path} is not a safetensors checkpoint (only {size} bytes)")
    # A safetensors header is JSON right after its 8-byte length; a torch file is a zip or a pickle.
    if head[8:9] != b"{" and (head[:4] == b"PK\x03\x04" or (head[0] == 0x80 and head[1] in (2, 3, 4, 5))):
        raise ValueError(f"{path} is a torch checkpoint (zip or pickle), not a robprune safetensors file; convert it "
                         f"once with 'robprune import {path} --arch ARCH --out FILE.safetensors'")
    (header_len,) = struct.unpack("<Q", head[:8])
    if header_len > min(MAX_HEADER_BYTES, size - 8):
        raise ValueError(f"{path} is corrupt or not a safetensors file: header claims {header_len} bytes "
                         f"in a file of {size} bytes")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            raw_meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises several types for a damaged header or data
        raise ValueError(f"{path} is corrupt or not a safetensors file: {type(err).__name__}: {err}") from None
    if "robprune" not in raw_meta:
        raise ValueError(f"{path} is a safetensors file but not a robprune checkpoint (no metadata)")
    try:
        meta = json.loads(raw_meta["robprune"])
    except (json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{path} has unreadable metadata: {type(err).__name__}: {err}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} has metadata that is not a JSON object")
    for key in ("arch", "num_classes", "in_channels"):
        if key not in meta:
            raise ValueError(f"{path} metadata lacks {key!r}")
    return tensors, meta


def _prefixed(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_checkpoint(
    path: str | os.PathLike, expect_arch: str | None = None, model: nn.Module | None = None
) -> tuple[nn.Module, Masks, dict]:
    """(model, masks, meta) from a robprune checkpoint; strict: every weight must match.

    The model is rebuilt from the recorded architecture. A checkpoint of a
    user's ``package.module:factory`` is rebuilt only when ``expect_arch``
    names that same factory: loading a file never imports code the caller did
    not ask for. ``model`` loads the weights into a module the caller built.
    """
    tensors, meta = read_checkpoint(path)
    arch = meta["arch"]
    if expect_arch is not None and arch != expect_arch:
        raise ValueError(f"{path} holds a {arch} model, not {expect_arch}")
    structure = _structure(path, meta)
    if model is None:
        if arch is None:
            raise ValueError(f"{path} holds a {meta.get('class', 'custom')} module not built by create_model; "
                             "load it with load_checkpoint(path, model=your_module)")
        if is_factory_spec(arch) and expect_arch != arch:
            raise ValueError(f"{path} was built by the model factory {arch!r}; pass --arch {arch} (library: "
                             f"expect_arch={arch!r}) to allow importing that module")
        norm = meta.get("normalization") or {}
        kwargs = meta.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise ValueError(f"{path} metadata has kwargs that are not a JSON object")
        # The recorded statistics rebuild the normalisation with its channel count (a 1-channel model's buffers
        # differ in shape from the 3-channel defaults); the weights then overwrite the values anyway.
        stats = {"mean": norm.get("mean"), "std": norm.get("std")} if norm and norm.get("mean") is not None else {}
        build = dict(name=arch, num_classes=meta["num_classes"], in_channels=meta["in_channels"], **stats, **kwargs)
        _check_size_before_building(path, build, tensors, structure)
        if structure and not is_factory_spec(arch):
            # a channel-pruned model: built on the meta device and given its slim shapes before any allocation
            with torch.device("meta"):
                model = reshape_to(create_model(**build), _shapes(tensors), structure)
            model = model.to_empty(device="cpu")
            model.robprune_spec = {**model.robprune_spec, "normalization": meta.get("normalization")}
        else:
            model = create_model(**build)
            if structure:
                reshape_to(model, _shapes(tensors), structure)  # a factory's model, built dense
    elif structure:
        reshape_to(model, _shapes(tensors), structure)  # a model the caller built
    _check_tensor_shapes(path, model, tensors)
    state_dict = _prefixed(tensors, "model.")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not match a {arch} with {meta['num_classes']} classes: "
                         f"{summarise_key_mismatch(err)}") from None
    masks = _prefixed(tensors, "mask.")
    check_masks(model, masks)
    return model, masks, meta


def _structure(path, meta: Mapping) -> dict | None:
    structure = meta.get("structure")
    if structure is None:
        return None
    if not isinstance(structure, dict) or not isinstance(structure.get("shortcuts", {}), dict):
        raise ValueError(f"{path} metadata has a channel structure that is not a JSON object")
    return structure


def _shapes(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Size]:
    return {k[len("model."):]: v.shape for k, v in tensors.items() if k.startswith("model.")}


def _check_size_before_building(path, build: dict, tensors: Mapping[str, torch.Tensor],
                                structure: dict | None = None) -> None:
    """Metadata can ask an architecture for any width: build it on the meta device first (no memory) and refuse
    a model whose state holds more values than the file carries, before anything is allocated."""
    try:
        with torch.device("meta"):
            probe = create_model(**build)
            if structure:
                reshape_to(probe, _shapes(tensors), structure)
    except ValueError:
        raise
    except Exception as err:  # kwargs the architecture does not take, or cannot build with
        if is_factory_spec(build["name"]):
            return  # a user's factory (imported because the caller named it) may not build on the meta device
        raise ValueError(f"{path} metadata asks for a {build['name']} that cannot be built: "
                         f"{type(err).__name__}: {err}") from None
    wanted = sum(t.numel() for t in probe.state_dict().values())
    carried = sum(t.numel() for name, t in tensors.items() if name.startswith("model."))
    if wanted > carried:
        raise ValueError(f"{path} metadata describes a {build['name']} of {wanted:,} values but the file carries "
                         f"{carried:,}: its metadata and weights disagree")


def _check_tensor_shapes(path, model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Refuse weights of the wrong dtype class (an integer where the model has floats) or non-finite weights."""
    own = model.state_dict()
    for name, value in _prefixed(tensors, "model.").items():
        ref = own.get(name)
        if ref is None:
            continue
        if ref.is_floating_point() != value.is_floating_point():
            raise ValueError(f"{path}: tensor model.{name} has dtype {value.dtype}, the model expects {ref.dtype}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"{path}: tensor model.{name} holds NaN or infinite values")
        if name.endswith("normalize.std") and value.is_floating_point() and (value <= 0).any():
            raise ValueError(f"{path}: the input normalisation has a std <= 0")


def summarise_key_mismatch(err: Exception) -> str:
    """One short line from a load_state_dict error: counts and the first few keys, never thousands of characters."""
    text = str(err)
    parts = []
    for label in ("Missing key(s)", "Unexpected key(s)"):
        i = text.find(label)
        if i < 0:
            continue
        segment = text[i:].split(":", 1)[1].split(".\n", 1)[0].split(". Unexpected", 1)[0]
        keys = [k.strip().strip('"') for k in segment.split(",") if k.strip()]
        shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
        parts.append(f"{len(keys)} {label.split()[0].lower()} keys ({shown})")
    if "size mismatch" in text:
        first = text[text.index("size mismatch"):].splitlines()[0]
        count = text.count("size mismatch")
        parts.append(f"{count} size mismatch(es), first: {first[:200]}")
    return "; ".join(parts) if parts else text.strip().splitlines()[0][:300]


def read_torch_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict without ``module.`` prefixes, the whole object) of a torch file read with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for bad or unsafe pickles
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot read {path} as a weights-only torch checkpoint: {first}") from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state_dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in state.items()}, obj if isinstance(obj, dict) else {}


def refuse_nonfinite(path, state_dict: Mapping[str, torch.Tensor]) -> None:
    """A foreign file with NaN or infinite weights is refused on import (robprune would refuse it on load)."""
    for name, value in state_dict.items():
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"{path}: tensor {name} holds NaN or infinite values; refusing to import it")


def import_checkpoint(
    path: str | os.PathLike,
    arch: str,
    num_classes: int = 10,
    mean=COMMUNITY_MEAN,
    std=COMMUNITY_STD,
) -> nn.Module:
    """Read a pytorch_resnet_cifar10 checkpoint (``torch.load(weights_only=True)``) into our model.

    ``module.`` prefixes are stripped; the model normalises with the file's own ``normalize.*`` buffers when it
    has them (a robprune export) and with ``mean``/``std`` otherwise, so it still takes inputs in [0, 1].
    Non-finite weights are refused.
    """
    state_dict, _ = read_torch_state_dict(path)
    model = create_model(arch, num_classes=num_classes, mean=mean, std=std)
    for name, buf in model.state_dict().items():
        if name.endswith("num_batches_tracked") and name not in state_dict:
            state_dict[name] = torch.zeros_like(buf)
        if name.startswith("normalize.") and name not in state_dict:
            state_dict[name] = buf  # a file without its own normalisation (the community's) gets the given one
    refuse_nonfinite(path, state_dict)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit {arch}: {summarise_key_mismatch(err)}") from None
    return model


def check_fits_data(path, meta: Mapping, data, data_spec: str) -> None:
    """Refuse (one-line ValueError) a checkpoint whose classes or input channels differ from the data's."""
    if (meta.get("num_classes"), meta.get("in_channels")) != (len(data.classes), data.in_channels):
        raise ValueError(f"{path} has {meta.get('num_classes')} classes and {meta.get('in_channels')} channels; "
                         f"{data_spec} has {len(data.classes)} and {data.in_channels}")
