"""Attacks: one file per attack, each registered with one signature.

``robprune.run_attack(name, model, x, y, eps, **options)`` runs any of them;
``robprune.list_attacks()`` names them. Inputs in [0, 1] (uint8 accepted),
eps in pixel units (``8/255``).
"""

from . import apgd, fab, square  # noqa: F401  (registers the attacks; fgsm, pgd and pgd_l2 by the imports below)
from .apgd import apgd as apgd_attack, apgd_checkpoints, apgd_t, target_classes
from .common import (LOSSES, Eps, check_eps, check_loss, check_steps, ce_loss, cw_loss, dlr_loss, dlr_targeted_loss,
                     eps_tensor, frozen, input_gradient, loss_and_gradient, misclassified, prepare_inputs)
from .fab import fab_t, linf_projection
from .fgsm import fgsm
from .pgd import pgd
from .pgd_l2 import pgd_l2
from .registry import ATTACKS, attack_label, attack_options, list_attacks, register_attack, run_attack
from .square import square_attack

__all__ = ["ATTACKS", "Eps", "LOSSES", "apgd_attack", "apgd_checkpoints", "apgd_t", "attack_label",
           "attack_options", "ce_loss", "check_eps", "check_loss", "check_steps", "cw_loss", "dlr_loss",
           "dlr_targeted_loss", "eps_tensor", "fab_t", "fgsm", "frozen", "input_gradient", "linf_projection",
           "list_attacks", "loss_and_gradient", "misclassified", "pgd", "pgd_l2", "prepare_inputs",
           "register_attack", "run_attack", "square_attack", "target_classes"]
