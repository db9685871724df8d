"""Pruning methods that learn their mask from data under a training objective (HYDRA, its channel version).

They sit above ``training`` (they train scores with its objectives) and register themselves with
``pruning.criteria.register_learned``, so ``list_methods()`` names them beside the one-shot criteria.
"""

from . import hydra  # noqa: F401  (registers HYDRA)
from .hydra import learn_masks
from .hydra_channels import learn_channel_scores

__all__ = ["learn_channel_scores", "learn_masks"]
