"""Clean accuracy and accuracy under L-inf PGD over a list of attack radii, with Wilson intervals."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..attacks.common import Eps, check_eps, frozen
from ..attacks.pgd import pgd
from ..data.batches import as_float_images

log = logging.getLogger(__name__)


def fixed_subset(x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images drawn by a fixed random permutation (all of them, in order, when n is None or >= len).

    Test splits are often sorted by class (ImageFolder), so "the first n
    images" would be one class only; a seeded permutation gives every class.
    """
    if n is None or n >= len(x):
        return x, y
    idx = torch.as_tensor(subset_indices(len(x), n, seed))
    return x[idx], y[idx]


def subset_indices(total: int, n: int | None, seed: int = 0) -> np.ndarray:
    """The positions ``fixed_subset`` takes out of ``total`` images (sorted; all of them when n is None or >= total).

    Whoever lines up per-image outcomes of a subset with those of the whole split indexes with this, never with
    ``[:n]``: the subset is a seeded random draw, not the first n images.
    """
    if n is None or n >= total:
        return np.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].sort().values.numpy()


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (Wilson 1927)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def pack_bits(mask: torch.Tensor) -> str:
    """A bool vector as a hex string (8 images a byte, first image in the high bit)."""
    return np.packbits(mask.cpu().numpy().astype(bool)).tobytes().hex()


def unpack_bits(text: str, n: int) -> np.ndarray:
    """The bool vector of ``pack_bits``, ``n`` long."""
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n].astype(bool)


def summary(correct: int, n: int) -> dict:
    low, high = wilson_interval(correct, n)
    return {"correct": correct, "n": n, "accuracy": correct / max(n, 1), "ci95": [low, high]}


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Predicted labels for images in [0, 1] (or uint8), in eval mode."""
    device = next(model.parameters()).device
    with frozen(model):
        preds = [labels(model(as_float_images(x[i : i + batch_size].to(device)))).cpu()
                 for i in range(0, len(x), batch_size)]
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


NO_LABEL = -1  # the prediction of an image whose logits are not all finite: never a class, never correct


def labels(logits: torch.Tensor) -> torch.Tensor:
    """argmax over classes, and ``NO_LABEL`` for a row with a NaN or an infinite logit (argmax would pick the NaN's
    position, which can equal the label and count a broken output as correct)."""
    out = logits.argmax(1)
    return torch.where(torch.isfinite(logits).all(1), out, torch.full_like(out, NO_LABEL))


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_list: Sequence[Eps],
    steps: int,
    batch_size: int = 256,
    step_scale: float = 2.5,
    random_start: bool = True,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    fast: bool = True,
    precision: str = "fp32",
    compile: bool = False,
    per_image: bool = False,
) -> dict:
    """Clean accuracy and accuracy under L-inf PGD for each eps (pixel units).

    ``per_image`` adds which images were classified correctly (clean, and under each eps) as packed
    bits (``pack_bits``), so two models can be compared on the very same images (McNemar's test).

    Only the points still classified correctly are attacked (a misclassified
    point already counts as an error). The PGD step size is
    ``step_scale * eps / steps``. ``progress`` is called with the number of
    images finished after every batch of every eps.

    ``fast`` (the default) attacks a BatchNorm-folded, parameter-frozen, channels_last copy of the model
    (``fast=False``: the model itself);
    ``precision`` ("bf16", or "fp16" on a GPU) runs the attack's passes under
    autocast. Either way the adversarial examples are then classified by the
    original model in fp32, so a reduced-precision attack can only be weaker,
    never report a robustness that fp32 would not confirm. ``compile`` adds
    ``torch.compile`` to that copy (for GPUs).
    """
    from .fast import attack_model, autocast_context

    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} images but y has {len(y)} labels")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    for eps in eps_list:
        check_eps(eps)
    device = next(model.parameters()).device
    y = y.long()
    predicted = predict(model, x, batch_size)
    clean_ok = predicted == y.cpu()
    reduced = precision != "fp32"
    attacker = attack_model(model, compile=compile) if fast or reduced or compile else model
    memory_format = torch.channels_last if attacker is not model else torch.contiguous_format
    from ..distributed import all_reduce_and, all_reduce_sum, my_batches

    robust = []
    starts = my_batches(len(x), batch_size)  # all batches in one process; this rank's share under torchrun
    for i, eps in enumerate(eps_list):
        correct = 0
        still = clean_ok.clone()  # per image: correct under this eps (cleared in this rank's batches)
        for start in starts:
            ok = clean_ok[start : start + batch_size]
            if ok.any():
                xb = as_float_images(x[start : start + batch_size][ok].to(device)).contiguous(
                    memory_format=memory_format)
                yb = y[start : start + batch_size][ok].to(device)
                step = [step_scale * e / steps for e in eps] if isinstance(eps, (list, tuple)) \
                    else step_scale * eps / steps
                with autocast_context(torch.device(device), precision):
                    x_adv = pgd(attacker, xb, yb, eps, steps, step_size=step,  # the caller chose the attacker
                                random_start=random_start, seed=seed + 7919 * i + start, exact_model=True)
                with torch.no_grad(), frozen(model):
                    hit = (labels(model(x_adv)) == yb).cpu()
                correct += int(hit.sum())
                idx = ok.nonzero().squeeze(1) + start
                still[idx[~hit]] = False
            if progress is not None:
                progress(len(ok))
        (correct,) = all_reduce_sum([correct], torch.device(device))
        row = {"eps": eps, **summary(int(correct), len(x))}
        if per_image:
            row["correct_bits"] = pack_bits(all_reduce_and(still, torch.device(device)))
        robust.append(row)
    broken = int((predicted == NO_LABEL).sum())
    if broken:
        log.warning("%d of %d images give non-finite (NaN or infinite) logits; they count as misclassified",
                    broken, len(x))
    counts = torch.bincount(predicted[predicted != NO_LABEL], minlength=1)
    extra = {"clean_correct_bits": pack_bits(clean_ok)} if per_image else {}
    return {
        "n": len(x),
        "clean": summary(int(clean_ok.sum()), len(x)),
        "prediction_max_share": float(counts.max()) / max(len(x), 1),
        "nonfinite_logits": broken,
        **extra,
        "robust": robust,
        "attack": {"name": "pgd-linf", "steps": steps, "step_scale": step_scale,
                   "random_start": random_start, "seed": seed,
                   "path": f"{'folded-bn channels_last ' if attacker is not model else ''}{precision} attack, "
                           "fp32 check"},
    }
