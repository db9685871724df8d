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

from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..checkpoint import import_checkpoint, load_checkpoint
from ..data import ImageData
from ..distributed import is_main
from ..evaluation.accuracy import fixed_subset
from ..evaluation.bounds import lipschitz_bound, measured_distortion
from ..evaluation.run import EvalRequest
from ..evaluation.stats import weight_stats
from ..io import write_text_atomic
from ..models import create_model
from ..reporting.markdown import plot_grid
from ..results import load_results
from ..reporting.reproduce_report import render_report
from .engine import Arm, Context, Measure, Step, Study, Trained, run_study
from .grid import Progress, evaluated, unit_request
from .reproduce_config import PAPER_EPS, READINGS, Reading, ReproduceConfig

ARMS = ("Baseline", "CP", "RP", "Ours")


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


def _request(reading: Reading, batch: int, std: tuple[float, ...]) -> EvalRequest:
    return unit_request(PAPER_EPS, reading.steps, step_scale=reading.step_scale, random_start=reading.random_start,
                        batch_size=batch, eps_scale=std if reading.normalized else None)


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


def reproduce_study(data_spec: str, init: str | None, config: ReproduceConfig) -> Study:
    """The fine-tuning protocol's declaration (one seed; its units keep the names of the earlier pipeline, without
    a seed prefix, so an earlier run's cache holds)."""
    env: dict = {}  # what the first stages find: the init's std, the best reading

    def root(ctx: Context, seed: int):
        model, init_key = _load_init(init, config.arch, ctx.data)
        env["std"] = tuple(float(s) for s in model.normalize.std.flatten())
        return model.to(ctx.device), {**init_key, "data": data_spec, "holdout": config.holdout,
                                      "train_images": config.train_images}

    def tuned(name: str, **changes) -> Arm:
        return Arm(name, replace(config.finetune, **changes), parent="Baseline")

    lams = (0.0, *config.lam_grid)
    candidates = {("CP" if lam == 0 else f"Ours-lam{lam:g}"): lam for lam in lams}
    sweeps = {f"sweep-{m}-{r:g}": (m, r) for m in ("cp", "rp") for r in config.sweep_ratios}
    arms = [Arm("Baseline", config.baseline), tuned("RP", method="rp", amount=config.rp_amount)]
    arms += [tuned(name, method="cp", amount=config.cp_amount, lam=lam, tau=config.tau)
             for name, lam in candidates.items()]
    arms += [tuned(name, epochs=config.sweep_epochs, method=m, amount=r, lam=0.0) for name, (m, r) in sweeps.items()]

    def reading_of(name: str) -> Reading:
        return next(r for r in READINGS if r.name == name)

    def evaluation(reading: Reading) -> EvalRequest:
        return _request(reading, config.eval_batch, env["std"])

    def nowhere(state, t, value) -> None:  # the plan puts these values in a stage
        pass

    measures = {f"reading-{r.name}": Measure(lambda ctx, t, r=r: {"reading": asdict(r), "eval": evaluated(
        t.model, t.key, ctx.data, evaluation(r), ctx.out, f"reading-{r.name}", ctx.progress, config.calib_images)},
        place=nowhere) for r in READINGS}
    measures["holdout"] = Measure(lambda ctx, t: evaluated(
        t.model, t.key, ctx.train_data, evaluation(reading_of(env["best"])), ctx.out, f"holdout-{t.arm}",
        ctx.progress, config.search_images), place=nowhere)

    def suite(ctx: Context, t: Trained) -> dict:
        # the suite attacks the model itself (as it always has here); its key predates the eps in the key
        n = min(config.suite_images, len(ctx.data.x_test))
        request = EvalRequest(eps=PAPER_EPS, suite=config.suite, batch_size=config.eval_batch, check_steps=4,
                              per_image=True, exact_model=True)
        result = evaluated(t.model, t.key, ctx.data, request, ctx.out, t.arm, ctx.progress, n, log=True, unit="suite",
                           key={"model": t.key, "suite": config.suite, "n": n})
        result["reference"] = {r: evaluated(t.model, t.key, ctx.data, evaluation(reading_of(r)), ctx.out,
                                            f"suite-ref-{r}-{t.arm}", ctx.progress, n) for r in env["used"]}
        return result

    def sweep(ctx: Context, t: Trained) -> list[dict]:
        method, ratio = sweeps[t.arm]
        labels = [env["best"]] + [r for r in env["used"] if r != env["best"]]  # the first keeps the plain name
        return [{"method": method, "ratio": ratio, "reading": label, "eval": evaluated(
            t.model, t.key, ctx.data, evaluation(reading_of(label)), ctx.out, t.arm if label == labels[0]
            else f"{t.arm}-{label}", ctx.progress, config.sweep_images)} for label in labels]

    measures |= {"suite": Measure(suite, place=nowhere), "sweep": Measure(sweep, place=nowhere)}

    def stage(ctx: Context, name: str, value) -> None:
        ctx.state["stages"][name] = value
        ctx.st.save()

    def plan(ctx: Context) -> None:
        # 1-2. the Baseline (the init fine-tuned) under every reading of the paper's eps unit
        values = ctx.run([Step(0, "Baseline", (f"reading-{r.name}",)) for r in READINGS])
        readings = {r.name: v for r, v in zip(READINGS, values)}
        stage(ctx, "readings", readings)
        env["best"] = min(readings.values(), key=lambda v: _paper_distance(v["eval"]))["reading"]["name"]
        env["used"] = list(dict.fromkeys(["pixel", env["best"]]))
        # 3-4. CP (the lam = 0 candidate) and Ours' lam candidates on held-out training images; RP
        held = dict(zip(candidates, ctx.run([Step(0, name, ("holdout",)) for name in candidates])))
        cp_clean = held["CP"]["clean"]["accuracy"]
        ours = [n for n in held if n != "CP"]
        allowed = [n for n in ours if held[n]["clean"]["accuracy"] >= cp_clean - config.max_clean_drop] or ours
        chosen = max(allowed, key=lambda n: sum(r["accuracy"] for r in held[n]["robust"]))
        ctx.add_arm(Arm("Ours", ctx.arms[chosen].train, parent="Baseline", unit=chosen))
        stage(ctx, "search", {"reading": env["best"], "chosen_lam": candidates[chosen], "candidates": {
            n: {"lam": candidates[n], "eval": held[n]} for n in candidates}})
        # 5. Table 1, Eq. 3, Table 2 under the pixel reading, then the best-matching one
        models = {name: ctx.model(0, name) for name in ARMS}
        stats = {name: weight_stats(t.model) for name, t in models.items()}
        stage(ctx, "stats", stats)
        shape = tuple(ctx.data.x_test.shape[1:])
        x_bound, y_bound = fixed_subset(ctx.data.x_test, ctx.data.y_test, config.bound_images)
        stage(ctx, "bounds", {name: {"l1": lipschitz_bound(t.model, shape, "l1"),
                                     "spectral": lipschitz_bound(t.model, shape, "spectral"),
                                     "measured": measured_distortion(t.model, x_bound, y_bound, 8 / 255)}
                              for name, t in models.items()})
        for r in env["used"]:
            stage(ctx, f"table2-{r}", {name: {"eval": evaluated(
                t.model, t.key, ctx.data, evaluation(reading_of(r)), ctx.out, f"test-{r}-{name}", ctx.progress,
                config.eval_images), "stats": stats[name], "train": asdict(t.cfg)} for name, t in models.items()})
        # 5b. the worst case of a suite of stronger attacks, beside the Table 2 attacks on the very same images
        stage(ctx, "suite", dict(zip(ARMS, ctx.run([Step(0, name, ("suite",)) for name in ARMS]))))
        # 6. Figure 2: CP vs RP over the ratios, under the best-matching reading and the pixel one
        stage(ctx, "sweep", [e for entries in ctx.run([Step(0, name, ("sweep",)) for name in sweeps])
                             for e in entries])
        ctx.state["figures"] = write_figures(ctx.state, ctx.out) if is_main() else []
        stage(ctx, "done", True)

    def prepare(data):
        return data, split_holdout(data, config.holdout, config.train_images)

    return Study(kind={}, config=config, arch=config.arch, root_key=lambda seed: {}, root=root,
                 unit_name=lambda seed, unit: unit, arms={a.name: a for a in arms}, measures=measures, plan=plan,
                 render=lambda state: render_report(state, state.get("runs_log", "")), prepare=prepare,
                 state={"init": init, "stages": {}},
                 figures=lambda state, out: write_figures(state, out) if "sweep" in state["stages"] else [])


def run_reproduce(data_spec: str, init: str | None, out_dir: str | Path, config: ReproduceConfig,
                  device: torch.device, progress: Progress | None = None) -> dict:
    """Run every stage (cached); the report is rewritten after each unit so partial results are visible."""
    return run_study(reproduce_study(data_spec, init, config), data_spec, out_dir, device, progress)


def _paper_distance(ev: dict) -> float:
    """Mean absolute difference (points) from the paper's Baseline PGD row."""
    paper = (44.16, 36.08, 23.75, 15.73)
    return sum(abs(100 * r["accuracy"] - p) for r, p in zip(ev["robust"], paper)) / len(paper)


def rewrite_report(out: Path) -> str:
    """Re-render report.md (and the figure, from whatever stages exist) from ``out/results.json``."""

    path = out / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run reproduce first")
    state = load_results(path)
    if not isinstance(state.get("stages"), dict) or "config" not in state:
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
