"""The options derived from TrainConfig's fields, shared by train and prune (prune's learned methods take the
same objective and schedule options), and the TrainConfig of a command line."""

from __future__ import annotations

import dataclasses

from ..training import TrainConfig
from .common import amount, non_negative, pixel_radius, positive_int


FINETUNE_LR = 0.01  # default peak lr with --init (the from-scratch 0.1 destroys a trained model)
# Fields whose CLI value is in units of 1/255 (the library takes pixel units).
PIXEL_FIELDS = {"adv_eps", "adv_step_size"}
TYPES = {"amount": amount, "n_train": positive_int, "n_test": positive_int, "epochs": positive_int,
         "batch_size": positive_int, "adv_steps": positive_int}


def add_config_arguments(p, skip: tuple[str, ...] = ()) -> None:
    """One option per ``TrainConfig`` field (but those in ``skip``): train's options, and prune's for the methods
    that learn their mask by training."""
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        choices = f.metadata.get("choices")
        if choices is not None:
            help_text += f" [{', '.join(choices)}]"
        if f.name == "method":
            help_text += ("; or a method that learns the mask from the data first (hydra, with --init; then "
                          "--epochs of fine-tuning under it)")
        if f.type in ("bool", bool):
            if f.default:
                p.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                               help=f"turn off what is on by default: {help_text}")
            else:
                p.add_argument(flag, action="store_true", help=help_text)
            continue
        if f.name == "lr":
            p.add_argument(flag, type=non_negative, default=None,
                           help=f"{help_text} (default: {f.default} from scratch, {FINETUNE_LR} with --init)")
            continue
        if f.name in PIXEL_FIELDS:
            default = None if f.default is None else round(f.default * 255, 6)
            shown = f"{default:g}/255" if default is not None else ("0.25*eps for pgd and trades, 1.25*eps for "
                                                                     "fgsm; 2.5*eps/steps with --adv-norm l2")
            p.add_argument(flag, type=pixel_radius, default=f.default, help=f"{help_text} (default: {shown})")
            continue
        kind = TYPES.get(f.name)
        if kind is None:
            kind = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
            if f.name in ("momentum", "weight_decay", "lam", "trades_beta"):
                kind = non_negative
        p.add_argument(flag, type=kind, default=f.default, help=help_text)


def config_from_args(args, fine_tuning: bool, **fixed) -> TrainConfig:
    """The ``TrainConfig`` of the command line; ``fixed`` values replace fields the command does not take."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name not in fixed}
    if values["lr"] is None:
        values["lr"] = FINETUNE_LR if fine_tuning else TrainConfig.lr
    return TrainConfig(**values, **fixed).validate()
