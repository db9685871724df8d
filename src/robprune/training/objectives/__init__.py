"""Training objectives, each one file and one ``@register_objective``: ce, pgd, trades, fgsm.

An objective maps (model, x, y, config, generator) to an :class:`Outcome`:
the loss to minimise and the logits from which the training accuracies are
counted. Attack steps take gradients with respect to the input only (no
weight gradients) and draw their random starts from the run's generator,
so every step gets fresh noise and a resumed run continues bit-exactly.
"""

from . import ce, fgsm, pgd, trades  # noqa: F401  (registers the objectives)
from .base import OBJECTIVES, Outcome, list_objectives, register_objective

__all__ = ["OBJECTIVES", "Outcome", "list_objectives", "register_objective"]
