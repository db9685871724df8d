"""The one evaluation path: any attack or suite, seeds, sanity checks, per-image outcomes, one result dict.

``robprune eval``, the studies' cached evaluation units and the library all call :func:`run_evaluation` with
an :class:`EvalRequest`; the dict it returns is what the CLI writes to eval.json (plus the command line) and what
a study stores. Every evaluation has the same shape: ``n``, ``clean``, and per eps a ``robust`` row (``eps``,
``correct``, ``n``, ``accuracy``, ``ci95``; a suite adds its per-attack ``attacks``); with ``per_image`` the
outcomes per image as packed bits, read back only through ``evaluation.outcomes``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..attacks.registry import ATTACKS
from ..progress import progress_counter
from .accuracy import evaluate, pack_bits
from .checks import check_images, sanity_checks
from .fast import PRECISIONS, attack_model
from .suite import AttackSpec, BatchLog, check_suite, repeat_over_seeds, worst_case


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
    check_steps: int | None = None  # PGD steps of the checks (None: the attack's for plain PGD, 10 for a suite)
    batch_size: int = 256  # images per attack batch
    seed: int = 0  # seed of random starts (per batch)
    precision: str = "fp32"  # fp32, bf16 or fp16 attack passes, plain PGD or any attack/suite (checked in fp32)
    exact_model: bool = False  # attack the model itself instead of its BN-folded, frozen, channels_last copy
    compile: bool = False  # plain PGD: torch.compile the attack copy (GPU)
    per_image: bool = False  # keep which images were correct (packed bits), for paired tests on the same images
    eps_scale: tuple[float, ...] | None = None  # plain PGD: per-channel factor on eps (normalised-input reading)

    def validate(self) -> EvalRequest:
        if self.suite is not None:
            check_suite(self.suite)
        ATTACKS.get(self.attack)
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if not self.plain_pgd() and self.compile:
            raise ValueError("--compile applies to plain PGD only (no --suite, --loss or --restarts)")
        if self.eps_scale is not None and not self.plain_pgd():
            raise ValueError("eps_scale applies to plain PGD only")
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
                   progress: Callable[[dict], None] | None = None, name: str = "model",
                   log_dir: Path | None = None) -> dict:
    """Clean and attacked accuracy of ``model`` on (x, y) as ``request`` says; the eval.json dict.

    ``log_dir``: a suite saves every finished (attack, batch) there and an interrupted evaluation given the same
    folder continues where it stopped (``suite.BatchLog``).
    """
    request.validate()
    model.eval()
    n = len(x)
    t0 = time.perf_counter()
    attacks = request.attacks()
    eps = list(request.eps)
    total = n * len(eps) * (1 if request.plain_pgd() else len(attacks))
    attacker = None if request.exact_model or request.plain_pgd() else attack_model(model)

    def one_run(seed: int) -> dict:
        tick = progress_counter(progress, f"{name} seed {seed}" if request.seeds > 1 else name, total)
        if request.plain_pgd():
            radii = [[e * s for s in request.eps_scale] for e in eps] if request.eps_scale else eps
            result = evaluate(model, x, y, radii, request.steps, batch_size=request.batch_size,
                              step_scale=request.step_scale, random_start=request.random_start, seed=seed,
                              progress=tick, fast=not request.exact_model, precision=request.precision,
                              compile=request.compile, per_image=request.per_image)
            for row, e in zip(result["robust"], eps):
                row["eps"] = e  # the nominal (pixel) eps; the per-channel radii follow from the request
            return result
        rows = [worst_case(model, x, y, e, attacks, request.batch_size, seed, tick, attacker=attacker,
                           precision=request.precision, log=None if log_dir is None else BatchLog(log_dir, f"eps{i}"))
                for i, e in enumerate(eps)]
        clean = rows[0]["clean"] if rows else evaluate(model, x, y, [], 1)["clean"]
        result = {"n": n, "clean": clean, "robust": [{"eps": r["eps"], **r["worst_case"], "attacks": r["attacks"]}
                                                     for r in rows],
                  "suite": request.suite, "attacks": [a.__dict__ for a in attacks],
                  "attack": {"label": request.label()}}
        if request.per_image:
            if rows:
                result["clean_correct_bits"] = pack_bits(torch.tensor(rows[0]["clean_mask"]))
            for out, r in zip(result["robust"], rows):
                out["correct_bits"] = pack_bits(torch.tensor(r["robust_mask"]))
        return result

    result = one_run(request.seed)
    result["attack"]["label"] = request.label()
    if request.seeds > 1:
        result["seeds"] = repeat_over_seeds(lambda s: one_run(request.seed + s), request.seeds,
                                            lambda r: [r["clean"]["accuracy"]] + [e["accuracy"] for e in r["robust"]])
        result["seeds"].pop("runs")
    checks = []
    if request.checks and eps:
        xc, yc = check_images(x, y, min(n, request.check_images), request.seed)
        steps = request.check_steps or (request.steps if request.plain_pgd() else 10)
        checks = sanity_checks(model, xc, yc, eps, steps, request.batch_size, progress=progress)
    result["sanity_checks"] = checks
    result["warnings"] = [f"sanity check {c['name']} FAILED: {c['detail']}" for c in checks if not c["passed"]]
    result["request"] = asdict(request)
    result["seconds"] = time.perf_counter() - t0
    return result
