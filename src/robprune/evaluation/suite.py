"""Worst-case robustness over a suite of attacks, each run only on the points still robust (as AutoAttack does).

A point counts as robust under a suite only if it survives every attack of
the suite. By default every attack differentiates through a BatchNorm-folded,
parameter-frozen, channels_last copy of the model (the fast path), and every
adversarial example is then classified by the original model, so the
reported accuracy is a fact about the original.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..attacks.common import Eps, check_eps, frozen
from ..attacks.registry import ATTACKS, attack_label, run_attack
from ..data.batches import as_float_images
from .accuracy import labels, predict, summary


@dataclass(frozen=True)
class AttackSpec:
    name: str  # registry key, e.g. "apgd-t"
    steps: int = 10  # the attack's budget: iterations, or queries for square
    loss: str = "ce"  # ce, cw or dlr (pgd family only)
    restarts: int = 1  # random restarts (pgd, fab-t)
    options: tuple = field(default=())  # further (option, value) pairs, e.g. (("targets", 9),)

    def kwargs(self) -> dict:
        """The options this attack takes, beyond its budget."""
        accepted = ATTACKS.info(self.name)["options"]
        extra = {k: v for k, v in (("loss", self.loss), ("restarts", self.restarts)) if k in accepted}
        return {**extra, **dict(self.options)}

    def label(self) -> str:
        return attack_label(self.name, self.steps, **self.kwargs())


SUITES: dict[str, tuple[AttackSpec, ...]] = {
    # AutoAttack's "standard" version (Croce & Hein 2020): the one the field reports and RobustBench ranks by.
    "autoattack": (AttackSpec("apgd-ce", 100), AttackSpec("apgd-t", 100, options=(("targets", 9),)),
                   AttackSpec("fab-t", 100, options=(("targets", 9),)), AttackSpec("square", 5000)),
    # AutoAttack's untargeted half plus Square with 1,000 queries: cheaper, not comparable with published numbers.
    "standard": (AttackSpec("apgd-ce", 100), AttackSpec("apgd-dlr", 100), AttackSpec("square", 1000)),
    "fast": (AttackSpec("apgd-ce", 20), AttackSpec("apgd-dlr", 20), AttackSpec("square", 200)),
}
SUITE_HELP = {"autoattack": "AutoAttack standard: APGD-CE, APGD-T, FAB-T (9 targets, 100 steps), Square 5000",
              "standard": "APGD-CE 100, APGD-DLR 100, Square 1000 (not AutoAttack)",
              "fast": "APGD-CE 20, APGD-DLR 20, Square 200 (a quick look)"}


def check_suite(name: str) -> tuple[AttackSpec, ...]:
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}")
    return SUITES[name]


class BatchLog:
    """The outcome of every (attack, batch) of a ``worst_case`` run, saved as each finishes, so that a run
    stopped part-way (a killed process, a session's end) continues from its last finished batch.

    A batch's outcome depends only on its images, the attack and the batch's seed (every attack draws from its
    own generator seeded per batch), so a resumed run's result is the uninterrupted run's, point for point.
    Entries are kept under ``folder/partial-<tag>-r<rank>.json`` with the configuration that made them; a log
    written for another configuration (other images, batch size, seed, attacks, precision) is ignored. Under
    torchrun each rank writes its own file and reads every rank's, so a resumed run may use another world size.
    """

    def __init__(self, folder: str | Path, tag: str) -> None:
        from ..distributed import rank_from_env

        self.folder, self.tag, self.config = Path(folder), tag, None
        self.file = self.folder / f"partial-{tag}-r{rank_from_env()}.json"
        self.entries: dict[str, dict] = {}
        self.mine: dict[str, dict] = {}

    def open(self, config: dict) -> None:
        """Take the entries every rank saved for ``config`` (JSON-able); drop any saved for another."""
        self.config = json.loads(json.dumps(config))
        self.entries, self.mine = {}, {}
        for f in sorted(self.folder.glob(f"partial-{self.tag}-r*.json")):
            try:
                saved = json.loads(f.read_text())
            except (OSError, ValueError):  # a damaged log is only lost work, never an error
                continue
            if saved.get("config") == self.config:
                self.entries.update(saved.get("batches", {}))
                if f == self.file:  # this rank's file is rewritten with every put: keep what it already held
                    self.mine.update(saved.get("batches", {}))

    def get(self, attack: int, start: int) -> dict | None:
        """``{"robust": "0110...", "seconds": s}`` for batch ``start`` after attack number ``attack``, if saved."""
        return self.entries.get(f"{attack}:{start}")

    def put(self, attack: int, start: int, robust: torch.Tensor, seconds: float) -> None:
        from ..io import write_json

        entry = {"robust": "".join("1" if b else "0" for b in robust.tolist()), "seconds": round(seconds, 3)}
        self.entries[f"{attack}:{start}"] = self.mine[f"{attack}:{start}"] = entry
        write_json(self.file, {"config": self.config, "batches": self.mine})


def worst_case(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Eps, attacks: Sequence[AttackSpec],
               batch_size: int = 256, seed: int = 0, progress: Callable[[int], None] | None = None,
               attacker: nn.Module | None = None, precision: str = "fp32", log: BatchLog | None = None) -> dict:
    """Per-attack and per-point worst-case robust accuracy at ``eps`` (pixel units).

    ``precision`` ("bf16", or "fp16" on a GPU) runs every attack's passes under autocast; a point counts as
    broken only when the original model, in fp32, misclassifies the adversarial example, so reduced precision
    can weaken the suite but never report a robustness fp32 would not confirm.

    ``attacker`` is the model the attacks differentiate through (default: the
    model itself; ``attack_model(model)`` is the fast copy); the original
    ``model`` decides every outcome. Random starts are seeded per batch.

    With a ``log`` every finished (attack, batch) is saved and a batch the log already holds is not attacked
    again; each attack's ``seconds`` then include the time spent on its saved batches.
    """
    from .fast import PRECISIONS, autocast_context

    check_eps(eps)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    device = next(model.parameters()).device
    attacker = model if attacker is None else attacker
    y = y.long()
    robust = predict(model, x, batch_size) == y.cpu()
    clean_mask = robust.clone()
    from ..distributed import all_reduce_and, my_batches

    per_attack = {}
    starts = my_batches(len(x), batch_size)  # all batches in one process; this rank's share under torchrun
    if log is not None:
        log.open({"n": len(x), "images": _fingerprint(x, y), "eps": eps, "batch_size": batch_size, "seed": seed,
                  "precision": precision, "attacks": [spec.label() for spec in attacks]})
    for a, spec in enumerate(attacks):
        t0 = time.perf_counter()
        saved_seconds = 0.0
        for start in starts:
            saved = log.get(a, start) if log is not None else None
            if saved is not None:
                robust[start : start + len(saved["robust"])] = torch.tensor([c == "1" for c in saved["robust"]])
                saved_seconds += saved["seconds"]
                if progress is not None:
                    progress(min(batch_size, len(x) - start))
                continue
            t_batch = time.perf_counter()
            idx = robust[start : start + batch_size].nonzero().squeeze(1) + start
            if len(idx):
                xb, yb = as_float_images(x[idx].to(device)), y[idx].to(device)
                if attacker is not model:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with autocast_context(torch.device(device), precision):
                    x_adv = run_attack(spec.name, attacker, xb, yb, eps, seed=seed + start, budget=spec.steps,
                                       exact_model=True, **spec.kwargs())  # the caller chose the attacker
                with torch.no_grad(), frozen(model):
                    fooled = (labels(model(x_adv.float())) != yb).cpu()
                robust[idx[fooled]] = False
            if log is not None:
                log.put(a, start, robust[start : start + batch_size], time.perf_counter() - t_batch)
            if progress is not None:
                progress(min(batch_size, len(x) - start))
        robust = all_reduce_and(robust, torch.device(device))  # each rank only cleared points of its own batches
        per_attack[spec.name] = {"robust_after": summary(int(robust.sum()), len(x)), "spec": spec.__dict__ | {
            "options": dict(spec.options)}, "label": spec.label(),
            "seconds": round(time.perf_counter() - t0 + saved_seconds, 3)}
    return {"eps": eps, "clean": summary(int(clean_mask.sum()), len(x)),
            "worst_case": summary(int(robust.sum()), len(x)), "attacks": per_attack, "robust_mask": robust.tolist(),
            "clean_mask": clean_mask.tolist()}


def _fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    """A short hash of the images and labels, so a batch log is never applied to other images."""
    import hashlib

    h = hashlib.sha256()
    for t in (x, y):
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def repeat_over_seeds(fn: Callable[[int], dict], seeds: int, key: Callable[[dict], list[float]]) -> dict:
    """Run ``fn(seed)`` for seeds 0..seeds-1; mean and standard deviation of each value ``key`` extracts."""
    runs = [fn(s) for s in range(seeds)]
    values = list(zip(*[key(r) for r in runs]))
    return {"seeds": list(range(seeds)), "runs": runs,
            "mean": [statistics.fmean(v) for v in values],
            "std": [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]}
