"""Training batches from uint8 tensors: shuffled, augmented with batched tensor ops, on the data's device."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F


def as_float_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) become float32 in [0, 1]; float images pass through."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def augment_batch(x: torch.Tensor, mode: str, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding and (for "crop-flip") horizontal flip, batched on x's device."""
    if mode == "none" or len(x) == 0:
        return x
    if mode not in ("crop", "crop-flip"):
        raise ValueError(f"unknown augmentation {mode!r}; use crop-flip, crop or none")
    n, c, h, w = x.shape
    dev = x.device
    if padding > 0:
        padded = F.pad(x, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]
        x = padded[torch.arange(n, device=dev)[:, None, None, None],
                   torch.arange(c, device=dev)[None, :, None, None], rows, cols]
    if mode == "crop-flip":
        flip = torch.rand(n, generator=generator, device=dev) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    augment: str = "none",
    padding: int = 0,
    shuffle: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Float batches in [0, 1] from uint8 tensors, shuffled and augmented with ``generator``.

    The last incomplete batch is dropped when shuffling (as in training), so
    every optimiser step sees ``batch_size`` images.
    """
    n = len(x)
    order = torch.randperm(n, generator=generator, device=x.device) if shuffle \
        else torch.arange(n, device=x.device)
    stop = n - n % batch_size if shuffle and n >= batch_size else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        xb = augment_batch(x[idx], augment, padding, generator)
        yield xb.float().div_(255.0), y[idx]


def balanced_subset(y: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Sorted indices of ``n`` items drawn at random with the classes as equal as possible (seeded).

    Each class gives floor(n / classes) items (one more for the first
    n % classes classes in a seeded order); a class with too few items gives
    all it has and the rest is drawn from the others.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"subset size must be an integer >= 1, got {n!r}")
    if n >= len(y):
        return torch.arange(len(y))
    g = torch.Generator().manual_seed(seed)
    y = y.cpu()
    classes = y.unique()
    pools = {int(c): (y == c).nonzero().squeeze(1)[torch.randperm(int((y == c).sum()), generator=g)]
             for c in classes}
    order = [int(classes[i]) for i in torch.randperm(len(classes), generator=g)]
    taken = {c: 0 for c in order}
    remaining = n
    while remaining > 0:
        open_classes = [c for c in order if taken[c] < len(pools[c])]
        share, extra = divmod(remaining, len(open_classes))
        for i, c in enumerate(open_classes):
            k = min(share + (i < extra), len(pools[c]) - taken[c])
            taken[c] += k
            remaining -= k
    idx = torch.cat([pools[c][: taken[c]] for c in order])
    return idx.sort().values
