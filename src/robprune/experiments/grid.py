"""The cached units every study is made of: a model fine-tuned from a base (``finetuned``) and its clean and PGD
accuracy under an ``EvalConfig`` (``evaluated``).

Every unit is stored under ``out_dir/units/<name>-<config hash>/``; rerunning with the same config loads it
instead of recomputing, so an interrupted study continues where it stopped and a changed config never reuses a
stale result. The study engine (``engine.py``) builds its models and measures from them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

from ..checkpoint import load_checkpoint
from ..data import ImageData
from ..distributed import is_main
from ..evaluation.accuracy import evaluate, fixed_subset
from ..io import write_json
from ..training import TrainConfig, train_into
from ..progress import Progress, progress_counter
from .store import UnitStore, config_key


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


def model_loader(device):
    """How a cached model unit is read back: (model on ``device``, masks) from its model.safetensors."""
    def load(path: Path):
        model, masks, _ = load_checkpoint(path / "model.safetensors")
        return model.to(device), masks

    return load


def finetuned(base: nn.Module, base_key, data: ImageData, config: TrainConfig, out_dir: Path, name: str,
              progress: Progress | None = None, keep_best: bool = False, masks: dict | None = None
              ) -> tuple[nn.Module, dict]:
    """``base`` fine-tuned with ``config`` (a cached unit); returns (model, masks). ``masks``: a mask to train
    under (e.g. learned by HYDRA; ``base_key`` then says how it was found).

    ``keep_best``: when adversarial training collapses (catastrophic overfitting, caught by the guard), the unit
    keeps the guard's best checkpoint and says so in its metadata ("stopped"), instead of failing the grid.
    """
    device = next(base.parameters()).device

    def make(path: Path):
        model = copy.deepcopy(base)
        result = train_into(path, model, data, config, masks=masks, progress=progress, meta={"unit": name},
                            keep_best=keep_best)
        return model, result["masks"]

    return UnitStore(out_dir, progress).compute(name, {"base": base_key, "train": config_key(config)},
                                                model_loader(device), make)


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
