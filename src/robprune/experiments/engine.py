"""One study engine: a study declares its arms, its measures and a plan; ``run_study`` does the rest.

- An ``Arm`` is a model of the study: trained with its ``TrainConfig`` from its parent arm (or from a random
  initialisation of the study's architecture), optionally after a mask learned from data (``Learn``, HYDRA).
  Each seed's model of an arm is a cached unit under ``OUT/units``: trained once, loaded afterwards, through the
  parent chain, so a child never retrains its parent.
- A ``Measure`` computes something of one trained model (through cached units) and puts it in the results: the
  row measure starts the arm's row for a seed; a gated measure (the attack suite) is skipped, with the reason, on a
  model that is broken (``evaluation.significance.broken``); a measure with ``place`` stores its value elsewhere
  (a held-out search, a sweep).
- A ``Step`` is (seed, arm, measures). The study's ``plan(ctx)`` runs lists of steps with ``ctx.run``, in the
  order that puts decisive units first; processes sharing the output folder (``--share``) divide each list
  (``sharing.defer_busy``) and merge their rows (``study_state``); ``ctx.only`` filters the steps a process takes
  (e.g. only the suite), never a patched module.

results.json and the report are rewritten after every measure, so an interrupted study is readable and a rerun
continues where it stopped.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import save_checkpoint
from ..data import ImageData, load_dataset
from ..distributed import is_main
from ..io import prepare_out_dir
from ..progress import Progress
from ..training import TrainConfig
from ..results import SCHEMA, machine_record
from .grid import finetuned, model_loader
from .sharing import defer_busy
from .store import UnitStore, config_key
from .study_state import StudyState
from .study_units import init_model, place_row, suite_or_skip, train_history


@dataclass(frozen=True)
class Learn:
    """A mask learned from data before an arm's training (a method of ``pruning.LEARNED``, e.g. HYDRA)."""

    method: str
    amount: float
    config: TrainConfig  # the score-learning stage: objective, epochs, lr (the seed is the step's)
    scope: str = "layer"


@dataclass(frozen=True)
class Channels:
    """Channels removed for real before an arm's training (``pruning.prune_channels``; ``hydra``: channel scores
    learned under ``config`` first)."""

    method: str
    amount: float
    scope: str = "layer"
    config: TrainConfig | None = None  # hydra's score learning (the seed is the step's)


@dataclass(frozen=True)
class Arm:
    name: str  # the label in results and reports
    train: TrainConfig | None = None  # None: the parent model itself
    parent: str | None = None  # the arm this one starts from; None: a random initialisation of the study's arch
    learn: Learn | None = None
    channels: Channels | None = None
    unit: str | None = None  # the cached unit's name (s{seed}-{unit}); arms with one unit share one model
    keep_best: bool = False  # a collapse of adversarial training keeps the guard's best checkpoint


@dataclass(frozen=True)
class Trained:
    """One seed's model of an arm, with the key that identifies it in the store."""

    seed: int
    arm: str
    unit: str
    model: nn.Module
    key: dict
    cfg: TrainConfig | None
    masks: dict


@dataclass(frozen=True)
class Measure:
    compute: Callable[[Context, Trained], Any]
    row: bool = False  # starts the arm's row of the seed (the value is the whole row)
    gate: str | None = None  # row field of a clean evaluation: a broken model is skipped ({name}_skipped)
    place: Callable[[dict, Trained, Any], None] | None = None  # stores the value elsewhere than in the row


@dataclass(frozen=True)
class Step:
    seed: int
    arm: str
    measures: tuple[str, ...]


@dataclass(frozen=True)
class Study:
    """A study's declaration; ``plan`` gets the context once the data are loaded."""

    kind: dict  # the results' first field, e.g. {"study": "adversarial"}
    config: Any  # a dataclass, stored as results["config"]
    arch: str
    root_key: Callable[[int], dict]  # the key of a seed's random initialisation
    arms: dict[str, Arm]
    measures: dict[str, Measure]
    plan: Callable[[Context], None]
    render: Callable[[dict], str]
    prepare: Callable[[ImageData], tuple[ImageData, ImageData]] = lambda data: (data, data)  # (data, train data)
    state: dict = field(default_factory=dict)  # further fields of results.json (before any row)
    suite_identity: tuple[str, int] | None = None  # (suite, images): a row keeps an earlier suite result made so
    root: Callable[[Context, int], tuple[nn.Module, dict]] | None = None  # (model, key) a root arm starts from;
    # None: a random initialisation of ``arch`` keyed by ``root_key``
    unit_name: Callable[[int, str], str] = lambda seed, unit: f"s{seed}-{unit}"  # a model's cached unit
    figures: Callable[[dict, Path], list[str]] | None = None  # None: the studies' figures (study_figures)


class Context:
    """What a plan and its measures work with: the data, the output folder, the models (trained or loaded once)."""

    def __init__(self, study: Study, data_spec: str, out: Path, device: torch.device,
                 progress: Progress | None, only: Callable[[Step], bool] | None = None) -> None:
        self.study, self.data_spec, self.out, self.device, self.progress = study, data_spec, out, device, progress
        self.arms = dict(study.arms)
        self.data, self.train_data = study.prepare(load_dataset(data_spec))
        self.only = only
        self.st = StudyState(out, {"schema": SCHEMA, **study.kind, "config": asdict(study.config), "data": data_spec,
                                   "machine": machine_record(device), "seeds": {}, **copy.deepcopy(study.state)},
                             study.render, figures=study.figures)
        self._models: dict[tuple[int, str], Trained] = {}
        self.recorded: set[tuple[int, str]] = set()  # rows this process has recorded

    @property
    def state(self) -> dict:
        return self.st.state

    def add_arm(self, arm: Arm) -> None:
        """An arm the plan decides on while running (e.g. the candidate a held-out search chose)."""
        self.arms[arm.name] = arm

    def model(self, seed: int, name: str) -> Trained:
        """Arm ``name``'s model of ``seed``: from the store, or trained (its parent first)."""
        arm = self.arms[name]
        unit = self.study.unit_name(seed, arm.unit or arm.name)
        if (seed, unit) in self._models:  # arms that share a unit share its model, each under its own name
            return replace(self._models[(seed, unit)], arm=name)
        if arm.parent is None and self.study.root is not None:
            base, base_key = self.study.root(self, seed)
        elif arm.parent is None:
            base, base_key = init_model(self.study.arch, self.data, seed).to(self.device), self.study.root_key(seed)
        else:
            parent = self.model(seed, arm.parent)
            if arm.train is None:
                return replace(parent, arm=name)
            base, base_key = parent.model, parent.key
        if arm.train is None:  # a root arm without training: the root model itself
            self._models[(seed, unit)] = Trained(seed, name, unit, base, base_key, None, {})
            return self._models[(seed, unit)]
        masks = None
        if arm.channels is not None:
            base, masks, base_key = self._slim(base, base_key, seed, unit, arm.channels)
        if arm.learn is not None:
            base, masks, base_key = self._learned(base, base_key, seed, unit, arm.learn)
        cfg = replace(arm.train, seed=seed).validate()
        model, masks = finetuned(base, base_key, self.train_data, cfg, self.out, unit, self.progress,
                                 keep_best=arm.keep_best, masks=masks)
        trained = Trained(seed, name, unit, model, {"base": base_key, "train": config_key(cfg)}, cfg, masks)
        self._models[(seed, unit)] = trained
        return trained

    def _learned(self, base: nn.Module, base_key: dict, seed: int, unit: str, learn: Learn):
        """(model, masks, key): ``base`` with the mask ``learn`` finds (a cached unit; the weights are unchanged)."""
        from ..pruning import LEARNED

        cfg = replace(learn.config, seed=seed).validate()
        key = {"base": base_key, "learn": {"method": learn.method, "amount": learn.amount, "scope": learn.scope,
                                           "train": config_key(cfg)}}
        if "version" in LEARNED.info(learn.method):  # a method changed since: its earlier masks are not reused
            key["learn"]["version"] = LEARNED.info(learn.method)["version"]

        def make(path: Path):
            model = copy.deepcopy(base)
            masks, history = LEARNED.get(learn.method)(model, self.train_data, cfg, learn.amount, learn.scope,
                                                       out_dir=path, resume=True, progress=self.progress)
            if is_main():
                save_checkpoint(path / "model.safetensors", model, masks,
                                {"unit": f"{unit}-masks", "learn": key["learn"], "history": history})
            return model, masks

        model, masks = UnitStore(self.out, self.progress).compute(f"{unit}-masks", key, model_loader(self.device, base),
                                                                make)
        return model, masks, key

    def _slim(self, base: nn.Module, base_key: dict, seed: int, unit: str, channels: Channels):
        """(slim model, masks, key): ``base`` with channels removed (a cached unit)."""
        from ..pruning.channels import prune_channels

        cfg = None if channels.config is None else replace(channels.config, seed=seed).validate()
        key = {"base": base_key, "channels": {"method": channels.method, "amount": channels.amount,
                                              "scope": channels.scope, "seed": seed,
                                              **({"train": config_key(cfg)} if cfg is not None else {})}}
        x = self.data.x_test[:2].float() / 255

        def make(path: Path):
            scores = None
            if channels.method == "hydra":
                from ..learned.hydra_channels import learn_channel_scores

                scores, _ = learn_channel_scores(base, self.train_data, cfg, channels.amount, x.to(self.device),
                                                 progress=self.progress, out_dir=path, resume=True)
            slim, masks, record = prune_channels(base.cpu(), "l1" if scores is not None else channels.method,
                                                 channels.amount, x, seed=seed, scores=scores, scope=channels.scope)
            base.to(self.device)
            if is_main():
                save_checkpoint(path / "model.safetensors", slim, masks,
                                {"unit": f"{unit}-slim", "channel_pruning": [key["channels"] | {
                                    "groups": record.groups}]})
            return slim.to(self.device), masks

        model, masks = UnitStore(self.out, self.progress).compute(f"{unit}-slim", key, model_loader(self.device, base),
                                                                make)
        return model, masks, key

    def train_record(self, t: Trained) -> dict:
        """The start of a row: the arm's training config and its per-epoch history."""
        return {"train": asdict(t.cfg), "history": train_history(self.out, t.unit, t.key)}

    def row(self, seed: int, arm: str) -> dict:
        return self.state["seeds"][str(seed)][arm]

    def run(self, steps: list[Step]) -> list:
        """Every step (those ``only`` lets through), processes sharing the folder dividing them; returns each
        step's last value."""
        steps = [s for s in steps if self.only is None or self.only(s)]
        return defer_busy(steps, self._step)

    def _step(self, step: Step):
        value = None
        for name in step.measures:
            measure = self.study.measures[name]
            if not measure.row and measure.place is None and (step.seed, step.arm) not in self.recorded:
                self._apply(step, self._row_measure())  # the row this measure adds to (loaded from its units)
            value = self._apply(step, name)
        return value

    def _row_measure(self) -> str:
        return next(n for n, m in self.study.measures.items() if m.row)

    def _apply(self, step: Step, name: str):
        measure = self.study.measures[name]
        t = self.model(step.seed, step.arm)
        if measure.place is not None:
            value = measure.compute(self, t)
            measure.place(self.state, t, value)
            self.st.save()
            return value
        if measure.row:
            value = measure.compute(self, t)
            suite, n = self.study.suite_identity or (None, None)
            place_row(self.st, step.seed, step.arm, value, suite, n)
            self.recorded.add((step.seed, step.arm))
            return value
        row = self.row(step.seed, step.arm)
        if measure.gate is not None:
            suite_or_skip(self.st, row, row[measure.gate], lambda: measure.compute(self, t), name)
            return row.get(name)
        row.update(measure.compute(self, t))
        self.st.save()
        return row

    def finish(self) -> dict:
        if self.only is None:  # a process given part of the plan does not know whether the rest is done
            self.state["done"] = True
        self.st.save()
        return self.state


def run_study(study: Study, data_spec: str, out_dir: str | Path, device: torch.device,
              progress: Progress | None = None, only: Callable[[Step], bool] | None = None) -> dict:
    """Walk ``study``'s plan (cached units skipped, shared units claimed); returns the results state."""
    ctx = Context(study, data_spec, prepare_out_dir(out_dir), device, progress, only)
    study.plan(ctx)
    return ctx.finish()
