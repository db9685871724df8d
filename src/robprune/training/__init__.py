"""Training: the config (one dataclass), the loop (masks, Eq. 4 penalty, autocast, resume) and the objectives."""

from .config import AUGMENTS, PRUNE_SCHEDULES, SCHEDULES, TRAIN_PRECISIONS, TrainConfig
from .loop import (CatastrophicOverfitting, DivergenceError, autocast_factory, gradual_amount, learning_rate,
                   subset_data, train)
from .folder import train_into
from .objectives import OBJECTIVES, Outcome, list_objectives, register_objective

__all__ = ["AUGMENTS", "CatastrophicOverfitting", "DivergenceError", "OBJECTIVES", "Outcome", "PRUNE_SCHEDULES",
           "SCHEDULES", "TRAIN_PRECISIONS", "TrainConfig", "autocast_factory", "gradual_amount", "learning_rate",
           "list_objectives", "register_objective", "subset_data", "train",
           "train_into"]
