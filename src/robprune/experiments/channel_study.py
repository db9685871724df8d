"""The channel study (issue 24): channels removed for real from adversarially trained networks by each channel
criterion (L1 filter norm, reverse, BatchNorm scale, learned HYDRA-style scores), with and without the hinge,
fine-tuned adversarially at equal budget; clean, PGD and the suite with per-image outcomes for the decision rule,
parameters and MACs per model, and the latency of every network shape measured side by side.
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
from .engine import Arm, Channels, Context, Measure, Step, Study, Trained, run_study
from ..results import machine_line
from .study_units import Attacked, first_train_images, scratch_key

HINGE = "+hinge"


@dataclass(frozen=True)
class ChannelsConfig:
    arch: str = "resnet20"
    seeds: tuple[int, ...] = (0, 1)
    dense: TrainConfig = AdversarialConfig.dense  # the adversarial study's: its dense units are reused
    finetune: TrainConfig = AdversarialConfig.finetune
    score_epochs: int = 2  # the learned channel scores (hydra), before fine-tuning
    score_lr: float = 0.1
    amounts: tuple[float, ...] = (0.5, 0.75)  # fraction of every coupled group's channels removed
    methods: tuple[str, ...] = ("l1", "reverse", "bn_scale", "hydra")
    hinge: bool = True
    lam: float = 0.003  # the hinge, fixed before the run (the adversarial study's setting)
    tau: float | str = "q0.9"
    pgd_eps: tuple[float, ...] = (8 / 255,)
    pgd_steps: int = 10
    pgd_images: int = 1000
    suite: str = "autoattack"
    suite_eps: float = 8 / 255
    suite_images: int = 1000
    eval_batch: int = 500
    latency_batch: int = 256
    latency_rounds: int = 5
    train_images: int | None = None


def default_grid() -> dict:
    """The channel study's default grid, which its report compares a run's grid with."""
    default = ChannelsConfig()
    return {"methods": default.methods, "amounts": default.amounts, "seeds": default.seeds, "hinge": default.hinge}


CHANNELS_QUICK = ChannelsConfig(
    dense=TrainConfig(epochs=3, batch_size=64, lr=0.05, weight_decay=5e-4, adv="fgsm"),
    finetune=TrainConfig(epochs=1, batch_size=64, lr=0.01, weight_decay=5e-4, adv="fgsm"),
    score_epochs=1, amounts=(0.5,), methods=("l1", "hydra"), pgd_steps=3, pgd_images=100, suite="fast",
    suite_images=40, eval_batch=100, latency_batch=32, latency_rounds=2,
)


def arm_name(method: str, amount: float, hinge: bool = False) -> str:
    return f"{method}{HINGE if hinge else ''}-{amount:g}"


def channel_arms(config: ChannelsConfig, amount: float) -> list[Arm]:
    arms = []
    for hinge in (False, True) if config.hinge else (False,):
        lam = {"lam": config.lam, "tau": config.tau} if hinge else {}
        for m in config.methods:
            scoring = replace(config.finetune, epochs=config.score_epochs, lr=config.score_lr) if m == "hydra" else None
            arms.append(Arm(arm_name(m, amount, hinge), replace(config.finetune, **lam), parent="Dense",
                            keep_best=True, channels=Channels(m, amount, "layer", scoring)))
    return arms


def channels_study(config: ChannelsConfig, data_spec: str) -> Study:
    from ..pruning import CHANNEL_CRITERIA
    from ..pruning.slim import count_macs
    from ..reporting.channels_report import render_channels

    for m in config.methods:
        if m != "hydra":
            CHANNEL_CRITERIA.get(m)  # an unknown criterion: one line naming them
    attacked = Attacked(config)
    arms = {"Dense": Arm("Dense", config.dense, keep_best=True)}
    arms |= {a.name: a for s in config.amounts for a in channel_arms(config, s)}

    def record(ctx: Context, t: Trained) -> dict:
        macs, params = count_macs(t.model, ctx.data.x_test[:1].float().to(ctx.device) / 255)
        return {**ctx.train_record(t), "params": params, "macs": macs, **attacked.clean_and_pgd(ctx, t),
                "stats": weight_stats(t.model)}

    def latency(ctx: Context) -> None:
        """Every network shape of the first seed timed side by side (the per-group criteria and the hinge leave
        the same shapes at one amount, so one model stands for each amount)."""
        from ..evaluation.latency import interleaved_latency

        seed = config.seeds[0]
        models = {"Dense": ctx.model(seed, "Dense").model}
        models |= {f"{100 * s:g}%": ctx.model(seed, arm_name(config.methods[0], s)).model for s in config.amounts}
        x = ctx.data.x_test[:config.latency_batch].float().to(ctx.device) / 255
        ms = interleaved_latency(models, x, config.latency_rounds)
        ctx.state["latency"] = {"ms": ms, "batch": len(x), "rounds": config.latency_rounds, "device": str(ctx.device),
                                "threads": torch.get_num_threads(), "machine": machine_line(), "seed": seed}
        ctx.st.save()

    def plan(ctx: Context) -> None:
        # every seed's dense model; one amount at a time, each arm on every seed, trained and evaluated, then
        # attacked; the dense models' suite; then the latency of every shape, measured side by side
        steps = [Step(seed, "Dense", ("record",)) for seed in config.seeds]
        for s in config.amounts:
            names = [a.name for a in channel_arms(config, s)]
            steps += [Step(seed, n, ("record",)) for n in names for seed in config.seeds]
            steps += [Step(seed, n, ("suite",)) for n in names for seed in config.seeds]
        ctx.run(steps + [Step(seed, "Dense", ("suite",)) for seed in config.seeds])
        if ctx.only is None:  # a process given part of the plan leaves the timing to the full run
            latency(ctx)

    return Study(kind={"study": "channels"}, config=config, arch=config.arch,
                 root_key=scratch_key(config.arch, data_spec, config.train_images),
                 arms=arms,
                 measures={"record": Measure(record, row=True), "suite": Measure(attacked.suite, gate="clean")},
                 plan=plan, render=functools.partial(render_channels, default_grid=default_grid()),
                 prepare=first_train_images(config.train_images),
                 suite_identity=(config.suite, config.suite_images))


def run_channels(data_spec: str, out_dir: str | Path, config: ChannelsConfig, device: torch.device,
                 progress: Progress | None = None, only=None) -> dict:
    """The channel study, every unit cached; returns the results state."""
    return run_study(channels_study(config, data_spec), data_spec, out_dir, device, progress, only)
