"""Claims as data: a comparison is (model a, model b, question), decided on the metrics a study measured, each by
the one decision rule (``evaluation.significance.decide_accuracy``) on per-image outcomes pooled over the seeds
that have both models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..evaluation.outcomes import correct
from ..evaluation.significance import broken, decide_accuracy


@dataclass(frozen=True)
class Metric:
    label: str  # as printed, e.g. "PGD-10 8/255"
    field: str  # the row's evaluation: "clean", "pgd", "suite", ...
    eps: int | None = None  # index of the eps in that evaluation (None: its clean accuracy)
    optional: bool = False  # decided on the seeds that have it (the suite comes last); absent: not decided

    def outcomes(self, row: dict) -> np.ndarray:
        if self.field == "suite":
            return correct(row["suite"], self.eps or 0)
        return correct(row[self.field], self.eps)


def compare(state: dict, a: str, b: str, metrics: list[Metric], gate: str = "clean") -> dict | None:
    """``{"seeds", "parts": {metric label: decision}}`` for "a beats b" (None when no seed has both); a seed where
    either model is broken (judged on its ``gate`` evaluation) makes every part UNDECIDED."""
    rows = state.get("seeds", {})
    seeds = [k for k, r in rows.items() if a in r and b in r]
    if not seeds:
        return None
    reasons = [f"{m} (seed {k}): {w}" for k in seeds for m in (a, b) if (w := broken(rows[k][m][gate]))]
    parts = {}
    for metric in metrics:
        have = [k for k in seeds if metric.field in rows[k][a] and metric.field in rows[k][b]]
        if not have or (not metric.optional and len(have) < len(seeds)):
            continue
        parts[metric.label] = decide_accuracy([(metric.outcomes(rows[k][a]), metric.outcomes(rows[k][b]))
                                               for k in have], broken_reasons=reasons)
    return {"seeds": seeds, "parts": parts}


def decide_all(state: dict, pairs: list[tuple[str, str, str]], metrics: list[Metric], gate: str = "clean") -> dict:
    """Every (a, b, question) of ``pairs`` that some seed can compare, by question."""
    out = {}
    for a, b, question in pairs:
        result = compare(state, a, b, metrics, gate)
        if result is not None:
            out[question] = result
    return out
