"""robprune: pruning neural networks for adversarial robustness.

Implements "Pruning for Robustness by Suppressing High Magnitude and
Increasing Sparsity of Weights": conventional pruning (CP), reverse pruning
(RP), and the high-magnitude regulariser of Eq. 4, with adversarial training,
AutoAttack-grade evaluation and the weight statistics of the paper's Table 1.

Layers (data -> model -> prune -> train -> attack -> report):
``data``, ``models``, ``pruning``, ``training``, ``attacks``, ``evaluation``,
``experiments``, ``reporting``; ``cli`` is the only part that talks to a terminal.
"""

__version__ = "0.2.0"

from .attacks import fgsm, list_attacks, pgd, register_attack, run_attack  # noqa: E402
from .checkpoint import import_checkpoint, load_checkpoint, save_checkpoint  # noqa: E402
from .data import ImageData, load_dataset  # noqa: E402
from .evaluation import evaluate, fold_batchnorm, lipschitz_bound, weight_stats, worst_case  # noqa: E402
from .evaluation.run import EvalRequest, run_evaluation  # noqa: E402
from .models import create_model, list_models, register_model, wrap_model  # noqa: E402
from .pruning import (apply_masks, compute_masks, count_macs, from_torch_prune, high_magnitude_penalty,  # noqa: E402
                      list_criteria, list_methods, prune_channels, register_channel_criterion, register_criterion,
                      sparsity_report, to_torch_prune)
from .training import TrainConfig, list_objectives, register_objective, train  # noqa: E402
from .learned import learn_channel_scores, learn_masks  # noqa: E402  (registers HYDRA)

__all__ = [
    "EvalRequest", "ImageData", "TrainConfig", "apply_masks", "compute_masks", "count_macs", "create_model", "evaluate",
    "fgsm", "fold_batchnorm", "from_torch_prune", "high_magnitude_penalty", "import_checkpoint", "learn_channel_scores",
    "learn_masks",
    "lipschitz_bound", "list_attacks", "list_criteria", "list_methods", "list_models", "list_objectives",
    "load_checkpoint", "load_dataset", "pgd", "prune_channels", "register_channel_criterion",
    "register_attack", "register_criterion", "register_model", "register_objective", "run_attack", "run_evaluation",
    "save_checkpoint", "sparsity_report", "to_torch_prune", "train", "weight_stats", "worst_case", "wrap_model",
]
