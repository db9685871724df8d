"""The cached units every study is made of: a model fine-tuned from a base (``finetuned``) and its clean and PGD
accuracy under an ``EvalRequest`` (``evaluated``, through the one evaluation path ``run_evaluation``).

Every unit is stored under ``out_dir/units/<name>-<config hash>/``; rerunning with the same config loads it
instead of recomputing, so an interrupted study continues where it stopped and a changed config never reuses a
stale result. The study engine (``engine.py``) builds its models and measures from them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from torch import nn

from ..checkpoint import load_checkpoint
from ..data import ImageData
from ..distributed import is_main
from ..evaluation.accuracy import fixed_subset
from ..evaluation.run import EvalRequest, run_evaluation
from ..io import write_json
from ..training import TrainConfig, train_into
from ..progress import Progress
from ..results import upgrade_evaluation
from .store import UnitStore, config_key


# What an evaluation unit has always been keyed by, and those fields' defaults then: the key holds the fields that
# differ from them, so units cached by earlier versions (whose key was that config) stay valid.
_KEYED = {"steps": 4, "step_scale": 2.5, "random_start": False, "n_images": None, "batch_size": 256, "seed": 0,
          "eps_scale": None, "per_image": False, "precision": "fp32"}


def eval_key(request: EvalRequest, n_images: int | None) -> dict:
    """The cache key of the evaluation of ``request`` on the first ``n_images`` test images (None: all)."""
    values = {**{k: getattr(request, k) for k in _KEYED if k != "n_images"}, "n_images": n_images}
    return {"eps": tuple(request.eps), **{k: v for k, v in values.items() if v != _KEYED[k]}}


def unit_request(eps=(), steps: int = 4, random_start: bool = False, **fields) -> EvalRequest:
    """The request of a study's evaluation unit: plain PGD (no checks: the suite units run them) with the given
    fields, starting from the units' defaults (PGD-4 without random start)."""
    return EvalRequest(eps=tuple(eps), steps=steps, random_start=random_start, checks=False, **fields)


def model_loader(device, like: nn.Module | None = None):
    """How a cached model unit is read back: (model on ``device``, masks) from its model.safetensors. ``like``:
    the model the unit started from; when a user's ``package.module:factory`` built it, that factory may rebuild
    the unit's model too."""
    arch = (getattr(like, "robprune_spec", None) or {}).get("arch")
    expect = arch if isinstance(arch, str) and ":" in arch else None

    def load(path: Path):
        model, masks, _ = load_checkpoint(path / "model.safetensors", expect_arch=expect)
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
                                                model_loader(device, base), make)


def evaluated(model: nn.Module, model_key, data: ImageData, request: EvalRequest, out_dir: Path, name: str,
              progress: Progress | None = None, n_images: int | None = None, log: bool = False,
              key: dict | None = None, unit: str = "eval") -> dict:
    """``run_evaluation`` of ``model`` on the first ``n_images`` test images (``fixed_subset``; None: all) as a
    cached unit named ``<unit>-<name>`` (stored as <unit>.json). ``log``: an interrupted suite continues from its
    saved batches. ``key``: the unit's key instead of the model and ``eval_key``."""

    def make(path: Path) -> dict:
        n = len(data.x_test) if n_images is None else min(n_images, len(data.x_test))
        x, y = fixed_subset(data.x_test, data.y_test, n)
        result = run_evaluation(model, x, y, request, progress, f"{unit}-{name}", log_dir=path if log else None)
        if is_main():
            write_json(path / f"{unit}.json", result)
        return result

    return UnitStore(out_dir, progress).compute(
        f"{unit}-{name}", key or {"model": model_key, "eval": eval_key(request, n_images)},
        lambda p: upgrade_evaluation(json.loads((p / f"{unit}.json").read_text())), make)
