"""The fine-tuning protocol's configuration: the paper's eps, the readings of its eps unit that the protocol
compares, the full-size settings and the quick preset."""

from __future__ import annotations

from dataclasses import dataclass

from ..training import TrainConfig

PAPER_EPS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)


@dataclass(frozen=True)
class Reading:
    name: str  # short label
    description: str  # what this reading of the paper's setting assumes
    normalized: bool  # eps applied to the normalised input: pixel eps = eps * channel std
    steps: int  # PGD steps
    step_scale: float  # step size = step_scale * eps / steps
    random_start: bool = False


READINGS = (
    Reading("pixel", "eps/255 in pixel space, 4 steps of 2.5*eps/4", False, 4, 2.5),
    Reading("pixel-a1", "eps/255 in pixel space, 4 steps of eps/4", False, 4, 1.0),
    Reading("pixel-fgsm", "eps/255 in pixel space, 1 step of eps (FGSM)", False, 1, 1.0),
    Reading("norm", "eps/255 on the normalised input, 4 steps of 2.5*eps/4", True, 4, 2.5),
    Reading("norm-a1", "eps/255 on the normalised input, 4 steps of eps/4", True, 4, 1.0),
    Reading("norm-10", "eps/255 on the normalised input, 10 steps of 2.5*eps/10", True, 10, 2.5),
)


@dataclass(frozen=True)
class ReproduceConfig:
    arch: str = "resnet56"  # architecture (must match --init)
    baseline: TrainConfig = TrainConfig(epochs=2, batch_size=128, lr=0.01, weight_decay=5e-4)  # fine-tune of init
    finetune: TrainConfig = TrainConfig(epochs=2, batch_size=128, lr=0.01, weight_decay=5e-4)  # each arm
    cp_amount: float = 0.5  # paper: CP at 50%
    rp_amount: float = 0.1  # paper: RP at 10%
    tau: str = "q0.9"  # penalty threshold: the magnitude RP at 10% would cut
    lam_grid: tuple[float, ...] = (0.01, 0.03)  # candidates for Ours' lam (0 = CP is the reference)
    max_clean_drop: float = 0.01  # Ours may lose at most this much held-out clean accuracy vs CP
    holdout: int = 5000  # train images held out for the lam search (never trained on)
    search_images: int = 1000  # held-out images attacked in the lam search
    calib_images: int = 500  # test images used to compare eps readings with the paper
    eval_images: int | None = None  # test images for Table 2 (None = all)
    eval_batch: int = 250  # images per attack batch
    sweep_ratios: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)  # Figure 2
    sweep_epochs: int = 1  # fine-tuning epochs after each one-shot sweep pruning
    sweep_images: int = 1000  # test images per sweep evaluation
    suite: str = "standard"  # worst-case attack suite run on every arm (issue: do the gains survive APGD and Square?)
    suite_images: int = 500  # test images attacked by the suite
    bound_images: int = 500  # test images for the measured distortion ratio
    train_images: int | None = None  # cap on training images (quick mode)


QUICK = ReproduceConfig(
    arch="resnet20",
    baseline=TrainConfig(epochs=1, batch_size=64, lr=0.01, weight_decay=5e-4),
    finetune=TrainConfig(epochs=1, batch_size=64, lr=0.01, weight_decay=5e-4),
    lam_grid=(0.01,), holdout=100, suite="fast", suite_images=40, search_images=100, calib_images=100, eval_images=200,
    sweep_ratios=(0.1, 0.5, 0.9), sweep_epochs=1, sweep_images=100, bound_images=50, train_images=1000,
)
