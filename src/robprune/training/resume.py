"""Resuming a training run: the state saved beside the weights (momentum, random generators) and the checks that a
checkpoint belongs to the run being resumed."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import read_checkpoint
from .config import TrainConfig


def momentum_state(optimizer: torch.optim.Optimizer, names: dict) -> dict[str, torch.Tensor]:
    return {f"momentum.{names[p]}": s["momentum_buffer"]
            for p, s in optimizer.state.items() if s.get("momentum_buffer") is not None}


def restore(last: Path, model: nn.Module, optimizer: torch.optim.Optimizer, generators, config: TrainConfig,
             names: dict, device: torch.device, identity: dict | None):
    tensors, meta = read_checkpoint(last)
    saved = meta.get("config")
    new = json.loads(json.dumps(asdict(config)))
    if isinstance(saved, dict):  # fields added since the checkpoint was written take their defaults
        saved = {**json.loads(json.dumps(asdict(TrainConfig()))), **saved}
    if saved != new:
        diff = _config_diff(saved, new)
        hint = ""
        if isinstance(saved, dict) and {k for k in new if saved.get(k) != new[k]} <= {"epochs"}:
            hint = ("; the learning-rate schedule depends on the number of epochs, so a run cannot be extended: "
                    f"start a new run with --init {last.parent / 'model.safetensors'} to train further")
        raise ValueError(f"cannot resume from {last}: it was made with a different config ({diff}){hint}")
    if identity is not None and meta.get("identity") not in (None, identity):
        before = meta["identity"]
        diff = ", ".join(f"{k}: {before.get(k)!r} -> {v!r}" for k, v in identity.items() if before.get(k) != v)
        raise ValueError(f"cannot resume from {last}: it trained a different run ({diff}); choose another --out")
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"cannot resume from {last}: its weights do not fit this model "
                         f"({str(err).strip().splitlines()[0]})") from None
    masks = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("mask.")}
    by_name = {n: p for p, n in names.items()}
    for key, buf in tensors.items():
        if key.startswith("state.momentum."):
            optimizer.state[by_name[key[len("state.momentum."):]]]["momentum_buffer"] = buf.to(device)
    generators[0].set_state(tensors["state.rng"])
    if "state.rng_attack" in tensors:
        generators[1].set_state(tensors["state.rng_attack"])
    return int(meta["epoch"]), meta.get("tau_resolved"), list(meta.get("history", [])), masks


def _config_diff(saved: dict | None, new: dict) -> str:
    if not isinstance(saved, dict):
        return "no config saved"
    diff = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in new.items() if saved.get(k) != v]
    return ", ".join(diff) or "unknown difference"
