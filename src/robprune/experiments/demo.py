"""The embedded demo: the paper's comparison on scikit-learn's 8x8 digits, no download needed.

Eps grid: digits have 17 grey levels (steps of 1/16 = 16/255), so the paper's
1-8/255 would not even change one level. The demo uses 8, 16, 32 and
48/255: half a level up to three levels.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint
from ..data import load_digits
from ..distributed import is_main
from .grid import Arm, EvalConfig, GridConfig, Progress, config_key, run_grid
from .store import UnitStore
from ..io import prepare_out_dir, write_json, write_text_atomic
from ..models import create_model
from ..reporting.markdown import grid_markdown, plot_grid
from ..training import TrainConfig, train_into

# ---- Demo hyperparameters (one block, as the results are stored with them) ----
BASELINE = TrainConfig(epochs=30, batch_size=64, lr=0.05, weight_decay=5e-4, schedule="cosine", seed=0)
FINETUNE = TrainConfig(epochs=10, batch_size=64, lr=0.01, weight_decay=5e-4, schedule="cosine", seed=0)
ARMS = (
    Arm("Baseline", None, 0.0),
    Arm("CP", "cp", 0.5),  # paper: conventional pruning at 50%
    Arm("RP", "rp", 0.1),  # paper: reverse pruning at 10%
    Arm("Ours", "cp", 0.5, lam=0.1),  # penalty above tau = q0.9 of the baseline |W|, then CP 50%
)
EVAL = EvalConfig(eps=(8 / 255, 16 / 255, 32 / 255, 48 / 255), steps=10, step_scale=2.5, random_start=True)
SWEEP_RATIOS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
SWEEP_EPOCHS = FINETUNE.epochs  # same fine-tuning as the arms, so CP 50% and RP 10% are shared units


def demo_grid() -> GridConfig:
    return GridConfig(finetune=FINETUNE, evaluation=EVAL, arms=ARMS, sweep_ratios=SWEEP_RATIOS,
                      sweep_epochs=SWEEP_EPOCHS,
                      extra={"data": "digits", "arch": "small_cnn", "baseline": asdict(BASELINE)})


def run_demo(out_dir: str | Path, device: str | torch.device = "cpu", progress: Progress | None = None) -> dict:
    """Train the baseline, run the grid, write results.json, report.md and demo.png to ``out_dir``."""
    out = prepare_out_dir(out_dir)
    data = load_digits()
    grid = demo_grid()
    mean, std = data.channel_stats()
    base_key = {"data": data.name, "arch": "small_cnn", "train": config_key(BASELINE), "mean": mean, "std": std}

    def make(path: Path):
        torch.manual_seed(BASELINE.seed)
        model = create_model("small_cnn", num_classes=10, in_channels=1, mean=mean, std=std).to(device)
        train_into(path, model, data, BASELINE, progress=progress, meta={"unit": "Baseline"})
        return model

    base = UnitStore(out, progress).compute("baseline", base_key,
                                            lambda p: load_checkpoint(p / "model.safetensors")[0].to(device), make)
    result = run_grid(base, base_key, data, grid, out, progress)
    result["config"]["extra"]["device"] = str(device)
    title = (f"robprune demo: small CNN on scikit-learn digits "
             f"(8x8, {len(data.x_train):,} train / {len(data.x_test):,} test)")
    preamble = (f"Attack: L-inf PGD-{EVAL.steps}, step {EVAL.step_scale}*eps/{EVAL.steps}, random start, "
                f"on all {len(data.x_test)} test images. Digits have 17 grey levels (1/16 = 16/255 apart), "
                "so eps runs from half a level (8/255) to three levels (48/255).\n\n"
                f"Fine-tuning of every arm: {FINETUNE.epochs} epochs from the baseline; Figure 2 sweep: "
                f"one-shot pruning then {SWEEP_EPOCHS} epochs. Figure: demo.png.")
    if is_main():
        write_json(out / "results.json", result)
        write_text_atomic(out / "report.md", grid_markdown(result, title, preamble))
        plot_grid(result, out / "demo.png", title)
    return result
