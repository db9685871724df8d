"""The embedded demo: the paper's comparison on scikit-learn's 8x8 digits, no download needed.

Eps grid: digits have 17 grey levels (steps of 1/16 = 16/255), so the paper's
1-8/255 would not even change one level. The demo uses 8, 16, 32 and
48/255: half a level up to three levels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint
from ..data import load_digits
from ..evaluation.stats import weight_stats
from ..models import create_model
from ..progress import Progress
from ..reporting.markdown import grid_markdown, plot_grid
from ..training import TrainConfig, train_into
from .engine import Arm, Context, Measure, Step, Study, Trained, run_study
from ..evaluation.run import EvalRequest
from .grid import evaluated, unit_request
from .store import UnitStore, config_key

# ---- Demo hyperparameters (one block, as the results are stored with them) ----
BASELINE = TrainConfig(epochs=30, batch_size=64, lr=0.05, weight_decay=5e-4, schedule="cosine", seed=0)
FINETUNE = TrainConfig(epochs=10, batch_size=64, lr=0.01, weight_decay=5e-4, schedule="cosine", seed=0)
ARMS = {  # name: (method, amount, lam); the paper's CP at 50%, RP at 10%, Ours = the penalty above tau = q0.9
    "Baseline": (None, 0.0, 0.0), "CP": ("cp", 0.5, 0.0), "RP": ("rp", 0.1, 0.0), "Ours": ("cp", 0.5, 0.1)}
EVAL = unit_request((8 / 255, 16 / 255, 32 / 255, 48 / 255), 10, random_start=True)
SWEEP_RATIOS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
SWEEP_EPOCHS = FINETUNE.epochs


@dataclass(frozen=True)
class DemoConfig:
    """What the demo's results.json records under "config"."""

    finetune: TrainConfig
    evaluation: EvalRequest
    arms: tuple[dict, ...]
    sweep_ratios: tuple[float, ...]
    sweep_epochs: int
    sweep_methods: tuple[str, ...]
    extra: dict


def demo_study(device: str | torch.device = "cpu") -> Study:
    """The demo as a study: the Baseline (its own cached unit), CP, RP and Ours fine-tuned from it, the sweep."""
    data = load_digits()
    title = (f"robprune demo: small CNN on scikit-learn digits (8x8, {len(data.x_train):,} train / "
             f"{len(data.x_test):,} test)")
    config = DemoConfig(FINETUNE, EVAL, tuple(_arm(n) for n in ARMS), SWEEP_RATIOS, SWEEP_EPOCHS, ("cp", "rp"),
                        {"data": "digits", "arch": "small_cnn", "baseline": asdict(BASELINE), "device": str(device)})

    def root(ctx: Context, seed: int):
        mean, std = ctx.data.channel_stats()
        key = {"data": ctx.data.name, "arch": "small_cnn", "train": config_key(BASELINE), "mean": mean, "std": std}

        def make(path: Path):
            torch.manual_seed(BASELINE.seed)
            model = create_model("small_cnn", num_classes=10, in_channels=1, mean=mean, std=std).to(ctx.device)
            train_into(path, model, ctx.data, BASELINE, progress=ctx.progress, meta={"unit": "Baseline"})
            return model

        model = UnitStore(ctx.out, ctx.progress).compute(
            "baseline", key, lambda p: load_checkpoint(p / "model.safetensors")[0].to(ctx.device), make)
        return model, key

    arms = [Arm("Baseline")] + [Arm(n, replace(FINETUNE, method=m, amount=a, lam=lam), parent="Baseline")
                                for n, (m, a, lam) in ARMS.items() if n != "Baseline"]
    sweeps = {f"sweep-{m}-{r:g}": (m, r) for m in ("cp", "rp") for r in SWEEP_RATIOS}
    arms += [Arm(n, replace(FINETUNE, epochs=SWEEP_EPOCHS, method=m, amount=r, lam=0.0), parent="Baseline")
             for n, (m, r) in sweeps.items()]

    def row(ctx: Context, t: Trained) -> dict:
        return {"arm": _arm(t.arm),
                "eval": evaluated(t.model, t.key, ctx.data, EVAL, ctx.out, t.arm, ctx.progress),
                "stats": weight_stats(t.model)}

    def sweep(ctx: Context, t: Trained) -> dict:
        method, ratio = sweeps[t.arm]
        return {"method": method, "ratio": ratio,
                "eval": evaluated(t.model, t.key, ctx.data, EVAL, ctx.out, t.arm, ctx.progress)}

    def place_row(state: dict, t: Trained, value: dict) -> None:
        state["rows"][t.arm] = value

    def place_sweep(state: dict, t: Trained, value: dict) -> None:  # replaces the point another process saved
        state["sweep"] = [p for p in state["sweep"] if (p["method"], p["ratio"]) != (value["method"], value["ratio"])]
        state["sweep"].append(value)

    def plan(ctx: Context) -> None:
        ctx.run([Step(0, name, ("row",)) for name in ARMS])
        ctx.run([Step(0, name, ("sweep",)) for name in sweeps])

    return Study(kind={}, config=config, arch="small_cnn", root_key=lambda seed: {}, root=root,
                 unit_name=lambda seed, unit: unit, arms={a.name: a for a in arms},
                 measures={"row": Measure(row, place=place_row), "sweep": Measure(sweep, place=place_sweep)},
                 plan=plan, render=lambda state: _render(state, title, len(data.x_test)),
                 state={"rows": {}, "sweep": []},
                 figures=lambda state, out: [plot_grid(state, out / "demo.png", title).name]
                 if state.get("done") else [])


def _arm(name: str) -> dict:
    return dict(zip(("name", "method", "amount", "lam"), (name, *ARMS[name])))


def _render(state: dict, title: str, n_test: int) -> str:
    if not state.get("done"):
        return (f"# {title}\n\nIn progress: {len(state['rows'])} of {len(ARMS)} models and "
                f"{len(state['sweep'])} of {2 * len(SWEEP_RATIOS)} sweep points done (results.json).\n")
    preamble = (f"Attack: L-inf PGD-{EVAL.steps}, step {EVAL.step_scale}*eps/{EVAL.steps}, random start, "
                f"on all {n_test} test images. Digits have 17 grey levels (1/16 = 16/255 apart), "
                "so eps runs from half a level (8/255) to three levels (48/255).\n\n"
                f"Fine-tuning of every arm: {FINETUNE.epochs} epochs from the baseline; Figure 2 sweep: "
                f"one-shot pruning then {SWEEP_EPOCHS} epochs. Figure: demo.png.")
    return grid_markdown(state, title, preamble)


def run_demo(out_dir: str | Path, device: str | torch.device = "cpu", progress: Progress | None = None) -> dict:
    """Train the baseline, fine-tune and evaluate every arm and the sweep; results.json, report.md and demo.png in
    ``out_dir``."""
    return run_study(demo_study(device), "digits", out_dir, torch.device(device), progress)
