"""Pruning methods that learn their mask from data under a training objective (HYDRA, HYDRA with learned layer
rates, HYDRA at channel level).

They sit above ``training`` (they train scores with its objectives) and register themselves with
``pruning.criteria.register_learned``, so ``list_methods()`` names them beside the one-shot criteria.
"""

from . import hydra, rates  # noqa: F401  (register HYDRA and its learned-rates version)
from .hydra import learn_masks
from .hydra_channels import learn_channel_scores
from .rates import learn_rated_masks

__all__ = ["learn_channel_scores", "learn_masks", "learn_rated_masks"]
