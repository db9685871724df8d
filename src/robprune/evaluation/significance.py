"""Tests that decide claims across seeds: McNemar on the same images, paired t over seeds, and the verdict rule.

The rule (written before any study ran, applied by every study report):

- An accuracy difference "A beats B" is established when, on every seed, McNemar's exact test on the
  same test images rejects "A and B are equally accurate" at ``ALPHA`` in the claimed direction
  (an intersection-union test: its error is at most ``ALPHA``, and no verdict rests on one seed).
  It is refuted when every seed rejects it in the opposite direction. Otherwise it is UNDECIDED.
- A difference of a continuous quantity over seeds (an L1 norm, a weight range) is decided by the
  one-sided paired t-test over seeds at ``ALPHA``.
- Fewer than ``MIN_SEEDS`` seeds, or a model that is broken on any seed (``broken``), never decide.

Every decision carries its effect (mean difference over seeds, the 95% t-interval, the per-seed values)
and, when undecided, the rough number of seeds a paired t-test would need (``seeds_needed``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ALPHA = 0.05
MIN_SEEDS = 2
CHANCE_MARGIN = 0.10  # a model within this of chance accuracy is broken
MAX_CLASS_SHARE = 0.5  # a model predicting one class for more than this share of images is broken

HOLDS, FAILS, UNDECIDED = "HOLDS", "FAILS", "UNDECIDED"


def mcnemar(a: np.ndarray, b: np.ndarray) -> dict:
    """McNemar's exact test of "a and b are equally accurate" on the same images (bool arrays of correctness).

    Returns the discordant counts (``a_only``: a right and b wrong; ``b_only``), the accuracy difference a - b
    and the two-sided p-value (binomial on the discordant pairs).
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs the same images: {a.shape} vs {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    n = a_only + b_only
    if n == 0:
        p = 1.0
    else:
        from scipy.stats import binomtest

        p = float(binomtest(min(a_only, b_only), n, 0.5).pvalue)
    return {"a_only": a_only, "b_only": b_only, "diff": (a_only - b_only) / max(len(a), 1), "p": p}


def paired_t(diffs: Sequence[float]) -> dict:
    """Mean of the per-seed differences, its 95% t-interval and the one-sided p-values (greater, less)."""
    d = np.asarray(list(diffs), float)
    k = len(d)
    mean = float(d.mean()) if k else float("nan")
    if k < 2:
        return {"k": k, "mean": mean, "sd": float("nan"), "ci95": [float("nan")] * 2, "p_greater": float("nan"),
                "p_less": float("nan"), "values": d.tolist()}
    from scipy.stats import t as student

    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(k)
    half = float(student.ppf(0.975, k - 1)) * se
    if se == 0:
        p_greater = 0.0 if mean > 0 else 1.0
        p_less = 0.0 if mean < 0 else 1.0
    else:
        stat = mean / se
        p_greater, p_less = float(student.sf(stat, k - 1)), float(student.cdf(stat, k - 1))
    return {"k": k, "mean": mean, "sd": sd, "ci95": [mean - half, mean + half], "p_greater": p_greater,
            "p_less": p_less, "values": d.tolist()}


def seeds_needed(mean: float, sd: float, alpha: float = ALPHA, power: float = 0.8) -> int | None:
    """Seeds a one-sided paired t-test would need to detect ``mean`` with ``power`` (normal approximation)."""
    if not (math.isfinite(mean) and math.isfinite(sd)) or mean == 0:
        return None
    if sd == 0:
        return 3
    from scipy.stats import norm

    n = ((norm.ppf(1 - alpha) + norm.ppf(power)) * sd / abs(mean)) ** 2
    return max(3, math.ceil(n) + 1)


def broken(ev: dict, classes: int = 10) -> str | None:
    """Why a model's clean evaluation shows it cannot take part in a claim (None when it can)."""
    acc = ev["clean"]["accuracy"]
    if acc < 1 / classes + CHANCE_MARGIN:
        return f"clean accuracy {100 * acc:.1f}% is within {100 * CHANCE_MARGIN:.0f} points of chance"
    share = ev.get("prediction_max_share")
    if share is not None and share > MAX_CLASS_SHARE:
        return f"it predicts one class for {100 * share:.0f}% of the images (near-constant)"
    return None


def decide_accuracy(pairs: Sequence[tuple[np.ndarray, np.ndarray]], alpha: float = ALPHA,
                    broken_reasons: Sequence[str] = ()) -> dict:
    """Verdict on "A beats B" from one (a_correct, b_correct) pair per seed (same images within a seed)."""
    tests = [mcnemar(a, b) for a, b in pairs]
    effect = paired_t([t["diff"] for t in tests])
    out = {"tests": tests, "effect": effect, "alpha": alpha}
    if broken_reasons:
        return out | {"verdict": UNDECIDED, "why": "a model is broken: " + "; ".join(broken_reasons)}
    if len(tests) < MIN_SEEDS:
        return out | {"verdict": UNDECIDED, "why": f"{len(tests)} seed(s) done; the rule needs {MIN_SEEDS}"}
    if all(t["p"] < alpha and t["diff"] > 0 for t in tests):
        return out | {"verdict": HOLDS, "why": f"every seed's McNemar p < {alpha:g} in favour"}
    if all(t["p"] < alpha and t["diff"] < 0 for t in tests):
        return out | {"verdict": FAILS, "why": f"every seed's McNemar p < {alpha:g} against"}
    significant = sum(t["p"] < alpha for t in tests)
    need = seeds_needed(effect["mean"], effect["sd"])
    more = f"; a paired t-test over about {need} seeds would resolve a difference this size" if need else ""
    return out | {"verdict": UNDECIDED,
                  "why": f"{significant} of {len(tests)} seeds significant, directions "
                         f"{''.join('+' if t['diff'] > 0 else '-' if t['diff'] < 0 else '0' for t in tests)}{more}"}


def decide_quantity(diffs: Sequence[float], alpha: float = ALPHA) -> dict:
    """Verdict on "the quantity is larger for A" from per-seed differences A - B (one-sided paired t-test)."""
    effect = paired_t(diffs)
    out = {"effect": effect, "alpha": alpha}
    if effect["k"] < MIN_SEEDS:
        return out | {"verdict": UNDECIDED, "why": f"{effect['k']} seed(s) done; the rule needs {MIN_SEEDS}"}
    if effect["p_greater"] < alpha:
        return out | {"verdict": HOLDS, "why": f"paired t-test p = {effect['p_greater']:.2g} < {alpha:g}"}
    if effect["p_less"] < alpha:
        return out | {"verdict": FAILS, "why": f"paired t-test p = {effect['p_less']:.2g} < {alpha:g} against"}
    return out | {"verdict": UNDECIDED, "why": f"paired t-test p = {effect['p_greater']:.2g}"}


def combine(verdicts: Sequence[str]) -> str:
    """A claim made of parts: HOLDS when every part holds, FAILS when any part fails, else UNDECIDED."""
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    if any(v == FAILS for v in verdicts):
        return FAILS
    return UNDECIDED


def spearman(x: Sequence[float], y: Sequence[float]) -> dict:
    """Spearman's rank correlation and its two-sided p-value (None below 3 points)."""
    if len(x) < 3:
        return {"rho": None, "p": None, "n": len(x)}
    from scipy.stats import spearmanr

    res = spearmanr(x, y)
    rho, p = float(res.statistic), float(res.pvalue)
    return {"rho": rho if math.isfinite(rho) else None, "p": p if math.isfinite(p) else None, "n": len(x)}


def spearman_models_needed(rho: float, alpha: float = ALPHA, limit: int = 10_000) -> int | None:
    """The fewest points at which a Spearman correlation of size ``rho`` would be significant at ``alpha``
    (two-sided, the t approximation scipy's spearmanr uses); None for rho 0 or beyond ``limit``."""
    if rho is None or not math.isfinite(rho) or rho == 0:
        return None
    if abs(rho) >= 1:
        return 3
    from scipy.stats import t as student

    for n in range(3, limit + 1):
        stat = abs(rho) * math.sqrt((n - 2) / (1 - rho * rho))
        if 2 * student.sf(stat, n - 2) < alpha:
            return n
    return None
