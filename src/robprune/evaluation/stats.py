"""Weight statistics of the paper's Table 1, over all prunable weights (zeros included)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from torch import nn

from ..pruning.masks import prunable_parameters

QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _describe(w: np.ndarray) -> dict:
    q = np.quantile(w, QUANTILES)
    return {
        "numel": int(w.size),
        "min": float(q[0]), "q25": float(q[1]), "q50": float(q[2]), "q75": float(q[3]), "max": float(q[4]),
        "l1": float(np.abs(w).sum(dtype=np.float64)),
        "l2": float(np.sqrt(np.square(w, dtype=np.float64).sum())),
        "max_abs": float(np.abs(w).max()),
        "sparsity": float((w == 0).mean()),
    }


def weight_stats(model: nn.Module, keep_ends: bool = False) -> dict:
    """Quantiles 0/25/50/75/100%, L1 and L2 norm, max |w| and sparsity, overall and per layer."""
    weights = {n: w.detach().float().cpu().numpy().ravel()
               for n, w in prunable_parameters(model, keep_ends).items()}
    if not weights:
        raise ValueError("the model has no prunable (conv or linear) weights")
    overall = _describe(np.concatenate(list(weights.values())))
    return {**overall, "layers": {n: _describe(w) for n, w in weights.items()}}


def stats_markdown(rows: Mapping[str, dict]) -> str:
    """Table 1 layout: one row per model with min, q25, q50, q75, max, L1 (plus L2 and sparsity)."""
    lines = ["| model | min | q25 | q50 | q75 | max | L1 | L2 | sparsity |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in rows.items():
        lines.append(
            f"| {name} | {s['min']:.3f} | {s['q25']:.3f} | {s['q50']:.3f} | {s['q75']:.3f} | "
            f"{s['max']:.3f} | {s['l1']:.2f} | {s['l2']:.2f} | {100 * s['sparsity']:.1f}% |"
        )
    return "\n".join(lines)


def layer_stats_markdown(stats: dict) -> str:
    """Per-layer table of one model's statistics."""
    lines = ["| layer | numel | min | max | L1 | sparsity |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in stats["layers"].items():
        lines.append(f"| {name} | {s['numel']} | {s['min']:.3f} | {s['max']:.3f} | "
                     f"{s['l1']:.2f} | {100 * s['sparsity']:.1f}% |")
    return "\n".join(lines)

