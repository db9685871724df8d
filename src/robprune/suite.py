"""Trustworthy robustness numbers: an attack registry, a worst-case suite, and gradient-masking checks.

A point counts as robust under a suite only if it survives every attack of
the suite; each attack runs only on the points still robust (as AutoAttack
does). The sanity checks follow the advice of Carlini et al. 2019 ("On
evaluating adversarial robustness") and Croce & Hein 2020: a failed check is
reported as a warning with the numbers, never silently dropped.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .apgd import apgd
from .attacks import check_eps, fgsm, frozen, loss_and_gradient, pgd, pgd_l2
from .evaluation import _summary, as_float_images, predict
from .square import square_attack

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor, float, int], torch.Tensor]


@dataclass(frozen=True)
class AttackSpec:
    name: str  # registry key, e.g. "apgd-dlr"
    steps: int = 10  # iterations (queries for square)
    loss: str = "ce"  # ce, cw or dlr (pgd family)
    restarts: int = 1  # random restarts (pgd)


def run_attack(spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
               seed: int) -> torch.Tensor:
    """Adversarial examples for one attack of the registry."""
    name = spec.name
    if name == "pgd":
        return pgd(model, x, y, eps, spec.steps, seed=seed, loss=spec.loss, restarts=spec.restarts)
    if name == "fgsm":
        return fgsm(model, x, y, eps)
    if name == "pgd-l2":
        return pgd_l2(model, x, y, eps, spec.steps, seed=seed, loss=spec.loss)
    if name in ("apgd-ce", "apgd-dlr"):
        return apgd(model, x, y, eps, spec.steps, loss=name.split("-")[1], seed=seed)
    if name == "square":
        return square_attack(model, x, y, eps, queries=spec.steps, seed=seed)
    raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(ATTACK_NAMES)}")


ATTACK_NAMES = ("pgd", "fgsm", "pgd-l2", "apgd-ce", "apgd-dlr", "square")
SUITES = {
    # AutoAttack's standard version uses APGD-CE, APGD-T, FAB-T and Square with 5,000 queries; this
    # CPU-sized suite keeps the untargeted APGD pair (CE and the scale-invariant DLR) and 1,000 queries.
    "standard": (AttackSpec("apgd-ce", 100), AttackSpec("apgd-dlr", 100), AttackSpec("square", 1000)),
    "fast": (AttackSpec("apgd-ce", 20), AttackSpec("apgd-dlr", 20), AttackSpec("square", 200)),
}


def worst_case(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, attacks: Sequence[AttackSpec],
               batch_size: int = 256, seed: int = 0, progress: Callable[[int], None] | None = None) -> dict:
    """Per-attack and per-point worst-case robust accuracy at ``eps`` (pixel units)."""
    check_eps(eps)
    device = next(model.parameters()).device
    robust = predict(model, x, batch_size) == y.cpu()
    clean = int(robust.sum())
    per_attack = {}
    for spec in attacks:
        for start in range(0, len(x), batch_size):
            idx = robust[start : start + batch_size].nonzero().squeeze(1) + start
            if len(idx):
                xb, yb = as_float_images(x[idx].to(device)), y[idx].to(device).long()
                x_adv = run_attack(spec, model, xb, yb, eps, seed + start)
                with torch.no_grad(), frozen(model):
                    fooled = (model(x_adv).argmax(1) != yb).cpu()
                robust[idx[fooled]] = False
            if progress is not None:
                progress(min(batch_size, len(x) - start))
        per_attack[spec.name] = {"robust_after": _summary(int(robust.sum()), len(x)), "spec": spec.__dict__}
    return {"eps": eps, "clean": _summary(clean, len(x)), "worst_case": _summary(int(robust.sum()), len(x)),
            "attacks": per_attack}


def _pgd_accuracy(model, x, y, eps, steps, batch_size, seed=0, random_start=False) -> int:
    from .evaluation import evaluate

    return evaluate(model, x, y, [eps], steps, batch_size=batch_size, random_start=random_start,
                    seed=seed)["robust"][0]["correct"]


def sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_list: Sequence[float], steps: int,
                  batch_size: int = 256, square_queries: int = 300) -> list[dict]:
    """Checks against gradient masking and evaluation bugs; each returns passed, the numbers and why it matters."""
    device = next(model.parameters()).device
    n = len(x)
    clean = int((predict(model, x, batch_size) == y.cpu()).sum())
    checks = []

    def add(name: str, passed: bool, detail: str, **values) -> None:
        checks.append({"name": name, "passed": bool(passed), "detail": detail, **values})

    at_zero = _pgd_accuracy(model, x, y, 0.0, steps, batch_size)
    add("eps0_equals_clean", at_zero == clean, f"PGD at eps=0 keeps {at_zero}/{n}, clean is {clean}/{n}")
    eps_sorted = sorted(eps_list)
    accs = [_pgd_accuracy(model, x, y, e, steps, batch_size) for e in eps_sorted]
    add("monotone_in_eps", all(b <= a for a, b in zip(accs, accs[1:])),
        "PGD accuracy must not rise with eps: " + ", ".join(f"{e * 255:g}/255: {a}" for e, a in zip(eps_sorted, accs)))
    e_max = eps_sorted[-1]
    more = _pgd_accuracy(model, x, y, e_max, steps * 4, batch_size)
    tol = max(1, round(0.01 * n))
    add("monotone_in_steps", more <= accs[-1] + tol,
        f"at eps {e_max * 255:g}/255: {steps} steps keep {accs[-1]}, {steps * 4} steps keep {more} (tolerance {tol})")
    large = _pgd_accuracy(model, x, y, 64 / 255, max(steps, 20), batch_size, random_start=True)
    add("large_eps_breaks_model", large <= max(1, round(0.01 * n)),
        f"PGD at 64/255 keeps {large}/{n}; a model that stays accurate there is hiding its gradients")
    zero = 0
    with frozen(model):
        for start in range(0, n, batch_size):
            xb = as_float_images(x[start : start + batch_size].to(device))
            _, grad, _ = loss_and_gradient(model, xb, y[start : start + batch_size].to(device).long())
            zero += int((grad.flatten(1).abs().amax(1) == 0).sum())
    add("nonzero_input_gradients", zero <= round(0.01 * n), f"{zero}/{n} images have an all-zero input gradient",
        zero_gradient_fraction=zero / max(n, 1))
    with torch.no_grad(), frozen(model):
        out = model(as_float_images(x[:batch_size].to(device)))
    probs = bool((out >= 0).all() and (out <= 1).all() and torch.allclose(out.sum(1), torch.ones(len(out)), atol=1e-4))
    add("outputs_are_logits", not probs, "outputs look like probabilities (softmax inside the model weakens CE attacks)"
        if probs else "outputs are unnormalised logits")
    square = worst_case(model, x, y, e_max, [AttackSpec("square", square_queries)], batch_size)
    sq = square["worst_case"]["correct"]
    white = min(accs[-1], more)
    add("blackbox_not_stronger", sq >= white - tol,
        f"at eps {e_max * 255:g}/255: Square ({square_queries} queries) keeps {sq}, the stronger white-box PGD "
        f"keeps {white} (tolerance {tol}); "
        "a gradient-free attack beating the gradient attack signals masking")
    return checks


def repeat_over_seeds(fn: Callable[[int], dict], seeds: int, key: Callable[[dict], list[float]]) -> dict:
    """Run ``fn(seed)`` for seeds 0..seeds-1; mean and standard deviation of each value ``key`` extracts."""
    runs = [fn(s) for s in range(seeds)]
    values = list(zip(*[key(r) for r in runs]))
    return {"seeds": list(range(seeds)), "runs": runs,
            "mean": [statistics.fmean(v) for v in values],
            "std": [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]}
