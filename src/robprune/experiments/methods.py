"""The methods study (issue 23): does a mask learned from data (HYDRA) beat magnitude (CP, LAMP) at high sparsity
at an equal fine-tuning budget, and does the paper's hinge still help on top of each method?

Per seed one adversarially trained dense network (the same units as ``study adversarial``'s dense arm when both
share an output folder and a dense config), then every method at every sparsity, with and without the hinge
(``lam``, ``tau``; during HYDRA's score learning and during every arm's fine-tuning), each fine-tuned adversarially
for the same epochs; clean, PGD and the suite (AutoAttack) on fixed test images, per-image outcomes kept for the
decision rule.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..evaluation.stats import weight_stats
from ..progress import Progress
from ..training import TrainConfig
from .adversarial import AdversarialConfig
from .engine import Arm, Context, Learn, Measure, Step, Study, Trained, run_study
from .study_units import Attacked, first_train_images, scratch_key

# label -> pruning method; HYDRA learns its mask, RATES also each layer's rate (learned/rates.py, HARP-like)
METHODS = {"CP": "cp", "LAMP": "lamp", "HYDRA": "hydra", "RATES": "hydra-rates"}
LEARNED_SCOPE = {"hydra": None, "hydra-rates": "global"}  # None: the config's hydra_scope
HINGE = "+hinge"


@dataclass(frozen=True)
class MethodsConfig:
    arch: str = "resnet20"
    seeds: tuple[int, ...] = (0, 1, 2)
    dense: TrainConfig = AdversarialConfig.dense  # the adversarial study's: its dense units are reused
    finetune: TrainConfig = AdversarialConfig.finetune
    score_epochs: int = 2  # HYDRA's score learning, before its fine-tuning (the other arms have no such stage)
    score_lr: float = 0.1  # HYDRA's default
    hydra_scope: str = "layer"  # HYDRA's default; CP and LAMP rank globally (LAMP's scores are made for it)
    sparsities: tuple[float, ...] = (0.99, 0.95, 0.9)  # run in this order: the highest, the question, first
    methods: tuple[str, ...] = ("CP", "LAMP", "HYDRA", "RATES")
    hinge: bool = True  # every method also with the paper's hinge
    lam: float = 0.003  # the hinge, fixed before the run (the adversarial study's setting)
    tau: float | str = "q0.9"
    pgd_eps: tuple[float, ...] = (8 / 255,)
    pgd_steps: int = 10
    pgd_images: int = 1000
    suite: str = "autoattack"
    suite_eps: float = 8 / 255
    suite_images: int = 1000
    eval_batch: int = 500
    train_images: int | None = None


METHODS_QUICK = MethodsConfig(
    seeds=(0, 1),
    dense=TrainConfig(epochs=3, batch_size=64, lr=0.05, weight_decay=5e-4, adv="fgsm"),
    finetune=TrainConfig(epochs=1, batch_size=64, lr=0.01, weight_decay=5e-4, adv="fgsm"),
    score_epochs=1, sparsities=(0.9,), pgd_steps=3, pgd_images=100, suite="fast", suite_images=40, eval_batch=100,
)


def default_grid() -> dict:
    """The methods study's default grid, which its report compares a run's grid with."""
    default = MethodsConfig()
    return {"methods": default.methods, "sparsities": default.sparsities, "seeds": default.seeds,
            "hinge": default.hinge}


def arm_name(method: str, sparsity: float, hinge: bool = False) -> str:
    return f"{method}{HINGE if hinge else ''}-{sparsity:g}"


def method_arms(config: MethodsConfig, sparsity: float) -> list[Arm]:
    """Every method at ``sparsity``, without the hinge first, in the order the verdicts need them."""
    arms = []
    for hinge in (False, True) if config.hinge else (False,):
        lam = {"lam": config.lam, "tau": config.tau} if hinge else {}
        for label in config.methods:
            name = arm_name(label, sparsity, hinge)
            method = METHODS[label]
            if method in LEARNED_SCOPE:
                scoring = replace(config.finetune, epochs=config.score_epochs, lr=config.score_lr, **lam)
                arms.append(Arm(name, replace(config.finetune, **lam), parent="Dense", keep_best=True,
                                learn=Learn(method, sparsity, scoring, LEARNED_SCOPE[method] or config.hydra_scope)))
            else:
                arms.append(Arm(name, replace(config.finetune, method=method, amount=sparsity, **lam),
                                parent="Dense", keep_best=True))
    return arms


def methods_study(config: MethodsConfig, data_spec: str) -> Study:
    from ..reporting.methods_report import render_methods

    unknown = [m for m in config.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    attacked = Attacked(config)
    arms = {"Dense": Arm("Dense", config.dense, keep_best=True)}
    arms |= {a.name: a for s in config.sparsities for a in method_arms(config, s)}

    def record(ctx: Context, t: Trained) -> dict:
        return {**ctx.train_record(t), **attacked.clean_and_pgd(ctx, t), "stats": weight_stats(t.model)}

    def plan(ctx: Context) -> None:
        # every seed's dense model; then one sparsity at a time, the highest first, each arm on every seed before
        # the next (a stopped run leaves comparisons with all their seeds), trained and evaluated, then attacked;
        # the dense models' suite last (no verdict needs it)
        steps = [Step(seed, "Dense", ("record",)) for seed in config.seeds]
        for s in config.sparsities:
            names = [a.name for a in method_arms(config, s)]
            steps += [Step(seed, n, ("record",)) for n in names for seed in config.seeds]
            steps += [Step(seed, n, ("suite",)) for n in names for seed in config.seeds]
        steps += [Step(seed, "Dense", ("suite",)) for seed in config.seeds]
        ctx.run(steps)

    return Study(kind={"study": "methods"}, config=config, arch=config.arch,
                 root_key=scratch_key(config.arch, data_spec, config.train_images),
                 arms=arms,
                 measures={"record": Measure(record, row=True), "suite": Measure(attacked.suite, gate="clean")},
                 plan=plan, render=functools.partial(render_methods, default_grid=default_grid()),
                 prepare=first_train_images(config.train_images),
                 suite_identity=(config.suite, config.suite_images))


def run_methods(data_spec: str, out_dir: str | Path, config: MethodsConfig, device: torch.device,
                progress: Progress | None = None, only=None) -> dict:
    """The methods study, every unit cached; returns the results state."""
    return run_study(methods_study(config, data_spec), data_spec, out_dir, device, progress, only)
