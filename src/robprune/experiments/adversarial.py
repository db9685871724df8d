"""The adversarial pruning study (issue 15): adversarially trained dense networks pruned by each method at each
sparsity, fine-tuned adversarially, evaluated under the suite; every unit cached."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..data import load_dataset
from ..distributed import is_main
from ..evaluation.accuracy import fixed_subset
from ..io import prepare_out_dir
from ..progress import Progress
from ..training import TrainConfig
from .grid import EvalConfig, evaluated, finetuned
from .study_units import described, init_model, place_row, suite_or_skip, suite_unit, train_history
from .store import config_key, defer_busy, machine_line, unit_dir
from .study_state import StudyState


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


def run_adversarial(data_spec: str, out_dir: str | Path, config: AdversarialConfig, device: torch.device,
                    progress: Progress | None = None) -> dict:
    """The adversarial pruning study (issue 15's grid), every unit cached; returns the results state."""
    from ..export import APB_ARCHS, export_model
    from ..reporting.study_report import render_adversarial

    out = prepare_out_dir(out_dir)
    data = load_dataset(data_spec)
    if config.train_images is not None:
        data = replace(data, x_train=data.x_train[:config.train_images], y_train=data.y_train[:config.train_images])
    x_bound, y_bound = fixed_subset(data.x_test, data.y_test, config.bound_images)
    st = StudyState(out, {"study": "adversarial", "config": asdict(config), "data": data_spec, "device": str(device),
                      "torch_threads": torch.get_num_threads(), "machine": machine_line(), "seeds": {}},
                     functools.partial(render_adversarial, default_grid=default_grid()))
    clean_eval = EvalConfig(eps=(), n_images=None, batch_size=config.eval_batch, per_image=True)
    pgd_eval = EvalConfig(eps=config.pgd_eps, steps=config.pgd_steps, step_scale=2.5, random_start=True,
                          n_images=config.pgd_images, batch_size=config.eval_batch, per_image=True)
    dense_models = {}

    def dense(seed: int):
        if seed not in dense_models:
            init = init_model(config.arch, data, seed).to(device)
            key0 = {"init": "scratch", "arch": config.arch, "seed": seed, "data": data_spec,
                    "train_images": config.train_images}
            cfg = replace(config.dense, seed=seed).validate()
            model, _ = finetuned(init, key0, data, cfg, out, f"s{seed}-Dense", progress, keep_best=True)
            dense_models[seed] = (model, {"base": key0, "train": config_key(cfg)}, cfg, key0)
        return dense_models[seed]

    def pruned(seed: int, name: str, changes: dict):
        base, bkey, _, _ = dense(seed)
        cfg = replace(config.finetune, seed=seed, **changes).validate()
        model, masks = finetuned(base, bkey, data, cfg, out, f"s{seed}-{name}", progress, keep_best=True)
        return model, {"base": bkey, "train": config_key(cfg)}, cfg, masks

    def record(seed: int, name: str, model, key, cfg) -> None:
        row = {"train": asdict(cfg), "history": train_history(out, f"s{seed}-{name}", key),
               "checkpoint": str((unit_dir(out, f"s{seed}-{name}", key) / "model.safetensors").relative_to(out))}
        row["clean"] = evaluated(model, key, data, clean_eval, out, f"clean-s{seed}-{name}", progress)
        row["pgd"] = evaluated(model, key, data, pgd_eval, out, f"pgd-s{seed}-{name}", progress)
        row.update(described(model, key, out, f"s{seed}-{name}", x_bound, y_bound, progress))
        place_row(st, seed, name, row, config.suite, config.suite_images)

    core = [("Dense", None)] + adversarial_arms(config, config.sparsities) + (
        [(f"RP-{config.rp_paper:g}", {"method": "rp", "amount": config.rp_paper})] if config.rp_paper else [])
    models = {}

    def get(seed, name, changes):
        if (seed, name) not in models:
            if changes is None:
                model, key, cfg, _ = dense(seed)
                masks = {}
            else:
                model, key, cfg, masks = pruned(seed, name, changes)
            models[(seed, name)] = (model, key, cfg, masks)
        return models[(seed, name)]

    # every seed's dense model, then each arm on every seed before the next arm: a run stopped part-way leaves
    # comparisons with all their seeds rather than one seed with every arm
    core_plan = [(seed, name, changes) for name, changes in core for seed in config.seeds]

    def by_verdict(plan, sparsities):
        """``plan`` in the order the verdicts need it: CP and Ours (then RP) at each sparsity, the rest after."""
        rank = {f"{m}-{s:g}": i for i, (s, m) in enumerate((s, m) for s in sparsities for m in ("CP", "Ours", "RP"))}
        return sorted(plan, key=lambda p: rank.get(p[1], len(rank)))

    recorded = set()  # (seed, name) whose row this process has recorded

    def train_and_evaluate_one(seed, name, changes) -> None:
        """Clean, PGD-10, Table 1 and Eq. 3 of one model (trained first when not cached), and its export."""
        model, key, cfg, masks = get(seed, name, changes)
        record(seed, name, model, key, cfg)
        if config.export and is_main():
            # the benchmark's format knows its own base models (ResNet-18, VGG-16-bn); others export as torch
            fmt = "apb" if config.arch in APB_ARCHS else "torch"
            path = out / "export" / f"{config.arch}-s{seed}-{name}.{fmt}.pt"
            if not path.is_file():
                export_model(model, masks, {"arch": config.arch, "unit": f"s{seed}-{name}"}, fmt, path)
            st.state["seeds"][str(seed)][name]["export"] = {"format": fmt, "path": str(path.relative_to(out))}
        recorded.add((seed, name))

    def attack_one(seed, name, changes) -> None:
        """The suite at suite_eps on one model, after its own evaluation (which another process may hold)."""
        if (seed, name) not in recorded:
            train_and_evaluate_one(seed, name, changes)
        row = st.state["seeds"][str(seed)][name]
        suite_or_skip(st, row, row["clean"], lambda: suite_unit(
            *get(seed, name, changes)[:2], data, config.suite, (config.suite_eps,), config.suite_images,
            config.eval_batch, out, f"s{seed}-{name}", progress))

    # Every model's evaluation; then the suite (AutoAttack, ~40 min a ResNet-20 model on one CPU core) on the
    # core grid, the dense reference after the pruned arms; then the extras (cut first when the budget runs out)
    # on the first seed, one sparsity at a time, the highest first (the benchmark's table has 95%, not 50%), each
    # trained then attacked before the next, so a run stopped part-way leaves whole columns. One walk over all of
    # it: a process sharing the folder that meets a unit another one holds goes on to the next step rather than
    # waiting at the end of a stage.
    steps = [(train_and_evaluate_one, p) for p in core_plan]
    steps += [(attack_one, p) for p in by_verdict(core_plan, config.sparsities)]
    for s in sorted(config.extra_sparsities, reverse=True):
        plan = by_verdict([(config.seeds[0], name, changes) for name, changes in adversarial_arms(config, (s,))], (s,))
        steps += [(train_and_evaluate_one, p) for p in plan] + [(attack_one, p) for p in plan]
    defer_busy(steps, lambda step: step[0](*step[1]))
    st.state["done"] = True
    st.save()
    return st.state
