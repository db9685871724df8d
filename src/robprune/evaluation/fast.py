"""Faster attacks: the precision of an attack's passes; BatchNorm folding lives in ``models/folding.py``."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from ..models.folding import attack_model, cached_attack_model, fold_batchnorm  # noqa: F401  (their old home)

PRECISIONS = ("fp32", "bf16", "fp16")


def autocast_context(device: torch.device, precision: str):
    """Autocast for the attack's forward and backward passes (fp32 = no autocast)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return nullcontext()
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("fp16 autocast is for GPUs; use bf16 on the CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
