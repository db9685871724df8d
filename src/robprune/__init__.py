"""robprune: pruning neural networks for adversarial robustness.

Implements "Pruning for Robustness by Suppressing High Magnitude and
Increasing Sparsity of Weights": conventional pruning (CP), reverse pruning
(RP), and the high-magnitude regulariser of Eq. 4, with PGD evaluation and the
weight statistics of the paper's Table 1.
"""

__version__ = "0.1.0"

from .attacks import fgsm, pgd  # noqa: E402
from .checkpoint import import_checkpoint, load_checkpoint, save_checkpoint  # noqa: E402
from .data import ImageData, load_dataset  # noqa: E402
from .evaluation import evaluate  # noqa: E402
from .models import create_model  # noqa: E402
from .pruning import apply_masks, compute_masks, sparsity_report  # noqa: E402
from .regularizer import high_magnitude_penalty  # noqa: E402
from .stats import weight_stats  # noqa: E402
from .train import TrainConfig, train  # noqa: E402

__all__ = [
    "ImageData", "TrainConfig", "apply_masks", "compute_masks", "create_model", "evaluate", "fgsm",
    "high_magnitude_penalty", "import_checkpoint", "load_checkpoint", "load_dataset", "pgd",
    "save_checkpoint", "sparsity_report", "train", "weight_stats",
]
