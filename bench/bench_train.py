"""Cost of masked fine-tuning with the Eq. 4 regulariser against a plain dense training step.

    python bench/bench_train.py [--arch resnet56 --batch 128 --steps 20 --repeats 3]
Same model, data and optimiser, side by side in one process; prints the overhead ratio.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F

from common import interleaved_medians, machine
from robprune import apply_masks, compute_masks, create_model, high_magnitude_penalty
from robprune.pruning.regularizer import resolve_tau


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet56")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    base = create_model(args.arch).to(memory_format=torch.channels_last).train()
    x = torch.rand(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))

    def loop(masked: bool):
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        masks = compute_masks(model, "cp", 0.5) if masked else None
        tau = resolve_tau(model, "q0.9")

        def run():
            for _ in range(args.steps):
                loss = F.cross_entropy(model(x), y)
                if masked:
                    loss = loss + 1e-3 * high_magnitude_penalty(model, tau)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if masked:
                    apply_masks(model, masks)
        return run

    t = interleaved_medians({"dense": loop(False), "masked": loop(True)}, args.repeats)
    dense, masked = t["dense"], t["masked"]
    print(f"machine: {machine()}")
    print(f"workload: {args.arch}, batch {args.batch}, {args.steps} SGD steps; "
          f"medians of {args.repeats} interleaved rounds")
    print(f"  dense step                 {args.steps * args.batch / dense:8.1f} images/s")
    print(f"  masked step + regulariser  {args.steps * args.batch / masked:8.1f} images/s")
    print(f"ratio: masked+regulariser time / dense time = {masked / dense:.3f}   (target <= 1.05)")


if __name__ == "__main__":
    main()
