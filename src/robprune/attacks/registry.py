"""The attack registry and the one way to run an attack by name.

Every attack has one signature, ``attack(model, x, y, eps, <budget>, *, seed, ...) -> x_adv``,
with images in [0, 1] (uint8 0..255 accepted) and eps in pixel units. Its
registration says which keyword is its budget (``steps`` or ``queries``),
which options it takes, whether eps may be per channel, and how to label it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..registry import Registry
from .common import Eps, check_eps, gradient_model, prepare_inputs

Attack = Callable[..., torch.Tensor]
ATTACKS: Registry[Attack] = Registry("attack")


def register_attack(name: str, *, label: str, budget: str = "steps", default_budget: int = 10,
                    options: tuple[str, ...] = (), per_channel_eps: bool = True, gradient_free: bool = False,
                    norm: str = "linf"):
    """Register an attack.

    ``label`` is a format string over the budget and options, e.g.
    ``"APGD-CE ({steps} steps)"``; ``options`` are the keyword options the
    attack accepts besides its budget and ``seed``.
    """
    return ATTACKS.register(name, label=label, budget=budget, default_budget=default_budget, options=options,
                            per_channel_eps=per_channel_eps, gradient_free=gradient_free, norm=norm)


def list_attacks() -> list[str]:
    """Names of the registered attacks."""
    return ATTACKS.names()


def attack_options(name: str, budget: int | None = None, **options) -> dict:
    """The keyword arguments ``name`` takes: its budget under its own keyword plus the options it accepts.

    Options the attack does not take raise ValueError, so a typo never passes silently.
    """
    info = ATTACKS.info(name)
    unknown = sorted(set(options) - set(info["options"]))
    if unknown:
        raise ValueError(f"attack {name!r} takes no option {', '.join(unknown)}; it takes "
                         f"{', '.join((info['budget'],) + info['options'])}")
    kwargs = dict(options)
    kwargs[info["budget"]] = info["default_budget"] if budget is None else budget
    return kwargs


def attack_label(name: str, budget: int | None = None, **options) -> str:
    """What one attack did, naming only the settings that attack uses: 'Square (5000 queries, margin loss)'."""
    info = ATTACKS.info(name)
    values = {"loss": "ce", "restarts": 1, "targets": 9, **attack_options(name, budget, **options)}
    return info["label"].format(**values)


def run_attack(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Eps, *, seed: int = 0,
               budget: int | None = None, exact_model: bool = False, **options) -> torch.Tensor:
    """Adversarial examples of the registered attack ``name`` for images ``x`` (in [0, 1] or uint8).

    ``budget`` is the attack's steps or queries (its registered default when
    None); other options go to the attack. The attack runs on the model's
    cached BatchNorm-folded, frozen, channels_last copy (the same function in
    eval mode, faster) unless ``exact_model=True``. The model's mode and
    ``requires_grad`` flags are restored afterwards.
    """
    attack = ATTACKS.get(name)
    info = ATTACKS.info(name)
    check_eps(eps, limit=1.0 if info["norm"] == "linf" else float("inf"))
    if isinstance(eps, (list, tuple)) and not info["per_channel_eps"]:
        raise ValueError(f"attack {name!r} takes one eps, not a per-channel list")
    x, y = prepare_inputs(x, y)
    was_training = model.training
    try:
        through = gradient_model(model.eval(), exact_model)
        return attack(through, x, y, eps, seed=seed, **attack_options(name, budget, **options))
    finally:
        model.train(was_training)
