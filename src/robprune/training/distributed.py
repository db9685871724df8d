"""Data parallelism on torch.distributed: what the training loop needs to know about its process group.

Under ``torchrun`` every rank holds the whole uint8 data set, draws the same
seeded permutation and augmentation for each *global* batch, and keeps its
own contiguous slice of it; DistributedDataParallel averages the gradients,
so ``batch_size`` stays the global batch and a run matches one process up to
float reduction order. Outside a process group everything here is a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as torch_dist
from torch import nn

from ..distributed import all_reduce_sum


class Context:
    """Rank, world size and the collective operations of one training run."""

    def __init__(self, device: torch.device) -> None:
        self.active = torch_dist.is_available() and torch_dist.is_initialized()
        self.rank = torch_dist.get_rank() if self.active else 0
        self.world = torch_dist.get_world_size() if self.active else 1
        self.device = device

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.world:
            raise ValueError(f"batch size {batch_size} is not divisible by the {self.world} ranks; the batch size "
                             "is the global batch, choose a multiple of the rank count")

    def shard(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's contiguous slice of a global batch."""
        if self.world == 1:
            return x, y
        per = len(x) // self.world
        lo = self.rank * per
        return x[lo : lo + per], y[lo : lo + per]

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.world == 1:
            return model
        import warnings

        ids = [self.device.index] if self.device.type == "cuda" else None
        with warnings.catch_warnings():  # the rename of broadcast_buffers is announced, not yet available
            warnings.simplefilter("ignore", FutureWarning)
            # Rank-local BatchNorm statistics (or SyncBatchNorm with --sync-bn); parameters start equal.
            return nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)

    def check_equal(self, tensors: Mapping[str, torch.Tensor], what: str) -> None:
        """Raise when ``tensors`` differ between ranks (compared by a checksum all-gathered to every rank)."""
        if self.world == 1 or not tensors:
            return
        local = torch.tensor([float(sum(int(t.sum()) * (i + 1) for i, t in enumerate(tensors.values())))],
                             dtype=torch.float64, device=self.device)
        gathered = [torch.zeros_like(local) for _ in range(self.world)]
        torch_dist.all_gather(gathered, local)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise RuntimeError(f"{what} differ between ranks; every rank must compute the same")

    def all_reduce_sums(self, sums: dict) -> dict:
        """Add up per-rank counters (images seen, correct, loss sums) over all ranks."""
        keys = sorted(sums)
        totals = all_reduce_sum([float(sums[k]) for k in keys], self.device)
        return {k: (int(v) if isinstance(sums[k], int) else float(v)) for k, v in zip(keys, totals)}


def context(device: torch.device) -> Context:
    return Context(device)
