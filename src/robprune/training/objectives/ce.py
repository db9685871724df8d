"""Natural training: cross-entropy on the clean images."""

from __future__ import annotations

import torch.nn.functional as F

from .base import Outcome, register_objective


@register_objective("ce", adversarial=False)
def ce(model, x, y, config, generator, autocast) -> Outcome:
    with autocast():
        logits = model(x)
    return Outcome(F.cross_entropy(logits.float(), y), logits, None)
