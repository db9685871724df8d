"""One library call for what ``robprune eval`` does: any attack or suite, seeds, sanity checks, one result dict.

The CLI is a thin shell over :func:`run_evaluation`: the dict it returns is
exactly what the CLI writes to eval.json (plus the command line).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..attacks.registry import ATTACKS
from ..progress import progress_counter
from .accuracy import evaluate
from .checks import check_images, sanity_checks
from .fast import PRECISIONS, attack_model
from .suite import AttackSpec, check_suite, repeat_over_seeds, worst_case


@dataclass(frozen=True)
class EvalRequest:
    eps: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255)  # L-inf radii, pixel units
    attack: str = "pgd"  # registered attack (ignored with a suite)
    steps: int = 4  # the attack's budget: steps, or queries for square
    step_scale: float = 2.5  # plain PGD: step = step_scale * eps / steps
    random_start: bool = True  # plain PGD: uniform start in the eps-ball
    loss: str = "ce"  # pgd family: ce, cw or dlr
    restarts: int = 1  # pgd: random restarts
    suite: str | None = None  # autoattack, standard or fast: worst case per point
    seeds: int = 1  # repeat with seeds seed..seed+seeds-1 and report mean and std
    checks: bool = True  # run the sanity checks
    check_images: int = 200  # images for the sanity checks (class-balanced, random)
    batch_size: int = 256  # images per attack batch
    seed: int = 0  # seed of random starts (per batch)
    precision: str = "fp32"  # fp32, bf16 or fp16 attack passes, plain PGD or any attack/suite (checked in fp32)
    exact_model: bool = False  # attack the model itself instead of its BN-folded, frozen, channels_last copy
    compile: bool = False  # plain PGD: torch.compile the attack copy (GPU)

    def validate(self) -> EvalRequest:
        if self.suite is not None:
            check_suite(self.suite)
        ATTACKS.get(self.attack)
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if not self.plain_pgd() and self.compile:
            raise ValueError("--compile applies to plain PGD only (no --suite, --loss or --restarts)")
        if self.exact_model and self.precision != "fp32":
            raise ValueError("--precision runs the attacks on the fast copy; it does not combine with --exact-model")
        from ..attacks.common import check_loss
        check_loss(self.loss)
        return self

    def plain_pgd(self) -> bool:
        return self.suite is None and self.attack == "pgd" and self.loss == "ce" and self.restarts == 1

    def attacks(self) -> tuple[AttackSpec, ...]:
        return check_suite(self.suite) if self.suite else (AttackSpec(self.attack, self.steps, self.loss,
                                                                       self.restarts),)

    def label(self) -> str:
        path = "exact model" if self.exact_model else "BN-folded channels_last copy"
        reduced = f", {self.precision} attack passes" if self.precision != "fp32" else ""
        if self.suite:
            return (f"suite '{self.suite}' (" + ", ".join(a.label() for a in self.attacks())
                    + f"; worst case per point; attacks on the {path}{reduced}, every point checked on the original "
                      "in fp32)")
        if self.plain_pgd():
            return (f"PGD-{self.steps} (step {self.step_scale}*eps/{self.steps}, "
                    f"{'' if self.random_start else 'no '}random start; {path}{', compiled' if self.compile else ''}, "
                    f"{self.precision} attack, checked in fp32)")
        return self.attacks()[0].label() + f" ({path}{reduced}, checked on the original in fp32)"


def run_evaluation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, request: EvalRequest,
                   progress: Callable[[dict], None] | None = None, name: str = "model") -> dict:
    """Clean and attacked accuracy of ``model`` on (x, y) as ``request`` says; the eval.json dict."""
    request.validate()
    model.eval()
    n = len(x)
    t0 = time.perf_counter()
    attacks = request.attacks()
    eps = list(request.eps)
    total = n * len(eps) * (1 if request.plain_pgd() else len(attacks))
    attacker = None if request.exact_model or request.plain_pgd() else attack_model(model)

    def one_run(seed: int) -> dict:
        tick = progress_counter(progress, f"{name} seed {seed}", total)
        if request.plain_pgd():
            return evaluate(model, x, y, eps, request.steps, batch_size=request.batch_size,
                            step_scale=request.step_scale, random_start=request.random_start, seed=seed,
                            progress=tick, fast=not request.exact_model, precision=request.precision,
                            compile=request.compile)
        rows = [worst_case(model, x, y, e, attacks, request.batch_size, seed, tick, attacker=attacker,
                           precision=request.precision) for e in eps]
        clean = rows[0]["clean"] if rows else evaluate(model, x, y, [], 1)["clean"]
        return {"n": n, "clean": clean,
                "robust": [{"eps": r["eps"], **r["worst_case"], "attacks": r["attacks"],
                            "robust_mask": r["robust_mask"]} for r in rows],
                "attack": {"label": request.label()}}

    result = one_run(request.seed)
    result["attack"]["label"] = request.label()
    if request.seeds > 1:
        result["seeds"] = repeat_over_seeds(lambda s: one_run(request.seed + s), request.seeds,
                                            lambda r: [r["clean"]["accuracy"]] + [e["accuracy"] for e in r["robust"]])
        result["seeds"].pop("runs")
    checks = []
    if request.checks and eps:
        xc, yc = check_images(x, y, min(n, request.check_images), request.seed)
        checks = sanity_checks(model, xc, yc, eps, request.steps if request.plain_pgd() else 10, request.batch_size,
                               progress=progress)
    result["sanity_checks"] = checks
    result["warnings"] = [f"sanity check {c['name']} FAILED: {c['detail']}" for c in checks if not c["passed"]]
    result["request"] = asdict(request)
    result["seconds"] = time.perf_counter() - t0
    return result
