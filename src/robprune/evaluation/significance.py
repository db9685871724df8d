"""Tests that decide claims across seeds, and the one verdict rule every report applies (docs/evaluation.md).

The rule:

- An accuracy difference "A beats B" is tested on the paired per-image outcomes of every seed pooled together:
  the exact stratified McNemar test (the Cochran-Mantel-Haenszel test with one stratum per image pair, stratified
  by seed; under "A and B are equally accurate on every seed" each discordant pair is a fair coin, so the number of
  A-only pairs over all seeds is Binomial(all discordant pairs, 1/2)). It HOLDS when that two-sided test rejects at
  ``ALPHA`` in the claimed direction and no single seed's own McNemar test is significant the other way (the guard);
  it FAILS symmetrically; otherwise it is UNDECIDED. More seeds or more images make a real difference easier to
  decide, never harder.
- A difference of a continuous quantity over seeds (an L1 norm, a weight range) is decided by the one-sided
  paired t-test over seeds at ``ALPHA``.
- A claim of several parts decides each part at Holm-adjusted p-values (``holm``), then HOLDS when every part
  holds and FAILS when any part fails.
- Fewer than ``MIN_SEEDS`` seeds, or a model that is broken on any seed (``broken``), never decide: a one-seed
  result is reported as observed, not decided.

Every decision carries its effect (mean difference over seeds, the 95% t-interval, the per-seed values) and,
when undecided, the seeds of the same size that this rule would need to decide the observed difference with
80% power (``seeds_to_decide``, by simulation of this very rule).
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


def pooled_mcnemar(tests: Sequence[dict]) -> dict:
    """The exact stratified McNemar test over seeds from per-seed ``mcnemar`` results (same images within a seed).

    Under "equally accurate on every seed" every discordant pair is a fair coin whatever its seed, so the pooled
    A-only count is Binomial(pooled discordant pairs, 1/2); this is the exact form of the Cochran-Mantel-Haenszel
    test with one stratum per image pair. Returns the pooled counts, the chi-square statistic (B - C)^2 / (B + C)
    (the CMH statistic without continuity correction) and the two-sided p-value.
    """
    a_only = sum(t["a_only"] for t in tests)
    b_only = sum(t["b_only"] for t in tests)
    n = a_only + b_only
    if n == 0:
        return {"a_only": 0, "b_only": 0, "chi2": 0.0, "p": 1.0}
    return {"a_only": a_only, "b_only": b_only, "chi2": (a_only - b_only) ** 2 / n,
            "p": float(_two_sided_p(a_only, b_only))}


def _verdict(tests: Sequence[dict], pooled: dict, alpha: float, p_text: str | None = None) -> tuple[str, str]:
    """The rule on per-seed McNemar results and their pooled test (p-value ``pooled["p"]``) at level ``alpha``."""
    sign = (pooled["a_only"] > pooled["b_only"]) - (pooled["a_only"] < pooled["b_only"])
    against = [i for i, t in enumerate(tests) if t["p"] < alpha and sign * (t["a_only"] - t["b_only"]) < 0]
    dirs = "".join("+" if t["a_only"] > t["b_only"] else "-" if t["a_only"] < t["b_only"] else "0" for t in tests)
    p_text = p_text or f"pooled McNemar p = {pooled['p']:.2g}"
    text = f"{p_text} over {len(tests)} seeds ({dirs})"
    if pooled["p"] >= alpha or sign == 0:
        return UNDECIDED, text
    if against:
        return UNDECIDED, text + f", but seed #{against[0] + 1} is significant the other way"
    return (HOLDS if sign > 0 else FAILS), text + (" in favour" if sign > 0 else " against")


def decide_accuracy(pairs: Sequence[tuple[np.ndarray, np.ndarray]], alpha: float = ALPHA,
                    broken_reasons: Sequence[str] = (), power_sims: int = 400) -> dict:
    """Verdict on "A beats B" from one (a_correct, b_correct) pair per seed (same images within a seed).

    ``p`` (the pooled test's two-sided p-value) and ``sign`` are kept so that ``holm`` can re-decide the part
    inside a claim of several parts.
    """
    tests = [mcnemar(a, b) for a, b in pairs]
    effect = paired_t([t["diff"] for t in tests])
    pooled = pooled_mcnemar(tests)
    sign = (pooled["a_only"] > pooled["b_only"]) - (pooled["a_only"] < pooled["b_only"])
    out = {"tests": tests, "effect": effect, "pooled": pooled, "alpha": alpha, "p": pooled["p"], "sign": sign,
           "kind": "accuracy"}
    if broken_reasons:
        return out | {"verdict": UNDECIDED, "why": "a model is broken: " + "; ".join(broken_reasons),
                      "decidable": False}
    if len(tests) < MIN_SEEDS:
        out["decidable"] = False
        observed = f"observed {100 * effect['mean']:+.2f} points, McNemar p = {pooled['p']:.2g}" if tests else ""
        return out | {"verdict": UNDECIDED, "why": f"{len(tests)} seed(s) done; the rule needs {MIN_SEEDS}"
                                                   + (f" ({observed})" if observed else "")}
    verdict, why = _verdict(tests, pooled, alpha)
    if sign != 0 and power_sims:
        out["seeds_to_decide"] = seeds_to_decide(tests, [len(a) for a, _ in pairs], alpha, sims=power_sims)
    return out | {"verdict": verdict, "why": why + _power_text(out, verdict)}


def _power_text(d: dict, verdict: str) -> str:
    if verdict != UNDECIDED or "seeds_to_decide" not in d:
        return ""
    need = d["seeds_to_decide"]
    return (f"; about {need} seeds of this size would decide a difference this size (80% power, simulated)"
            if need else "; more than 50 seeds of this size would be needed")


def _two_sided_p(a_only, b_only) -> np.ndarray:
    """McNemar's exact two-sided p-value, vectorised: 2 P(X <= min) for X ~ Binomial(a + b, 1/2), at most 1."""
    from scipy.stats import binom

    a_only, b_only = np.asarray(a_only), np.asarray(b_only)
    return np.minimum(1.0, 2 * binom.cdf(np.minimum(a_only, b_only), a_only + b_only, 0.5))


def seeds_to_decide(tests: Sequence[dict], sizes: Sequence[int], alpha: float = ALPHA, power: float = 0.8,
                    sims: int = 400, limit: int = 50, seed: int = 0) -> int | None:
    """The fewest seeds (each with the mean number of images of ``sizes``) at which this module's accuracy rule
    reaches a verdict in the observed direction with probability ``power``; simulated, each seed's discordant
    pairs drawn at the observed pooled rates, the pooled test and the guard applied as in ``decide_accuracy``.
    None past ``limit`` seeds."""
    n = int(round(float(np.mean(sizes))))
    total = float(sum(sizes))
    rate_a = sum(t["a_only"] for t in tests) / total
    rate_b = sum(t["b_only"] for t in tests) / total
    if rate_a == rate_b:
        return None
    rng = np.random.default_rng(seed)
    sign = 1 if rate_a > rate_b else -1
    for k in range(MIN_SEEDS, limit + 1):
        draws = rng.multinomial(n, [rate_a, rate_b, 1 - rate_a - rate_b], size=(sims, k))
        a, b = draws[..., 0], draws[..., 1]
        pooled_p = _two_sided_p(a.sum(1), b.sum(1))
        in_direction = sign * (a.sum(1) - b.sum(1)) > 0
        against = ((_two_sided_p(a, b) < alpha) & (sign * (a - b) < 0)).any(1)
        if (in_direction & (pooled_p < alpha) & ~against).mean() >= power:
            return k
    return None


def broken(ev: dict, classes: int = 10) -> str | None:
    """Why a model's clean evaluation shows it cannot take part in a claim (None when it can)."""
    acc = ev["clean"]["accuracy"]
    if acc < 1 / classes + CHANCE_MARGIN:
        return f"clean accuracy {100 * acc:.1f}% is within {100 * CHANCE_MARGIN:.0f} points of chance"
    share = ev.get("prediction_max_share")
    if share is not None and share > MAX_CLASS_SHARE:
        return f"it predicts one class for {100 * share:.0f}% of the images (near-constant)"
    return None


def holm(parts: dict[str, dict], alpha: float = ALPHA) -> dict[str, dict]:
    """Holm's step-down correction within one claim: every part that carries a p-value (``p``) and a direction
    (``sign``) is decided again at its Holm-adjusted p-value; parts without one (broken, too few seeds) keep
    their verdict. Returns new part dicts with ``p_holm`` added."""
    tested = [k for k, d in parts.items() if "p" in d and d.get("decidable", True) and not d.get("evidence_only")]
    order = sorted(tested, key=lambda k: parts[k]["p"])
    m, running, adjusted = len(order), 0.0, {}
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * parts[k]["p"]))
        adjusted[k] = running
    out = {}
    for k, d in parts.items():
        if k not in adjusted or m == 1:
            out[k] = d | ({"p_holm": adjusted[k]} if k in adjusted else {})
            continue
        if d.get("kind") == "accuracy":
            verdict, why = _verdict(d["tests"], d["pooled"] | {"p": adjusted[k]}, alpha,
                                    p_text=f"pooled McNemar p = {d['p']:.2g}, Holm-adjusted (of {m}) {adjusted[k]:.2g}")
            why += _power_text(d, verdict)
        else:
            verdict = UNDECIDED if adjusted[k] >= alpha else (HOLDS if d["sign"] > 0 else FAILS)
            why = d["why"] + f" (Holm-adjusted p of {m} = {adjusted[k]:.2g})"
        out[k] = d | {"verdict": verdict, "why": why, "p_holm": adjusted[k]}
    return out


def decide_quantity(diffs: Sequence[float], alpha: float = ALPHA) -> dict:
    """Verdict on "the quantity is larger for A" from per-seed differences A - B (one-sided paired t-test)."""
    effect = paired_t(diffs)
    out = {"effect": effect, "alpha": alpha, "kind": "quantity"}
    if effect["k"] < MIN_SEEDS:
        return out | {"verdict": UNDECIDED, "why": f"{effect['k']} seed(s) done; the rule needs {MIN_SEEDS}"}
    # the smaller one-sided p and its direction, so that ``holm`` can adjust it like any other part
    greater = effect["p_greater"] <= effect["p_less"]
    out |= {"p": min(1.0, effect["p_greater"] if greater else effect["p_less"]), "sign": 1 if greater else -1}
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


def decide_claim(parts: dict[str, dict], alpha: float = ALPHA) -> tuple[str, dict[str, dict]]:
    """Holm within the claim's parts, then ``combine``: the verdict of a claim of several parts and its parts
    (a part marked ``evidence_only`` is shown with the claim but neither adjusted nor combined)."""
    adjusted = holm(parts, alpha)
    return combine([d["verdict"] for d in adjusted.values() if not d.get("evidence_only")]), adjusted


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
