"""The training configuration: one frozen dataclass, the single source of names, types, defaults and help.

``robprune train`` derives its options from these fields (``help`` in each
field's metadata, units included), so a new setting is one field here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..pruning.criteria import CRITERIA
from ..pruning.masks import SCOPES, check_amount
from ..pruning.regularizer import DEFAULT_TAU, parse_tau
from .objectives import OBJECTIVES

SCHEDULES = ("cosine", "multistep", "constant")
PRUNE_SCHEDULES = ("oneshot", "gradual")
AUGMENTS = ("auto", "crop-flip", "crop", "none")
ATTACK_BN_MODES = ("eval", "train")
ADV_NORMS = ("linf", "l2")
TRAIN_PRECISIONS = ("fp32", "bf16", "fp16")
PENALTY_MODES = ("gradient", "proximal")


def _f(default, help_text: str, **meta):
    return field(default=default, metadata={"help": help_text, **meta})


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _f(10, "passes over the training split")
    batch_size: int = _f(128, "images per optimiser step (the global batch in a distributed run)")
    lr: float = _f(0.1, "peak learning rate of SGD")
    momentum: float = _f(0.9, "SGD momentum, in [0, 1)")
    weight_decay: float = _f(5e-4, "L2 coefficient, applied by SGD")
    schedule: str = _f("cosine", "LR schedule: cosine to 0, multistep (x0.1 at 50%% and 75%%), constant",
                       choices=SCHEDULES)
    method: str | None = _f(None, "pruning criterion, or none for dense training", choices=CRITERIA)
    amount: float = _f(0.0, "fraction of prunable weights pruned, in [0, 1)")
    scope: str = _f("global", "one threshold over all layers (global) or per layer (layer)", choices=SCOPES)
    keep_ends: bool = _f(False, "leave the first conv and the last linear layer dense")
    prune_schedule: str = _f("oneshot", "oneshot at the start, or gradual (cubic, over the first half)",
                             choices=PRUNE_SCHEDULES)
    lam: float = _f(0.0, "weight of the high-magnitude penalty (paper Eq. 4); 0 disables it")
    tau: float | str = _f(DEFAULT_TAU, "penalty threshold: absolute |w|, or quantile 'q0.9' of the start weights")
    p: int = _f(1, "norm of the penalty, 1 or 2")
    penalty_mode: str = _f("gradient", "gradient (Eq. 4 added to the loss) or proximal (after each step, every |w| "
                                       "above tau shrinks towards tau by lr * lam; p = 1 only)",
                           choices=PENALTY_MODES)
    augment: str = _f("auto", "crop-flip, crop, none, or auto (the dataset's default)", choices=AUGMENTS)
    seed: int = _f(0, "seeds data order, augmentation, random pruning and the training attacks' random starts")
    adv: str = _f("ce", "training objective: ce (natural), pgd (Madry et al.), trades (Zhang et al.), "
                        "fgsm (Wong et al., random start)", choices=OBJECTIVES)
    adv_norm: str = _f("linf", "norm of the training attack: linf (sign steps) or l2 (steps along the normalised "
                               "gradient, adv_eps an L2 radius; pgd and trades)", choices=ADV_NORMS)
    adv_eps: float = _f(8 / 255, "radius of the training attack, pixel units (the CLI takes units of 1/255; "
                                 "an L2 radius of 0.5 is 127.5)")
    adv_steps: int = _f(10, "steps of the training attack (pgd, trades); fgsm takes one")
    adv_step_size: float | None = _f(None, "step of the training attack, pixel units (the CLI takes units of "
                                           "1/255)")
    trades_beta: float = _f(6.0, "TRADES weight of the KL term")
    adv_bn: str = _f("eval", "BatchNorm mode while crafting the training attack: eval (TRADES) or train (Rice et "
                             "al.)", choices=ATTACK_BN_MODES)
    guard: bool = _f(True, "adversarial objectives: PGD-10 check on a fixed training batch every epoch; stop on a "
                           "collapse (catastrophic overfitting) and keep the best checkpoint")
    precision: str = _f("fp32", "fp32, bf16 (CPU or GPU) or fp16 (GPU, with a gradient scaler); masks, "
                                "penalty and optimiser state stay fp32", choices=TRAIN_PRECISIONS)
    n_train: int | None = _f(None, "train on a fixed, class-balanced, seeded subset of this many images")
    n_test: int | None = _f(None, "report test accuracy on a fixed, class-balanced subset of this many images")

    def validate(self) -> TrainConfig:
        for name in ("epochs", "batch_size", "adv_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("n_train", "n_test"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("lr", "momentum", "weight_decay", "lam", "adv_eps", "trades_beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.momentum >= 1:
            raise ValueError(f"momentum must be below 1 (SGD diverges otherwise), got {self.momentum!r}")
        if self.adv_norm == "linf" and self.adv_eps > 1:
            raise ValueError(f"adv_eps {self.adv_eps!r} is larger than the pixel range; it is in pixel units "
                             "(8/255 = 0.0314)")
        if self.adv_step_size is not None and (isinstance(self.adv_step_size, bool)
                                               or not isinstance(self.adv_step_size, (int, float))
                                               or not 0 < self.adv_step_size <= self._step_limit()):
            raise ValueError(f"adv_step_size must be a number in (0, {self._step_limit():g}] (pixel units), "
                             f"got {self.adv_step_size!r}")
        for name, choices in (("schedule", SCHEDULES), ("scope", SCOPES), ("prune_schedule", PRUNE_SCHEDULES),
                              ("augment", AUGMENTS), ("adv_bn", ATTACK_BN_MODES), ("precision", TRAIN_PRECISIONS),
                              ("penalty_mode", PENALTY_MODES), ("adv_norm", ADV_NORMS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {name.replace('_', ' ')} {getattr(self, name)!r}; "
                                 f"choose one of {', '.join(choices)}")
        if self.method is not None:
            CRITERIA.get(self.method)
        OBJECTIVES.get(self.adv)
        norms = OBJECTIVES.info(self.adv)["norms"]
        if OBJECTIVES.info(self.adv)["adversarial"] and self.adv_norm not in norms:
            capable = ", ".join(n for n in OBJECTIVES.names() if self.adv_norm in OBJECTIVES.info(n)["norms"])
            raise ValueError(f"adv_norm {self.adv_norm!r} is implemented for the objectives {capable}; "
                             f"{self.adv!r} trains under {', '.join(norms)} only")
        if self.p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {self.p!r}")
        if self.penalty_mode == "proximal" and self.p != 1:
            raise ValueError("the proximal penalty is the p = 1 hinge; use p = 1 or penalty_mode 'gradient'")
        check_amount(self.amount)
        parse_tau(self.tau)
        return self

    def _step_limit(self) -> float:
        """An linf step beyond the pixel range is meaningless; an L2 step is bounded by its own radius' scale."""
        return 1.0 if self.adv_norm == "linf" else max(1.0, 2 * self.adv_eps)

    def step_size(self) -> float:
        """The training attack's step in pixel units (the objective's default when unset)."""
        if self.adv_step_size is not None:
            return float(self.adv_step_size)
        if self.adv_norm == "l2":  # Madry et al.'s L2 default, as the pgd-l2 attack: 2.5 * eps / steps
            return 2.5 * self.adv_eps / self.adv_steps
        return OBJECTIVES.info(self.adv)["default_step"] * self.adv_eps
