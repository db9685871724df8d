"""Training: the config (one dataclass), the loop (masks, Eq. 4 penalty, autocast, resume) and the objectives."""

from .config import AUGMENTS, PRUNE_SCHEDULES, SCHEDULES, TRAIN_PRECISIONS, TrainConfig
from .loop import (CatastrophicOverfitting, DivergenceError, autocast_factory, gradual_amount, learning_rate,
                   subset_data, train)
from .folder import train_into
from .job import TrainJob, run_train_job
from .objectives import OBJECTIVES, Outcome, list_objectives, register_objective

__all__ = ["AUGMENTS", "CatastrophicOverfitting", "DivergenceError", "OBJECTIVES", "Outcome", "PRUNE_SCHEDULES",
           "SCHEDULES", "TRAIN_PRECISIONS", "TrainConfig", "TrainJob", "autocast_factory", "gradual_amount",
           "learning_rate", "list_objectives", "register_objective", "run_train_job", "subset_data", "train",
           "train_into"]
