"""Pruning: masks (pure functions), criteria (a registry of scores), the Eq. 4 regulariser, torch.nn.utils.prune interop."""

from .criteria import CRITERIA, SCORERS, list_criteria, register_criterion
from .masks import (SCOPES, Masks, apply_masks, check_amount, check_masks, compute_masks, prunable_parameters,
                    sparsity_report)
from .regularizer import DEFAULT_TAU, high_magnitude_penalty, parse_tau, resolve_tau
from .torch_prune import from_torch_prune, to_torch_prune

__all__ = ["CRITERIA", "DEFAULT_TAU", "Masks", "SCOPES", "SCORERS", "apply_masks", "check_amount", "check_masks",
           "compute_masks", "from_torch_prune", "high_magnitude_penalty", "list_criteria", "parse_tau",
           "prunable_parameters", "register_criterion", "resolve_tau", "sparsity_report", "to_torch_prune"]
