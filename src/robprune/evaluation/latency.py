"""Measured inference latency: models timed side by side in interleaved rounds, so load from other processes
or clock changes hit every model alike."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


@torch.no_grad()
def interleaved_latency(models: dict[str, nn.Module], x: torch.Tensor, rounds: int = 5) -> dict[str, float]:
    """Median milliseconds of one forward pass of ``x`` per model (eval mode), one warm-up round, then ``rounds``
    rounds of every model in turn."""
    times: dict[str, list[float]] = {name: [] for name in models}
    modes = {name: m.training for name, m in models.items()}
    for m in models.values():
        m.eval()
    try:
        for r in range(rounds + 1):
            for name, model in models.items():
                if x.is_cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                model(x)
                if x.is_cuda:
                    torch.cuda.synchronize()
                if r > 0:
                    times[name].append(1000 * (time.perf_counter() - t0))
    finally:
        for name, m in models.items():
            m.train(modes[name])
    return {name: statistics.median(t) for name, t in times.items()}
