"""The paper's comparison as a grid of cached units: Baseline, CP, RP, Ours, and the CP-vs-RP sweep.

Every unit (a fine-tuned model, an evaluation) is stored under
``out_dir/units/<name>-<config hash>/``; rerunning with the same config
loads it instead of recomputing, so an interrupted grid continues where it
stopped and a changed config never reuses a stale result.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from torch import nn

from ..checkpoint import load_checkpoint
from ..data import ImageData
from ..distributed import is_main
from ..evaluation.accuracy import evaluate, fixed_subset
from ..io import write_json
from ..evaluation.stats import weight_stats
from ..training import TrainConfig, train_into
from ..progress import Progress, progress_counter
from .store import UnitStore, config_key


@dataclass(frozen=True)
class Arm:
    name: str  # label in tables and plots
    method: str | None  # pruning criterion, None for no pruning
    amount: float  # fraction pruned, [0, 1)
    lam: float = 0.0  # high-magnitude penalty weight (0 = off)


@dataclass(frozen=True)
class EvalConfig:
    eps: tuple[float, ...]  # L-inf radii in pixel units (fractions of 1, e.g. 8/255)
    steps: int = 4  # PGD steps (the paper's PGD-4)
    step_scale: float = 2.5  # step size = step_scale * eps / steps
    random_start: bool = False  # uniform start in the eps-ball
    n_images: int | None = None  # first n test images; None = all
    batch_size: int = 256  # images per attack batch
    seed: int = 0  # seed of the random start
    eps_scale: tuple[float, ...] | None = None  # per-channel factor on eps (normalised-input reading)
    per_image: bool = False  # keep which images were correct (packed bits), for paired tests on the same images
    precision: str = "fp32"  # the attack's passes (bf16 is weaker, never stronger: outcomes are checked in fp32)


@dataclass(frozen=True)
class GridConfig:
    finetune: TrainConfig  # fine-tuning of each arm from the baseline
    evaluation: EvalConfig
    arms: tuple[Arm, ...]
    sweep_ratios: tuple[float, ...] = ()  # Figure 2: pruning ratios for CP and RP
    sweep_epochs: int = 1  # fine-tuning epochs after each one-shot sweep pruning
    sweep_methods: tuple[str, ...] = ("cp", "rp")
    extra: dict = field(default_factory=dict)  # free-form notes written with the results


def finetuned(base: nn.Module, base_key, data: ImageData, config: TrainConfig, out_dir: Path, name: str,
              progress: Progress | None = None, keep_best: bool = False, masks: dict | None = None
              ) -> tuple[nn.Module, dict]:
    """``base`` fine-tuned with ``config`` (a cached unit); returns (model, masks). ``masks``: a mask to train
    under (e.g. learned by HYDRA; ``base_key`` then says how it was found).

    ``keep_best``: when adversarial training collapses (catastrophic overfitting, caught by the guard), the unit
    keeps the guard's best checkpoint and says so in its metadata ("stopped"), instead of failing the grid.
    """
    device = next(base.parameters()).device

    def load(path: Path):
        model, masks, _ = load_checkpoint(path / "model.safetensors")
        return model.to(device), masks

    def make(path: Path):
        model = copy.deepcopy(base)
        result = train_into(path, model, data, config, masks=masks, progress=progress, meta={"unit": name},
                            keep_best=keep_best)
        return model, result["masks"]

    return UnitStore(out_dir, progress).compute(name, {"base": base_key, "train": config_key(config)}, load, make)


def evaluated(model: nn.Module, model_key, data: ImageData, config: EvalConfig, out_dir: Path, name: str,
              progress: Progress | None = None) -> dict:
    """Clean and PGD accuracy of ``model`` on the test split under ``config`` (a cached unit)."""

    def make(path: Path) -> dict:
        n = len(data.x_test) if config.n_images is None else min(config.n_images, len(data.x_test))
        eps_list = [list(e * s for s in config.eps_scale) if config.eps_scale else e for e in config.eps]
        tick = progress_counter(progress, name, n * len(eps_list))
        x, y = fixed_subset(data.x_test, data.y_test, n)
        result = evaluate(model, x, y, eps_list, config.steps, batch_size=config.batch_size,
                          step_scale=config.step_scale, random_start=config.random_start, seed=config.seed,
                          progress=tick, per_image=config.per_image, precision=config.precision)
        for row, eps in zip(result["robust"], config.eps):
            row["eps"] = eps  # report the nominal (pixel) eps, the per-channel values are in the config
        result["config"] = asdict(config)
        if is_main():
            write_json(path / "eval.json", result)
        return result

    return UnitStore(out_dir, progress).compute(f"eval-{name}", {"model": model_key, "eval": config_key(config)},
                                                lambda p: json.loads((p / "eval.json").read_text()), make)


def run_grid(base: nn.Module, base_key, data: ImageData, config: GridConfig, out_dir: str | Path,
             progress: Progress | None = None) -> dict:
    """Fine-tune every arm from ``base``, evaluate and describe each, then run the sweep."""
    out = Path(out_dir)
    rows = {}
    for arm in config.arms:
        if arm.method is None and arm.lam == 0:
            model, key = base, base_key
        else:
            ft = replace(config.finetune, method=arm.method, amount=arm.amount, lam=arm.lam).validate()
            model, _ = finetuned(base, base_key, data, ft, out, arm.name, progress)
            key = {"base": base_key, "train": config_key(ft)}
        rows[arm.name] = {"arm": asdict(arm),
                          "eval": evaluated(model, key, data, config.evaluation, out, arm.name, progress),
                          "stats": weight_stats(model)}
    sweep = run_sweep(base, base_key, data, data, config.finetune, config.sweep_ratios, config.sweep_epochs,
                      config.sweep_methods, {None: config.evaluation}, out, progress)
    return {"rows": rows, "sweep": sweep, "config": asdict(config)}


def run_sweep(base: nn.Module, base_key, train_data: ImageData, eval_data: ImageData, finetune: TrainConfig,
              ratios, epochs: int, methods, evaluations: dict, out_dir: Path,
              progress: Progress | None = None) -> list[dict]:
    """Figure 2: one-shot pruning of ``base`` by each method at each ratio, fine-tuned ``epochs`` epochs (cached).

    ``evaluations`` maps a reading label to its EvalConfig; label None is the grid's single evaluation (the
    entries then carry no "reading"), and the first label keeps the plain unit name so earlier caches hold.
    """
    sweep = []
    labels = list(evaluations)
    for method in methods if ratios else ():
        for ratio in ratios:
            ft = replace(finetune, epochs=epochs, method=method, amount=ratio, lam=0.0).validate()
            name = f"sweep-{method}-{ratio:g}"
            model, _ = finetuned(base, base_key, train_data, ft, out_dir, name, progress)
            key = {"base": base_key, "train": config_key(ft)}
            for label in labels:
                unit = name if label == labels[0] else f"{name}-{label}"
                ev = evaluated(model, key, eval_data, evaluations[label], out_dir, unit, progress)
                entry = {"method": method, "ratio": ratio, "eval": ev}
                if label is not None:
                    entry["reading"] = label
                sweep.append(entry)
    return sweep
