"""``robprune reproduce``: the paper's grid on real data, as cached stages, with an honest report.

Stages, in order (each unit cached under ``out_dir/units``, so a rerun skips
what is done and an interrupted run continues):

1. Baseline: the ``--init`` model (or a model trained from scratch when no
   init is given) fine-tuned on the train part of the data.
2. Eps readings: the paper's baseline row under several readings of its eps
   unit and of "PGD-4", on ``calib_images`` test images (a fixed random subset, every class).
3. CP 50% and RP 10%, fine-tuned from the Baseline.
4. Ours: CP 50% with the Eq. 4 penalty; lam chosen on a held-out part of the
   train split (never the test split) among ``lam_grid``.
5. Table 2 on the test split under the pixel reading and the reading that best
   matches the paper; Table 1; the Eq. 3 bounds beside measured distortion.
6. Figure 2: CP vs RP over ``sweep_ratios``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..evaluation.bounds import lipschitz_bound, measured_distortion
from ..checkpoint import import_checkpoint, load_checkpoint
from ..data import ImageData, load_dataset
from ..distributed import is_main
from .grid import EvalConfig, Progress, config_key, evaluated, finetuned, run_sweep
from .store import defer_busy
from ..io import prepare_out_dir, write_json, write_text_atomic
from ..models import create_model
from ..reporting.markdown import plot_grid
from ..reporting.reproduce_report import render_report
from ..evaluation.accuracy import fixed_subset
from ..evaluation.stats import weight_stats
from ..training import TrainConfig
from .reproduce_config import PAPER_EPS, READINGS, Reading, ReproduceConfig


def split_holdout(data: ImageData, holdout: int, limit: int | None, seed: int = 0) -> ImageData:
    """The train split minus ``holdout`` images, which become its 'test' split (a fixed permutation)."""
    n = len(data.x_train)
    if not 0 < holdout < n:
        raise ValueError(f"holdout must be between 1 and {n - 1} images, got {holdout}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    hold, rest = order[:holdout], order[holdout:]
    if limit is not None:
        rest = rest[:limit]
    train = replace(data, x_train=data.x_train[rest], y_train=data.y_train[rest],
                    x_test=data.x_train[hold], y_test=data.y_train[hold])
    return train


def _eval_config(reading: Reading, n_images: int | None, batch: int, std: tuple[float, ...]) -> EvalConfig:
    return EvalConfig(eps=PAPER_EPS, steps=reading.steps, step_scale=reading.step_scale,
                      random_start=reading.random_start, n_images=n_images, batch_size=batch,
                      eps_scale=std if reading.normalized else None)


def _load_init(path: str | None, arch: str, data: ImageData) -> tuple[torch.nn.Module, dict]:
    if path is None:
        torch.manual_seed(0)
        mean, std = data.channel_stats()
        model = create_model(arch, num_classes=len(data.classes), in_channels=data.in_channels, mean=mean, std=std)
        return model, {"init": "scratch", "arch": arch}
    if path.endswith(".safetensors"):
        model, _, _ = load_checkpoint(path, expect_arch=arch)
    else:
        model = import_checkpoint(path, arch, num_classes=len(data.classes))
    return model, {"init": str(Path(path).resolve()), "arch": arch}


def run_reproduce(data_spec: str, init: str | None, out_dir: str | Path, config: ReproduceConfig,
                  device: torch.device, progress: Progress | None = None,
                  on_stage: Callable[[dict], None] | None = None) -> dict:
    """Run every stage (cached); the report is rewritten after each stage so partial results are visible."""
    t0 = time.time()
    out = prepare_out_dir(out_dir)
    data = load_dataset(data_spec)
    train_data = split_holdout(data, config.holdout, config.train_images)
    init_model, init_key = _load_init(init, config.arch, data)
    init_model.to(device)
    std = tuple(float(s) for s in init_model.normalize.std.flatten())
    state: dict = {"config": asdict(config), "data": data_spec, "init": init, "device": str(device),
                   "stages": {}}
    base_key = {**init_key, "data": data_spec, "holdout": config.holdout, "train_images": config.train_images}

    def stage_done(name: str, value) -> None:
        state["stages"][name] = value
        state["elapsed_s"] = time.time() - t0 + state.get("elapsed_before_s", 0.0)
        if is_main():
            write_json(out / "results.json", state)
            write_text_atomic(out / "report.md", render_report(state, _runs_log(out)))
        if on_stage is not None:
            on_stage({"stage": name})

    # 1. Baseline
    baseline, _ = finetuned(init_model, base_key, train_data, config.baseline, out, "Baseline", progress)
    baseline_key = {"base": base_key, "train": config_key(config.baseline)}

    # 2. Eps readings on the Baseline
    def reading(r) -> dict:
        ev = evaluated(baseline, baseline_key, data, _eval_config(r, config.calib_images, config.eval_batch, std),
                       out, f"reading-{r.name}", progress)
        return {"reading": asdict(r), "eval": ev}

    # processes sharing the folder (--share) divide independent units
    readings = {r.name: v for r, v in zip(READINGS, defer_busy(READINGS, reading))}
    stage_done("readings", readings)
    best = min(readings.values(), key=lambda v: _paper_distance(v["eval"]))["reading"]["name"]
    best_reading = next(r for r in READINGS if r.name == best)

    # 3-4. CP, RP and the lam search for Ours (CP is the lam = 0 candidate)
    arms: dict[str, tuple[torch.nn.Module, dict, TrainConfig]] = {"Baseline": (baseline, baseline_key, config.baseline)}
    def candidate(lam: float) -> tuple[str, dict]:
        ft = replace(config.finetune, method="cp", amount=config.cp_amount, lam=lam, tau=config.tau).validate()
        name = "CP" if lam == 0 else f"Ours-lam{lam:g}"
        model, _ = finetuned(baseline, baseline_key, train_data, ft, out, name, progress)
        key = {"base": baseline_key, "train": config_key(ft)}
        ev = evaluated(model, key, train_data, _eval_config(best_reading, config.search_images,
                                                              config.eval_batch, std), out, f"holdout-{name}", progress)
        return name, {"lam": lam, "eval": ev, "model": (model, key, ft)}

    search = dict(defer_busy((0.0, *config.lam_grid), candidate))
    cp_clean = search["CP"]["eval"]["clean"]["accuracy"]
    allowed = [s for n, s in search.items() if n != "CP"
               and s["eval"]["clean"]["accuracy"] >= cp_clean - config.max_clean_drop] or \
        [s for n, s in search.items() if n != "CP"]
    chosen = max(allowed, key=lambda s: sum(r["accuracy"] for r in s["eval"]["robust"]))
    arms["CP"] = search["CP"]["model"]
    ft_rp = replace(config.finetune, method="rp", amount=config.rp_amount).validate()
    rp_model, _ = finetuned(baseline, baseline_key, train_data, ft_rp, out, "RP", progress)
    arms["RP"] = (rp_model, {"base": baseline_key, "train": config_key(ft_rp)}, ft_rp)
    arms["Ours"] = chosen["model"]
    stage_done("search", {"reading": best, "chosen_lam": chosen["lam"], "candidates": {
        n: {"lam": s["lam"], "eval": s["eval"]} for n, s in search.items()}})

    # 5. Table 1, Eq. 3 and Table 2 under the pixel reading, then the best-matching reading
    stats = {name: weight_stats(m) for name, (m, _, _) in arms.items()}
    stage_done("stats", stats)
    shape = tuple(data.x_test.shape[1:])
    x_bound, y_bound = fixed_subset(data.x_test, data.y_test, config.bound_images)
    bounds = {name: {"l1": lipschitz_bound(m, shape, "l1"), "spectral": lipschitz_bound(m, shape, "spectral"),
                     "measured": measured_distortion(m, x_bound, y_bound, 8 / 255)}
              for name, (m, _, _) in arms.items()}
    stage_done("bounds", bounds)
    readings_used = [next(x for x in READINGS if x.name == n) for n in dict.fromkeys(["pixel", best])]
    for r in readings_used:
        table = {name: {"eval": evaluated(m, key, data, _eval_config(r, config.eval_images, config.eval_batch, std),
                                          out, f"test-{r.name}-{name}", progress),
                        "stats": stats[name], "train": asdict(ft)}
                 for name, (m, key, ft) in arms.items()}
        stage_done(f"table2-{r.name}", table)

    # 5b. Worst case over a suite of stronger attacks (APGD-CE, APGD-DLR, Square), pixel units, beside the
    # Table 2 attacks on the very same images, so a gain that exists only under the weak attack shows up.
    def suite_of(name: str) -> dict:
        m, key, _ = arms[name]
        result = suite_evaluated(m, key, data, config, out, name, progress)
        result["reference"] = {
            r.name: evaluated(m, key, data, _eval_config(r, result["n"], config.eval_batch, std), out,
                              f"suite-ref-{r.name}-{name}", progress) for r in readings_used}
        return result

    suite = dict(zip(arms, defer_busy(arms, suite_of)))
    stage_done("suite", suite)

    # 6. Figure 2 sweep, under the best-matching reading (its units keep their old names) and the pixel one
    order = [best] + [r.name for r in readings_used if r.name != best]
    sweep = run_sweep(baseline, baseline_key, train_data, data, config.finetune, config.sweep_ratios,
                      config.sweep_epochs, ("cp", "rp"),
                      {name: _eval_config(next(r for r in READINGS if r.name == name), config.sweep_images,
                                          config.eval_batch, std) for name in order}, out, progress)
    stage_done("sweep", sweep)
    state["figures"] = write_figures(state, out) if is_main() else []
    stage_done("done", True)
    return state


def suite_evaluated(model, model_key, data: ImageData, config: ReproduceConfig, out: Path, name: str,
                    progress: Progress | None) -> dict:
    """Worst case over ``config.suite`` at the paper's eps, plus the sanity checks (a cached unit)."""
    import json

    from ..evaluation.checks import check_images, sanity_checks
    from ..evaluation.suite import SUITES, BatchLog, worst_case
    from ..progress import progress_counter
    from .store import UnitStore

    n = min(config.suite_images, len(data.x_test))

    def make(path: Path) -> dict:
        model.eval()  # a model fresh from training is in train mode; attacks and checks judge the eval-mode model
        x, y = fixed_subset(data.x_test, data.y_test, n)
        attacks = SUITES[config.suite]
        tick = progress_counter(progress, f"suite-{name}", n * len(attacks) * len(PAPER_EPS))
        rows = [worst_case(model, x, y, e, attacks, config.eval_batch, progress=tick, log=BatchLog(path, f"eps{i}"))
                for i, e in enumerate(PAPER_EPS)]  # each eps's finished batches are saved: a stopped unit continues
        x_check, y_check = check_images(x, y, min(200, n))
        checks = sanity_checks(model, x_check, y_check, list(PAPER_EPS), 4, config.eval_batch)
        result = {"n": n, "suite": config.suite, "attacks": [a.__dict__ for a in attacks],
                  "rows": rows, "sanity_checks": checks}
        if is_main():
            write_json(path / "suite.json", result)
        return result

    return UnitStore(out, progress).compute(f"suite-{name}", {"model": model_key, "suite": config.suite, "n": n},
                                            lambda p: json.loads((p / "suite.json").read_text()), make)


def _paper_distance(ev: dict) -> float:
    """Mean absolute difference (points) from the paper's Baseline PGD row."""
    paper = (44.16, 36.08, 23.75, 15.73)
    return sum(abs(100 * r["accuracy"] - p) for r, p in zip(ev["robust"], paper)) / len(paper)


def rewrite_report(out: Path) -> str:
    """Re-render report.md (and the figure, from whatever stages exist) from ``out/results.json``."""
    import json

    path = out / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run reproduce first")
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, RecursionError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not readable JSON: {type(err).__name__}: {err}") from None
    if not isinstance(state, dict) or not isinstance(state.get("stages"), dict) or "config" not in state:
        raise ValueError(f"{path} is not a reproduce results file (it has no 'stages' and 'config'); "
                         "run reproduce first")
    try:
        if "sweep" in state["stages"]:
            state["figures"] = write_figures(state, out)
        text = render_report(state, _runs_log(out))
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as err:
        raise ValueError(f"{path} lacks what the report needs ({type(err).__name__}: {err}); it may come from "
                         "an unfinished or damaged run") from None
    write_text_atomic(out / "report.md", text)
    return text


def _runs_log(out: Path) -> str:
    """The invocation log the CLI appends to, quoted in the report ("" before the first run)."""
    path = out / "runs.log"
    return path.read_text() if path.is_file() else ""


def write_figures(state: dict, out: Path) -> list[str]:
    """One figure per attack reading with a Table 2: accuracy vs eps, weights, and the sweep under that reading.

    figure.png is the reading that best matches the paper, figure-<reading>.png the others.
    """
    st = state["stages"]  # a Table 2 stage exists only after the readings and search stages
    best = st["search"]["reading"]
    names = []
    for key in sorted((k for k in st if k.startswith("table2-")), key=lambda k: k != f"table2-{best}"):
        reading = key.removeprefix("table2-")
        r = st["readings"][reading]["reading"]
        sweep = [s for s in st.get("sweep", []) if s["reading"] == reading]
        name = "figure.png" if reading == best else f"figure-{reading}.png"
        plot_grid({"rows": st[key], "sweep": sweep}, out / name,
                  f"{state['config']['arch']} on {Path(state['data']).name}; attack reading '{reading}': "
                  f"{r['description']}", attack="FGSM" if r["steps"] == 1 else f"PGD-{r['steps']}")
        names.append(name)
    return names
