"""Sanity checks against gradient masking and evaluation mistakes, in the spirit of AutoAttack's ``checks.py``.

They follow Carlini et al. 2019 ("On evaluating adversarial robustness") and
Croce & Hein 2020: each check returns passed, the numbers and why it matters;
a failure becomes a loud WARNING and a field in eval.json, never silence.
The check images are drawn at random with balanced classes (a test split
sorted by class would otherwise give one class only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property

import torch
from torch import nn

from ..attacks.common import frozen, loss_and_gradient
from ..data.batches import as_float_images, balanced_subset
from .accuracy import evaluate, predict
from .suite import AttackSpec, worst_case

CHANCE_MARGIN = 0.05  # clean accuracy within 5 points of 1/classes counts as "at chance"
CONSTANT_SHARE = 0.9  # a model giving one class to 90% of the images is a near-constant classifier


def check_images(x: torch.Tensor, y: torch.Tensor, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images drawn at random with balanced classes, for the checks."""
    idx = balanced_subset(y, n, seed)
    return x[idx], y[idx]


def _pgd_correct(model, x, y, eps, steps, batch_size, seed=0, random_start=False) -> int:
    return evaluate(model, x, y, [eps], steps, batch_size=batch_size, random_start=random_start,
                    seed=seed)["robust"][0]["correct"]


class CheckInput:
    """What the checks look at, each intermediate computed once and shared (the clean predictions, PGD at every
    eps, PGD with four times the steps)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_list: Sequence[float], steps: int,
                 batch_size: int, square_queries: int, num_classes: int | None) -> None:
        self.model, self.x, self.y, self.steps, self.batch_size = model, x, y.long(), steps, batch_size
        self.square_queries, self.num_classes = square_queries, num_classes
        self.device = next(model.parameters()).device
        self.n = len(x)
        self.eps = sorted(eps_list)
        self.tol = max(1, round(0.01 * self.n))  # one image or 1%, what a noisy attack may differ by

    def pgd(self, eps: float, steps: int | None = None, random_start: bool = False) -> int:
        return _pgd_correct(self.model, self.x, self.y, eps, self.steps if steps is None else steps, self.batch_size,
                            random_start=random_start)

    @cached_property
    def outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Two forward passes of the first batch."""
        with torch.no_grad(), frozen(self.model):
            xb = as_float_images(self.x[:self.batch_size].to(self.device))
            return self.model(xb), self.model(xb)

    @cached_property
    def preds(self) -> torch.Tensor:
        return predict(self.model, self.x, self.batch_size)

    @cached_property
    def clean(self) -> int:
        return int((self.preds == self.y.cpu()).sum())

    @cached_property
    def accs(self) -> list[int]:
        """PGD's correct count at every eps, smallest first."""
        return [self.pgd(e) for e in self.eps]

    @cached_property
    def more_steps(self) -> int:
        """PGD with four times the steps at the largest eps."""
        return self.pgd(self.eps[-1], self.steps * 4)


Check = Callable[[CheckInput], tuple[bool, str, dict]]
CHECKS: dict[str, Check] = {}  # in the order they run; each is documented once, in docs/evaluation.md's table


def check(name: str):
    """Register a sanity check: ``fn(inputs) -> (passed, detail, extra values)``."""
    def register(fn: Check) -> Check:
        CHECKS[name] = fn
        return fn

    return register


@check("model_in_eval_mode")
def _eval_mode(c: CheckInput):
    ok = not c.model.training
    return ok, ("the model is in eval mode" if ok else
                "the model was handed over in training mode (BatchNorm uses batch statistics, dropout is on); "
                "robprune attacks and classifies in eval mode, but check that this is the model you meant"), {}


@check("deterministic_outputs")
def _deterministic(c: CheckInput):
    ok = torch.equal(*c.outputs)
    return ok, ("two forward passes give the same logits" if ok else
                "two forward passes of the same images differ: a randomised model needs EOT attacks, and the "
                "numbers below are not worst-case"), {}


@check("outputs_are_logits")
def _logits(c: CheckInput):
    out = c.outputs[0]
    probs = bool((out >= 0).all() and (out <= 1).all()
                 and torch.allclose(out.sum(1), torch.ones(len(out), device=c.device), atol=1e-4))
    return not probs, ("outputs look like probabilities (softmax inside the model weakens CE attacks)" if probs
                       else "outputs are unnormalised logits"), {}


@check("not_near_chance")
def _not_near_chance(c: CheckInput):
    classes = c.num_classes or int(c.outputs[0].shape[1])
    chance = 1.0 / classes
    share = float(torch.bincount(c.preds, minlength=classes).max()) / max(c.n, 1)
    acc = c.clean / max(c.n, 1)
    return (acc > chance + CHANCE_MARGIN and share < CONSTANT_SHARE,
            f"clean accuracy {100 * acc:.1f}% (chance {100 * chance:.1f}%), the most frequent prediction takes "
            f"{100 * share:.0f}% of the images; a model at chance or near-constant cannot win or lose a robustness "
            "comparison, its robust accuracy is meaningless", {"most_frequent_share": share})


@check("eps0_equals_clean")
def _eps0(c: CheckInput):
    at_zero = c.pgd(0.0)
    return at_zero == c.clean, f"PGD at eps=0 keeps {at_zero}/{c.n}, clean is {c.clean}/{c.n}", {}


@check("monotone_in_eps")
def _monotone_eps(c: CheckInput):
    return (all(b <= a for a, b in zip(c.accs, c.accs[1:])), "PGD accuracy must not rise with eps: "
            + ", ".join(f"{e * 255:g}/255: {a}" for e, a in zip(c.eps, c.accs)), {})


@check("eps_units_plausible")
def _units(c: CheckInput):
    tiny = c.eps[-1] < 0.5 / 255
    unchanged = c.clean > 0 and all(a == c.clean for a in c.accs)
    return not tiny and not unchanged, (
        "every eps is below half a grey level (0.5/255): did you mean e.g. 8 (= 8/255)? eps is in units of 1/255"
        if tiny else "PGD accuracy equals clean accuracy at every eps: the attack changed nothing; check the eps "
        "units (8 means 8/255)" if unchanged else "eps values change the accuracy as expected"), {}


@check("monotone_in_steps")
def _monotone_steps(c: CheckInput):
    return c.more_steps <= c.accs[-1] + c.tol, (
        f"at eps {c.eps[-1] * 255:g}/255: {c.steps} steps keep {c.accs[-1]}, {c.steps * 4} steps keep "
        f"{c.more_steps} (tolerance {c.tol})"), {}


@check("large_eps_breaks_model")
def _large_eps(c: CheckInput):
    large = c.pgd(64 / 255, max(c.steps, 20), random_start=True)
    return large <= c.tol, (f"PGD at 64/255 keeps {large}/{c.n}; a model that stays accurate there is hiding its "
                            "gradients"), {}


@check("nonzero_input_gradients")
def _gradients(c: CheckInput):
    zero = 0
    with frozen(c.model):
        for start in range(0, c.n, c.batch_size):
            xb = as_float_images(c.x[start : start + c.batch_size].to(c.device))
            _, grad, _ = loss_and_gradient(c.model, xb, c.y[start : start + c.batch_size].to(c.device))
            zero += int((grad.flatten(1).abs().amax(1) == 0).sum())
    return zero <= round(0.01 * c.n), f"{zero}/{c.n} images have an all-zero input gradient", {
        "zero_gradient_fraction": zero / max(c.n, 1)}


@check("blackbox_not_stronger")
def _blackbox(c: CheckInput):
    square = worst_case(c.model, c.x, c.y, c.eps[-1], [AttackSpec("square", c.square_queries)], c.batch_size)
    sq = square["worst_case"]["correct"]
    white = min(c.accs[-1], c.more_steps)
    return sq >= white - c.tol, (
        f"at eps {c.eps[-1] * 255:g}/255: Square ({c.square_queries} queries) keeps {sq}, the stronger white-box "
        f"PGD keeps {white} (tolerance {c.tol}); a gradient-free attack beating the gradient attack signals "
        "masking"), {}


def sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_list: Sequence[float], steps: int,
                  batch_size: int = 256, square_queries: int = 300, num_classes: int | None = None,
                  progress=None) -> list[dict]:
    """Run every registered check, in order, on the images given (draw them with :func:`check_images`); a list
    of results (name, passed, detail and the check's values).

    ``progress`` receives an ``{"kind": "eval"}`` event after each check (done/total checks).
    """
    inputs = CheckInput(model, x, y, eps_list, steps, batch_size, square_queries, num_classes)
    checks = []
    for name, fn in CHECKS.items():
        passed, detail, values = fn(inputs)
        checks.append({"name": name, "passed": bool(passed), "detail": detail, **values})
        if progress is not None:
            progress({"kind": "eval", "name": f"sanity checks ({inputs.n} images)", "done": len(checks),
                      "total": len(CHECKS)})
    return checks
