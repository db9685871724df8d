"""Multi-seed studies over the cached-unit store: the paper's protocol from scratch, and adversarial pruning.

Both are grids of cached units (``grid.finetuned`` and ``grid.evaluated``), run in an order that puts
the decisive units first (every seed's core arms before the extras), so an interrupted run that is
restarted continues where it stopped and a report rendered in the middle shows what is done.

- ``run_scratch`` (``robprune reproduce --protocol scratch``): per seed, a Baseline trained from random
  initialisation, then CP, RP and Ours fine-tuned from it; lam and tau of Ours chosen on held-out
  training images by the rule in ``choose_candidate``; clean and PGD on the test split with per-image
  outcomes (McNemar), a stronger suite, Table 1, Eq. 3, and the CP-vs-RP sweep.
- ``run_adversarial`` (``robprune study adversarial``): per seed, an adversarially trained dense model,
  then CP, RP and Ours at several sparsities, each fine-tuned adversarially with the same budget;
  clean, PGD-10 and AutoAttack at 8/255, Table 1, Eq. 3, APB exports.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..data import ImageData, load_dataset
from ..distributed import is_main
from ..evaluation.accuracy import fixed_subset
from ..evaluation.significance import broken
from ..evaluation.bounds import lipschitz_bound, measured_distortion
from ..evaluation.stats import weight_stats
from ..io import prepare_out_dir, write_json
from ..models import create_model
from ..progress import Progress
from ..reporting.study_common import ARMS, REGIME
from ..training import TrainConfig
from .grid import EvalConfig, evaluated, finetuned
from .reproduce import split_holdout
from .store import machine_line
from .store import UnitStore, config_key, defer_busy, unit_dir

FIGURES_EVERY_S = 60.0  # a running study redraws its figures at most this often (and always at the end)

PAPER_EPS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
LATE = ("added after seeds 0 and 1 had run, when the first three candidates had stopped at max |w| >= 0.59, to "
        "extend the curve towards the paper's regime; judged by the same rule")


@dataclass(frozen=True)
class Candidate:
    """One setting of Ours' penalty in the held-out search."""

    lam: float
    tau: float | str = "q0.9"
    mode: str = "gradient"  # gradient (Eq. 4 in the loss) or proximal
    note: str = ""  # printed under the search table (e.g. when and why a candidate joined the grid)

    @property
    def label(self) -> str:
        return f"lam{self.lam:g}-tau{self.tau}-{self.mode}"


@dataclass(frozen=True)
class ScratchConfig:
    arch: str = "resnet20"
    seeds: tuple[int, ...] = (0, 1, 2)
    baseline: TrainConfig = TrainConfig(epochs=8, batch_size=128, lr=0.1, weight_decay=5e-4, precision="bf16")
    finetune: TrainConfig = TrainConfig(epochs=3, batch_size=128, lr=0.02, weight_decay=5e-4, precision="bf16")
    cp_amount: float = 0.5
    rp_amount: float = 0.1
    candidates: tuple[Candidate, ...] = (
        Candidate(0.003), Candidate(0.03), Candidate(0.1, mode="proximal"),
        # the first three stopped at max |w| 0.59 or above; these two extend the trade-off curve into the paper's
        # regime (its Ours ends at max |w| 0.223). They cannot change the choice unless they pass the same rule.
        Candidate(0.1, note=LATE), Candidate(1.0, mode="proximal", note=LATE))
    # a fifth arm on every seed: Ours at a setting that reaches the paper's weight regime (max |w| <= 0.22),
    # whatever the rule chose, so claims (c) and (d) are also decided where the paper's Ours lives
    regime: Candidate | None = Candidate(1.0, mode="proximal")
    search_seed: int = 0  # the seed whose Baseline the candidates are fine-tuned from
    max_clean_drop: float = 0.01  # the rule: Ours may lose at most this much held-out clean accuracy vs CP
    holdout: int = 5000  # train images held out (never trained on) for the search
    search_images: int = 1000  # held-out images attacked in the search
    eval_images: int | None = None  # test images for clean and PGD (None = all)
    eval_batch: int = 500
    suite: str = "standard"
    suite_images: int = 1000
    bound_images: int = 500
    sweep_ratios: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9)
    sweep_seeds: tuple[int, ...] = (0, 1)
    sweep_epochs: int = 1
    sweep_images: int = 1000
    train_images: int | None = None  # cap on training images (quick mode)


SCRATCH_QUICK = ScratchConfig(
    seeds=(0, 1),
    baseline=TrainConfig(epochs=1, batch_size=64, lr=0.05, weight_decay=5e-4),
    finetune=TrainConfig(epochs=1, batch_size=64, lr=0.01, weight_decay=5e-4),
    candidates=(Candidate(0.01), Candidate(0.1, mode="proximal", note="a proximal candidate")),
    regime=Candidate(0.1, mode="proximal"), holdout=100, search_images=100,
    eval_images=200, eval_batch=100, suite="fast", suite_images=40, bound_images=50, sweep_ratios=(0.1, 0.5, 0.9),
    sweep_seeds=(0,), sweep_images=100, train_images=600,
)


def choose_candidate(search: dict, max_clean_drop: float) -> str:
    """The rule, fixed before any run: among the candidates whose held-out clean accuracy is at most
    ``max_clean_drop`` below CP's, the one with the highest mean held-out PGD accuracy over the eps; when none
    qualifies, the one with the smallest clean drop. ``search`` maps labels to held-out evals, with "CP"."""
    cp_clean = search["CP"]["clean"]["accuracy"]
    names = [n for n in search if n != "CP"]
    allowed = [n for n in names if search[n]["clean"]["accuracy"] >= cp_clean - max_clean_drop - 1e-12]
    if not allowed:
        return max(names, key=lambda n: search[n]["clean"]["accuracy"])
    return max(allowed, key=lambda n: sum(r["accuracy"] for r in search[n]["robust"]))


def _history(out: Path, name: str, key) -> list[dict]:
    path = unit_dir(out, name, key) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _describe(model, x_bound, y_bound, shape) -> dict:
    return {"stats": weight_stats(model),
            "bounds": {"l1": lipschitz_bound(model, shape, "l1"), "spectral": lipschitz_bound(model, shape, "spectral"),
                       "measured": measured_distortion(model, x_bound, y_bound, 8 / 255)}}


def described(model, key, out: Path, name: str, x_bound, y_bound, progress) -> dict:
    """Table 1 statistics and the Eq. 3 bounds of a model (a cached unit: the bounds take a while)."""
    shape = tuple(x_bound.shape[1:])

    def make(path: Path) -> dict:
        value = _describe(model, x_bound, y_bound, shape)
        if is_main():
            write_json(path / "describe.json", value)
        return value

    return UnitStore(out, progress).compute(f"describe-{name}", {"model": key, "n": len(x_bound)},
                                            lambda p: json.loads((p / "describe.json").read_text()), make)


def suite_unit(model, key, data: ImageData, suite: str, eps_list, n: int, batch: int, out: Path, name: str,
               progress, checks: bool = True) -> dict:
    """Worst case over ``suite`` at each eps on ``n`` test images (``fixed_subset``), per-image outcomes kept,
    plus the sanity checks (a cached unit)."""
    from ..evaluation.accuracy import pack_bits
    from ..evaluation.checks import check_images, sanity_checks
    from ..evaluation.fast import attack_model
    from ..evaluation.suite import SUITES, BatchLog, worst_case
    from ..progress import progress_counter

    n = min(n, len(data.x_test))

    def make(path: Path) -> dict:
        model.eval()  # a model fresh from training is in train mode; attacks and checks judge the eval-mode model
        x, y = fixed_subset(data.x_test, data.y_test, n)
        attacks = SUITES[suite]
        tick = progress_counter(progress, f"suite-{name}", n * len(attacks) * len(eps_list))
        attacker = attack_model(model)
        rows = []
        for i, e in enumerate(eps_list):  # each eps's finished batches are saved: a stopped unit continues
            row = worst_case(model, x, y, e, attacks, batch, progress=tick, attacker=attacker,
                             log=BatchLog(path, f"eps{i}"))
            row["robust_bits"] = pack_bits(torch.tensor(row.pop("robust_mask")))
            rows.append(row)
        result = {"n": n, "suite": suite, "attacks": [a.__dict__ for a in attacks], "rows": rows}
        if checks:
            x_check, y_check = check_images(x, y, min(200, n))
            result["sanity_checks"] = sanity_checks(model, x_check, y_check, list(eps_list), 4, batch)
        if is_main():
            write_json(path / "suite.json", result)
        return result

    return UnitStore(out, progress).compute(f"suite-{name}", {"model": key, "suite": suite, "n": n,
                                                              "eps": [float(e) for e in eps_list]},
                                            lambda p: json.loads((p / "suite.json").read_text()), make)


def _place(st, seed: int, name: str, row: dict, suite: str, n: int) -> None:
    """Store ``row`` as arm ``name`` of ``seed`` and save; a suite result (or skip) the row had from an earlier
    invocation is kept when it was made for the same trained model and the same suite and image count, so that a
    restarted run's report does not lose finished suite units until its suite stage reaches them again."""
    old = st.state["seeds"].setdefault(str(seed), {}).get(name, {})
    if old.get("train") == json.loads(json.dumps(row["train"])):  # as read back from results.json
        if "suite" in old and (old["suite"].get("suite"), old["suite"].get("n")) == (suite, n):
            row["suite"] = old["suite"]
        elif "suite_skipped" in old:
            row["suite_skipped"] = old["suite_skipped"]
    st.state["seeds"][str(seed)][name] = row
    st.save()


def _suite_or_skip(st, row: dict, ev: dict, attack: Callable[[], dict]) -> None:
    """``row["suite"] = attack()`` unless the clean evaluation ``ev`` shows a broken model (near chance or
    near-constant): such a model takes part in no verdict and a constant classifier cannot be attacked at all, so
    the reason is recorded as ``suite_skipped`` instead of spending the suite on it."""
    why = broken(ev)
    if why:
        row["suite_skipped"] = why
    else:
        row["suite"] = attack()
    st.save()


def _init_model(arch: str, data: ImageData, seed: int):
    torch.manual_seed(seed)
    mean, std = data.channel_stats()
    return create_model(arch, num_classes=len(data.classes), in_channels=data.in_channels, mean=mean, std=std)


ELAPSED_FILE = "elapsed.json"  # compute seconds per invocation, beside results.json


def _elapsed_parts(saved: dict) -> dict[str, float]:
    """Compute seconds per invocation from a saved results.json (one "earlier" part for a file from before the
    parts were kept)."""
    parts = saved.get("elapsed_parts")
    if isinstance(parts, dict):
        return {str(k): float(v) for k, v in parts.items()}
    try:
        before = float(saved.get("elapsed_s", 0.0))
    except (TypeError, ValueError):
        before = 0.0
    return {"earlier": before} if before else {}


def _merge_rows(state: dict, disk: dict) -> None:
    """Add to ``state`` what another process sharing the folder saved in ``disk`` and this one lacks: rows of
    models (and a row's suite result, for the same trained model), search entries and sweep points. Only a file
    made by the same study configuration on the same data counts: another configuration's rows are stale."""
    if (disk.get("config"), disk.get("data")) != (json.loads(json.dumps(state.get("config"))), state.get("data")):
        return
    for seed, rows in (disk.get("seeds") or {}).items():
        mine = state.setdefault("seeds", {}).setdefault(seed, {})
        for name, row in rows.items():
            if name not in mine:
                mine[name] = row
            elif mine[name].get("train") == row.get("train"):
                for k in ("suite", "suite_skipped"):
                    if k in row and "suite" not in mine[name] and "suite_skipped" not in mine[name]:
                        mine[name][k] = row[k]
    if isinstance(disk.get("search"), dict) and isinstance(state.get("search"), dict):
        for label, entry in disk["search"].items():
            state["search"].setdefault(label, entry)
    if isinstance(disk.get("sweep"), list) and isinstance(state.get("sweep"), list):
        have = {(p["seed"], p["method"], p["ratio"]) for p in state["sweep"]}
        state["sweep"] += [p for p in disk["sweep"] if (p["seed"], p["method"], p["ratio"]) not in have]


class _State:
    """results.json and the report, rewritten after every unit so a partial run is readable."""

    def __init__(self, out: Path, state: dict, render: Callable[[dict], str], on_update=None) -> None:
        import os
        import socket

        self.out, self.state, self.render, self.t0, self.on_update = out, state, render, time.time(), on_update
        self.me = f"{socket.gethostname()}:{os.getpid()}:{int(self.t0)}"
        # compute time of earlier (and concurrent) invocations; elapsed.json keeps it should results.json be damaged
        self.parts = {**_elapsed_parts(self._on_disk(ELAPSED_FILE)), **_elapsed_parts(self._on_disk())}
        self.figures_at = -math.inf  # when the figures were last drawn

    def _on_disk(self, name: str = "results.json") -> dict:
        try:
            saved = json.loads((self.out / name).read_text())
        except (OSError, ValueError):
            return {}
        return saved if isinstance(saved, dict) else {}

    def save(self) -> None:
        from ..io import write_text_atomic

        # Processes sharing the output folder (store.py's claims) each add what the others saved: rows they have not
        # computed or loaded yet, and their compute time, which the total sums over every invocation.
        disk = self._on_disk()
        _merge_rows(self.state, disk)
        parts = {**self.parts, **_elapsed_parts(self._on_disk(ELAPSED_FILE)), **_elapsed_parts(disk),
                 self.me: time.time() - self.t0}
        self.state["elapsed_parts"] = parts
        self.state["elapsed_s"] = sum(parts.values())
        log = self.out / "runs.log"
        self.state["runs_log"] = log.read_text() if log.is_file() else ""
        self.state["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
        if is_main():
            write_json(self.out / ELAPSED_FILE, {"elapsed_parts": parts})
            write_json(self.out / "results.json", self.state)
            try:
                from ..reporting.study_figures import write_study_figures

                # drawing every figure after every unit cost a third of a quick run: once a minute, and at the end
                if self.state.get("done") or time.time() - self.figures_at >= FIGURES_EVERY_S:
                    self.state["figures"] = write_study_figures(self.state, self.out)
                    self.figures_at = time.time()
                text = self.render(self.state)
            except Exception as err:  # a report bug must never stop a long run; the results are saved above
                text = (f"# Report not rendered\n\nThe renderer failed ({type(err).__name__}: {err}); the results are "
                        "in results.json. Re-render with the command's --report-only.\n")
            write_text_atomic(self.out / "report.md", text)
        if self.on_update is not None:
            self.on_update(self.state)


def run_scratch(data_spec: str, out_dir: str | Path, config: ScratchConfig, device: torch.device,
                progress: Progress | None = None, render: Callable[[dict], str] | None = None) -> dict:
    """The paper's protocol from scratch (issue 14's grid), every unit cached; returns the results state."""
    from ..reporting.study_report import render_scratch

    out = prepare_out_dir(out_dir)
    data = load_dataset(data_spec)
    train_data = split_holdout(data, config.holdout, config.train_images)
    x_bound, y_bound = fixed_subset(data.x_test, data.y_test, config.bound_images)
    st = _State(out, {"protocol": "scratch", "config": asdict(config), "data": data_spec, "device": str(device),
                      "torch_threads": torch.get_num_threads(), "machine": machine_line(), "seeds": {}, "search": {},
                      "sweep": []},
                render or render_scratch)
    pixel = EvalConfig(eps=PAPER_EPS, steps=4, step_scale=2.5, n_images=config.eval_images,
                       batch_size=config.eval_batch, per_image=True)
    fgsm = replace(pixel, steps=1, step_scale=1.0)
    readings = {"pixel": pixel, "pixel-fgsm": fgsm}
    search_eval = replace(pixel, n_images=config.search_images, per_image=False)

    def base_key(seed: int) -> dict:
        return {"init": "scratch", "arch": config.arch, "seed": seed, "data": data_spec, "holdout": config.holdout,
                "train_images": config.train_images}

    baselines = {}

    def baseline(seed: int):
        if seed not in baselines:
            init = _init_model(config.arch, data, seed).to(device)
            cfg = replace(config.baseline, seed=seed).validate()
            model, _ = finetuned(init, base_key(seed), train_data, cfg, out, f"s{seed}-Baseline", progress)
            key = {"base": base_key(seed), "train": config_key(cfg)}
            baselines[seed] = (model, key, cfg)
        return baselines[seed]

    arms = {}

    def arm(seed: int, unit: str, **changes):
        """Unit ``s{seed}-{unit}`` fine-tuned from the seed's Baseline (each loaded or trained once)."""
        if (seed, unit) not in arms:
            base, bkey, _ = baseline(seed)
            cfg = replace(config.finetune, seed=seed, **changes).validate()
            model, _ = finetuned(base, bkey, train_data, cfg, out, f"s{seed}-{unit}", progress)
            arms[(seed, unit)] = (model, {"base": bkey, "train": config_key(cfg)}, cfg)
        return arms[(seed, unit)]

    def record(seed: int, name: str, model, key, cfg, unit_name: str) -> None:
        row = {"train": asdict(cfg), "history": _history(out, unit_name, key)}
        for label, ev in readings.items():
            row[label] = evaluated(model, key, data, ev, out, f"test-{label}-s{seed}-{name}", progress)
        row.update(described(model, key, out, f"s{seed}-{name}", x_bound, y_bound, progress))
        _place(st, seed, name, row, config.suite, config.suite_images)

    cp = {"method": "cp", "amount": config.cp_amount}

    def ours(c: Candidate) -> tuple[str, dict]:
        return f"Ours-{c.label}", {**cp, "lam": c.lam, "tau": c.tau, "penalty_mode": c.mode}

    # 1. the search on the search seed: CP and every candidate, evaluated on held-out training images
    s0 = config.search_seed
    search_units = {"CP": ("CP", cp)} | {c.label: ours(c) for c in config.candidates}
    def search(label: str) -> dict:
        unit, changes = search_units[label]
        model, key, cfg = arm(s0, unit, **changes)
        ev = evaluated(model, key, train_data, search_eval, out, f"holdout-s{s0}-{label}", progress)
        st.state["search"][label] = {"eval": ev, "stats": weight_stats(model), "train": asdict(cfg),
                                     "history": _history(out, f"s{s0}-{unit}", key)}
        return ev

    # processes sharing the store divide the independent units (store.py); held is in the candidates' order
    held = dict(zip(search_units, defer_busy(search_units, search)))
    chosen = choose_candidate(held, config.max_clean_drop)
    cand = next(c for c in config.candidates if c.label == chosen)
    st.state["chosen"] = asdict(cand) | {"label": chosen}
    st.save()
    specs = {"CP": ("CP", cp), "RP": ("RP", {"method": "rp", "amount": config.rp_amount}), "Ours": ours(cand)}
    extra_arms = ()
    if config.regime is not None:
        specs[REGIME] = ours(config.regime)
        extra_arms = (REGIME,)

    def model_of(seed: int, name: str):
        """(model, key, config, unit name) of arm ``name`` of ``seed``."""
        if name == "Baseline":
            return (*baseline(seed), f"s{seed}-Baseline")
        unit, changes = specs[name]
        return (*arm(seed, unit, **changes), f"s{seed}-{unit}")

    # 2. every seed's core: Baseline, CP, RP, Ours on the test split (the decisive units first), then Ours in the
    # paper's weight regime on every seed
    for names in (ARMS, extra_arms):
        defer_busy([(seed, name) for seed in config.seeds for name in names],
                   lambda item: record(*item, *model_of(*item)))

    def suite(names) -> None:
        """The strongest suite on arms ``names`` of every seed, seed by seed (a comparison has two seeds as soon
        as possible: the decision rule needs two)."""
        def one(item) -> None:
            seed, name = item
            row = st.state["seeds"][str(seed)][name]
            _suite_or_skip(st, row, row["pixel"], lambda: suite_unit(
                *model_of(seed, name)[:2], data, config.suite, PAPER_EPS, config.suite_images, config.eval_batch,
                out, f"s{seed}-{name}", progress))

        defer_busy([(seed, name) for seed in config.seeds for name in names], one)

    # 3. Figure 2: CP vs RP over the ratios, one-shot from each sweep seed's Baseline (about an hour on a CPU core,
    # before the suite's ~25 min a model: the suite's CP and Ours come next, the arms claim (e) is about)
    sweep_eval = replace(pixel, n_images=config.sweep_images, per_image=False)

    def sweep(item) -> None:
        seed, method, ratio = item
        unit = f"sweep-{method}-{ratio:g}"
        model, key, _ = arm(seed, unit, epochs=config.sweep_epochs, method=method, amount=ratio)
        ev = evaluated(model, key, data, sweep_eval, out, f"test-s{seed}-{unit}", progress)
        st.state["sweep"] = [s for s in st.state["sweep"] if not (
            s["seed"] == seed and s["method"] == method and s["ratio"] == ratio)]
        st.state["sweep"].append({"seed": seed, "method": method, "ratio": ratio, "eval": ev})
        st.save()

    defer_busy([(seed, method, ratio) for seed in config.sweep_seeds for method in ("cp", "rp")
                for ratio in config.sweep_ratios], sweep)

    # 4. the strongest suite on every model of every seed: the arms whose gains claim (e) tests first (CP, Ours, Ours
    # in the weight regime), then Baseline and RP (RP's gain at large eps already FAILS under PGD)
    suite(("CP", "Ours") + extra_arms)
    suite(("Baseline", "RP"))
    st.state["done"] = True
    st.save()
    return st.state


# --------------------------------------------------------------------------------------------------------------
# Adversarial pruning (issue 15)


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
    st = _State(out, {"study": "adversarial", "config": asdict(config), "data": data_spec, "device": str(device),
                      "torch_threads": torch.get_num_threads(), "machine": machine_line(), "seeds": {}},
                     functools.partial(render_adversarial, default_grid=default_grid()))
    clean_eval = EvalConfig(eps=(), n_images=None, batch_size=config.eval_batch, per_image=True)
    pgd_eval = EvalConfig(eps=config.pgd_eps, steps=config.pgd_steps, step_scale=2.5, random_start=True,
                          n_images=config.pgd_images, batch_size=config.eval_batch, per_image=True)
    dense_models = {}

    def dense(seed: int):
        if seed not in dense_models:
            init = _init_model(config.arch, data, seed).to(device)
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
        row = {"train": asdict(cfg), "history": _history(out, f"s{seed}-{name}", key),
               "checkpoint": str((unit_dir(out, f"s{seed}-{name}", key) / "model.safetensors").relative_to(out))}
        row["clean"] = evaluated(model, key, data, clean_eval, out, f"clean-s{seed}-{name}", progress)
        row["pgd"] = evaluated(model, key, data, pgd_eval, out, f"pgd-s{seed}-{name}", progress)
        row.update(described(model, key, out, f"s{seed}-{name}", x_bound, y_bound, progress))
        _place(st, seed, name, row, config.suite, config.suite_images)

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
        _suite_or_skip(st, row, row["clean"], lambda: suite_unit(
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
