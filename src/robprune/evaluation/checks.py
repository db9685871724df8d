"""Sanity checks against gradient masking and evaluation mistakes, in the spirit of AutoAttack's ``checks.py``.

They follow Carlini et al. 2019 ("On evaluating adversarial robustness") and
Croce & Hein 2020: each check returns passed, the numbers and why it matters;
a failure becomes a loud WARNING and a field in eval.json, never silence.
The check images are drawn at random with balanced classes (a test split
sorted by class would otherwise give one class only).
"""

from __future__ import annotations

from collections.abc import Sequence

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


CHECK_COUNT = 11


def sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_list: Sequence[float], steps: int,
                  batch_size: int = 256, square_queries: int = 300, num_classes: int | None = None,
                  progress=None) -> list[dict]:
    """Run every check on the images given (draw them with :func:`check_images`); a list of results.

    ``progress`` receives an ``{"kind": "eval"}`` event after each check (done/total checks).
    """
    device = next(model.parameters()).device
    n = len(x)
    y = y.long()
    checks = []

    def add(name: str, passed: bool, detail: str, **values) -> None:
        checks.append({"name": name, "passed": bool(passed), "detail": detail, **values})
        if progress is not None:
            progress({"kind": "eval", "name": f"sanity checks ({n} images)", "done": len(checks),
                      "total": CHECK_COUNT})

    add("model_in_eval_mode", not model.training,
        "the model is in eval mode" if not model.training else
        "the model was handed over in training mode (BatchNorm uses batch statistics, dropout is on); "
        "robprune attacks and classifies in eval mode, but check that this is the model you meant")
    with torch.no_grad(), frozen(model):
        xb = as_float_images(x[:batch_size].to(device))
        out, again = model(xb), model(xb)
    add("deterministic_outputs", torch.equal(out, again),
        "two forward passes give the same logits" if torch.equal(out, again) else
        "two forward passes of the same images differ: a randomised model needs EOT attacks, and the numbers "
        "below are not worst-case")
    probs = bool((out >= 0).all() and (out <= 1).all() and torch.allclose(out.sum(1), torch.ones(len(out),
                                                                                                  device=device),
                                                                          atol=1e-4))
    add("outputs_are_logits", not probs, "outputs look like probabilities (softmax inside the model weakens CE "
        "attacks)" if probs else "outputs are unnormalised logits")

    preds = predict(model, x, batch_size)
    clean = int((preds == y.cpu()).sum())
    classes = num_classes or int(out.shape[1])
    chance = 1.0 / classes
    share = float(torch.bincount(preds, minlength=classes).max()) / max(n, 1)
    add("not_near_chance", clean / max(n, 1) > chance + CHANCE_MARGIN and share < CONSTANT_SHARE,
        f"clean accuracy {100 * clean / max(n, 1):.1f}% (chance {100 * chance:.1f}%), the most frequent prediction "
        f"takes {100 * share:.0f}% of the images; a model at chance or near-constant cannot win or lose a "
        "robustness comparison, its robust accuracy is meaningless", most_frequent_share=share)

    at_zero = _pgd_correct(model, x, y, 0.0, steps, batch_size)
    add("eps0_equals_clean", at_zero == clean, f"PGD at eps=0 keeps {at_zero}/{n}, clean is {clean}/{n}")
    eps_sorted = sorted(eps_list)
    accs = [_pgd_correct(model, x, y, e, steps, batch_size) for e in eps_sorted]
    add("monotone_in_eps", all(b <= a for a, b in zip(accs, accs[1:])),
        "PGD accuracy must not rise with eps: " + ", ".join(f"{e * 255:g}/255: {a}" for e, a in zip(eps_sorted, accs)))
    tiny = eps_sorted[-1] < 0.5 / 255
    unchanged = clean > 0 and all(a == clean for a in accs)
    add("eps_units_plausible", not tiny and not unchanged,
        ("every eps is below half a grey level (0.5/255): did you mean e.g. 8 (= 8/255)? eps is in units of 1/255"
         if tiny else "PGD accuracy equals clean accuracy at every eps: the attack changed nothing; check the eps "
         "units (8 means 8/255)" if unchanged else "eps values change the accuracy as expected"))
    e_max = eps_sorted[-1]
    more = _pgd_correct(model, x, y, e_max, steps * 4, batch_size)
    tol = max(1, round(0.01 * n))
    add("monotone_in_steps", more <= accs[-1] + tol,
        f"at eps {e_max * 255:g}/255: {steps} steps keep {accs[-1]}, {steps * 4} steps keep {more} (tolerance {tol})")
    large = _pgd_correct(model, x, y, 64 / 255, max(steps, 20), batch_size, random_start=True)
    add("large_eps_breaks_model", large <= max(1, round(0.01 * n)),
        f"PGD at 64/255 keeps {large}/{n}; a model that stays accurate there is hiding its gradients")
    zero = 0
    with frozen(model):
        for start in range(0, n, batch_size):
            xb = as_float_images(x[start : start + batch_size].to(device))
            _, grad, _ = loss_and_gradient(model, xb, y[start : start + batch_size].to(device))
            zero += int((grad.flatten(1).abs().amax(1) == 0).sum())
    add("nonzero_input_gradients", zero <= round(0.01 * n), f"{zero}/{n} images have an all-zero input gradient",
        zero_gradient_fraction=zero / max(n, 1))
    square = worst_case(model, x, y, e_max, [AttackSpec("square", square_queries)], batch_size)
    sq = square["worst_case"]["correct"]
    white = min(accs[-1], more)
    add("blackbox_not_stronger", sq >= white - tol,
        f"at eps {e_max * 255:g}/255: Square ({square_queries} queries) keeps {sq}, the stronger white-box PGD "
        f"keeps {white} (tolerance {tol}); "
        "a gradient-free attack beating the gradient attack signals masking")
    return checks
