"""Cached units and row helpers the studies share (experiments/engine.py runs them): Table 1 and the Eq. 3 bounds
of a model, the attack suite with its sanity checks, a seed's random initialisation, and how a row is placed in
the results (an earlier suite result of the same model kept) or its suite skipped on a broken model.
"""

from __future__ import annotations

import json
from dataclasses import replace
from collections.abc import Callable
from pathlib import Path

import torch

from ..data import ImageData
from ..distributed import is_main
from ..evaluation.significance import broken
from ..evaluation.bounds import lipschitz_bound, measured_distortion
from ..evaluation.run import EvalRequest
from ..evaluation.stats import weight_stats
from ..io import write_json
from ..models import create_model
from .store import UnitStore, unit_dir




def train_history(out: Path, name: str, key) -> list[dict]:
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
    plus the sanity checks (PGD-4 on at most 200 of the images): a cached unit whose finished batches are saved,
    so a stopped one continues."""
    from .grid import evaluated

    n = min(n, len(data.x_test))
    request = EvalRequest(eps=tuple(eps_list), suite=suite, batch_size=batch, checks=checks, check_steps=4,
                          per_image=True)
    return evaluated(model, key, data, request, out, name, progress, n_images=n, log=True, unit="suite",
                     key={"model": key, "suite": suite, "n": n, "eps": [float(e) for e in eps_list]})


class Attacked:
    """The adversarial studies' evaluations of a model, from their config's shared fields (eval_batch, pgd_eps,
    pgd_steps, pgd_images, suite, suite_eps, suite_images): clean on every test image and PGD (random start) with
    per-image outcomes, and the suite at suite_eps; each a cached unit named after the seed and arm."""

    def __init__(self, config) -> None:
        from .grid import unit_request

        self.config = config
        self.clean = unit_request(batch_size=config.eval_batch, per_image=True)
        self.pgd = unit_request(config.pgd_eps, config.pgd_steps, random_start=True, batch_size=config.eval_batch,
                                per_image=True)

    def clean_and_pgd(self, ctx, t) -> dict:
        from .grid import evaluated

        name = f"s{t.seed}-{t.arm}"
        return {"clean": evaluated(t.model, t.key, ctx.data, self.clean, ctx.out, f"clean-{name}", ctx.progress),
                "pgd": evaluated(t.model, t.key, ctx.data, self.pgd, ctx.out, f"pgd-{name}", ctx.progress,
                                 n_images=self.config.pgd_images)}

    def suite(self, ctx, t) -> dict:
        c = self.config
        return suite_unit(t.model, t.key, ctx.data, c.suite, (c.suite_eps,), c.suite_images, c.eval_batch, ctx.out,
                          f"s{t.seed}-{t.arm}", ctx.progress)


def place_row(st, seed: int, name: str, row: dict, suite: str, n: int) -> None:
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


def suite_or_skip(st, row: dict, ev: dict, attack: Callable[[], dict], name: str = "suite") -> None:
    """``row[name] = attack()`` unless the clean evaluation ``ev`` shows a broken model (near chance or
    near-constant): such a model takes part in no verdict and a constant classifier cannot be attacked at all, so
    the reason is recorded as ``{name}_skipped`` instead of spending the suite on it."""
    why = broken(ev)
    if why:
        row[f"{name}_skipped"] = why
    else:
        row[name] = attack()
    st.save()


def first_train_images(n: int | None):
    """A study's ``prepare``: the data with only its first ``n`` training images (all when None), twice (the
    data evaluated on and the data trained on)."""
    def prepare(data: ImageData) -> tuple[ImageData, ImageData]:
        if n is not None:
            data = replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n])
        return data, data

    return prepare


def scratch_key(arch: str, data_spec: str, train_images: int | None):
    """A study's ``root_key``: a seed's random initialisation of ``arch`` for ``data_spec`` (the adversarial,
    methods and channel studies share it, so they share their dense units)."""
    return lambda seed: {"init": "scratch", "arch": arch, "seed": seed, "data": data_spec, "train_images": train_images}


def init_model(arch: str, data: ImageData, seed: int):
    torch.manual_seed(seed)
    mean, std = data.channel_stats()
    return create_model(arch, num_classes=len(data.classes), in_channels=data.in_channels, mean=mean, std=std)


# --------------------------------------------------------------------------------------------------------------
# Adversarial pruning (issue 15)


