"""Pruning: masks (pure functions), criteria (a registry of scores), the Eq. 4 regulariser, torch.nn.utils.prune
interop, and channel pruning with physical removal. Methods that learn masks from data (HYDRA) live in
``robprune.learned``, above ``training``."""

from .channel_criteria import CHANNEL_CRITERIA, ChannelGroup, register_channel_criterion
from .channels import ChannelPruning, prune_channels
from .slim import count_macs
from .criteria import CRITERIA, LEARNED, SCORERS, list_criteria, list_methods, register_criterion, register_learned
from .masks import (SCOPES, Masks, apply_masks, check_amount, check_masks, compute_masks, prunable_parameters,
                    sparsity_report)
from .regularizer import DEFAULT_TAU, high_magnitude_penalty, parse_tau, resolve_tau
from .torch_prune import from_torch_prune, to_torch_prune

__all__ = ["CHANNEL_CRITERIA", "ChannelGroup", "ChannelPruning", "count_macs", "prune_channels",
           "register_channel_criterion", "CRITERIA", "DEFAULT_TAU", "LEARNED", "Masks", "SCOPES", "SCORERS",
           "apply_masks", "check_amount",
           "check_masks", "compute_masks", "from_torch_prune", "high_magnitude_penalty",
           "list_criteria", "list_methods", "parse_tau", "prunable_parameters", "register_criterion",
           "register_learned", "resolve_tau", "sparsity_report", "to_torch_prune"]
