"""The adversarial pruning study (issue 15): adversarially trained dense networks pruned by each method at each
sparsity, fine-tuned adversarially, evaluated under the suite; every unit cached."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..distributed import is_main
from ..evaluation.accuracy import fixed_subset
from ..progress import Progress
from ..training import TrainConfig
from .engine import Arm, Context, Measure, Step, Study, Trained, run_study
from .store import unit_dir
from .study_units import Attacked, described, first_train_images, scratch_key


@dataclass(frozen=True)
class AdversarialConfig:
    arch: str = "resnet20"
    seeds: tuple[int, ...] = (0, 1)
    dense: TrainConfig = TrainConfig(epochs=8, batch_size=128, lr=0.1, weight_decay=5e-4, precision="bf16",
                                     adv="fgsm")
    finetune: TrainConfig = TrainConfig(epochs=2, batch_size=128, lr=0.02, weight_decay=5e-4, precision="bf16",
                                        adv="fgsm")
    sparsities: tuple[float, ...] = (0.9, 0.99)  # the core grid, every seed
    extra_sparsities: tuple[float, ...] = (0.5, 0.95)  # after the core, first seed only (cut first)
    methods: tuple[str, ...] = ("CP", "RP", "Ours")
    rp_paper: float = 0.1  # RP at the paper's 10% as well
    lam: float = 0.003  # Ours' penalty, fixed before the run (the ResNet-18 GPU data point's setting)
    tau: float | str = "q0.9"
    pgd_eps: tuple[float, ...] = (2 / 255, 4 / 255, 8 / 255)
    pgd_steps: int = 10
    pgd_images: int = 1000
    suite: str = "autoattack"
    suite_eps: float = 8 / 255
    suite_images: int = 1000
    eval_batch: int = 500
    bound_images: int = 500
    export: bool = True  # write every final model in the APB format under OUT/apb/
    train_images: int | None = None


# the dense model gets 3 epochs on every digits training image: with less it sits near chance, and a broken model
# is never attacked, so the quick grid would not exercise the suite (RP still breaks the small CNN: both paths run)
ADVERSARIAL_QUICK = AdversarialConfig(
    seeds=(0, 1),
    dense=TrainConfig(epochs=3, batch_size=64, lr=0.05, weight_decay=5e-4, adv="fgsm"),
    finetune=TrainConfig(epochs=1, batch_size=64, lr=0.01, weight_decay=5e-4, adv="fgsm"),
    sparsities=(0.9,), extra_sparsities=(), pgd_steps=3, pgd_images=100, suite="fast", suite_images=40,
    eval_batch=100, bound_images=50,
)


def adversarial_arms(config: AdversarialConfig, sparsities) -> list[tuple[str, dict]]:
    """(name, train changes) of every pruned arm at ``sparsities``."""
    arms = []
    for s in sparsities:
        for method in config.methods:
            if method == "CP":
                arms.append((f"CP-{s:g}", {"method": "cp", "amount": s}))
            elif method == "RP":
                arms.append((f"RP-{s:g}", {"method": "rp", "amount": s}))
            else:
                arms.append((f"Ours-{s:g}", {"method": "cp", "amount": s, "lam": config.lam, "tau": config.tau}))
    return arms


def default_grid() -> dict:
    """The adversarial study's default grid, which its report compares a run's grid with."""
    default = AdversarialConfig()
    return {"sparsities": default.sparsities, "extra_sparsities": default.extra_sparsities, "seeds": default.seeds}


def adversarial_study(config: AdversarialConfig, data_spec: str) -> Study:
    """The study's declaration: a dense arm per seed, the pruned arms fine-tuned from it, and the plan."""
    from ..export import APB_ARCHS, export_model
    from ..reporting.study_report import render_adversarial

    attacked = Attacked(config)
    core = [("Dense", None)] + adversarial_arms(config, config.sparsities) + (
        [(f"RP-{config.rp_paper:g}", {"method": "rp", "amount": config.rp_paper})] if config.rp_paper else [])
    extras = adversarial_arms(config, config.extra_sparsities)
    arms = {"Dense": Arm("Dense", config.dense, keep_best=True)}
    arms |= {name: Arm(name, replace(config.finetune, **changes), parent="Dense", keep_best=True)
             for name, changes in core[1:] + extras}

    def record(ctx: Context, t: Trained) -> dict:
        """Clean, PGD-10, Table 1 and Eq. 3 of one model (trained first when not cached)."""
        x_bound, y_bound = fixed_subset(ctx.data.x_test, ctx.data.y_test, config.bound_images)
        name = f"s{t.seed}-{t.arm}"
        row = {**ctx.train_record(t), "checkpoint": str((unit_dir(ctx.out, t.unit, t.key) / "model.safetensors")
                                                       .relative_to(ctx.out))}
        row.update(attacked.clean_and_pgd(ctx, t))
        row.update(described(t.model, t.key, ctx.out, name, x_bound, y_bound, ctx.progress))
        return row | export(ctx, t)

    def export(ctx: Context, t: Trained) -> dict:
        """The model in the benchmark's format (it knows its own base models, ResNet-18 and VGG-16-bn; others
        export as torch)."""
        if not config.export or not is_main():
            return {}
        fmt = "apb" if config.arch in APB_ARCHS else "torch"
        path = ctx.out / "export" / f"{config.arch}-s{t.seed}-{t.arm}.{fmt}.pt"
        if not path.is_file():
            export_model(t.model, t.masks, {"arch": config.arch, "unit": f"s{t.seed}-{t.arm}"}, fmt, path)
        return {"export": {"format": fmt, "path": str(path.relative_to(ctx.out))}}

    def by_verdict(names, sparsities):
        """``names`` in the order the verdicts need them: CP and Ours (then RP) at each sparsity, the rest after."""
        rank = {f"{m}-{s:g}": i for i, (s, m) in enumerate((s, m) for s in sparsities for m in ("CP", "Ours", "RP"))}
        return sorted(names, key=lambda n: rank.get(n[1], len(rank)))

    def plan(ctx: Context) -> None:
        # Every seed's dense model, then each arm on every seed before the next arm (a run stopped part-way leaves
        # comparisons with all their seeds rather than one seed with every arm); then the suite (AutoAttack, ~40
        # min a ResNet-20 model on one CPU core) on the core grid, the dense reference after the pruned arms; then
        # the extras (cut first when the budget runs out) on the first seed, one sparsity at a time, the highest
        # first (the benchmark's table has 95%, not 50%), each trained then attacked before the next, so a run
        # stopped part-way leaves whole columns. One walk over all of it: a process sharing the folder that meets a
        # unit another one holds goes on to the next step rather than waiting at the end of a stage.
        core_plan = [(seed, name) for name, _ in core for seed in config.seeds]
        steps = [Step(seed, name, ("record",)) for seed, name in core_plan]
        steps += [Step(seed, name, ("suite",)) for seed, name in by_verdict(core_plan, config.sparsities)]
        for s in sorted(config.extra_sparsities, reverse=True):
            names = by_verdict([(config.seeds[0], n) for n, _ in adversarial_arms(config, (s,))], (s,))
            steps += [Step(seed, n, ("record",)) for seed, n in names]
            steps += [Step(seed, n, ("suite",)) for seed, n in names]
        ctx.run(steps)

    return Study(kind={"study": "adversarial"}, config=config, arch=config.arch,
                 root_key=scratch_key(config.arch, data_spec, config.train_images),
                 arms=arms,
                 measures={"record": Measure(record, row=True), "suite": Measure(attacked.suite, gate="clean")},
                 plan=plan, render=functools.partial(render_adversarial, default_grid=default_grid()),
                 prepare=first_train_images(config.train_images), suite_identity=(config.suite, config.suite_images))


def run_adversarial(data_spec: str, out_dir: str | Path, config: AdversarialConfig, device: torch.device,
                    progress: Progress | None = None, only=None) -> dict:
    """The adversarial pruning study (issue 15's grid), every unit cached; returns the results state."""
    return run_study(adversarial_study(config, data_spec), data_spec, out_dir, device, progress, only)
