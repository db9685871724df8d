"""Training-step cost: bf16 against fp32 (CPU autocast), and adversarial objectives against a natural step.

    python bench/bench_objectives.py [--archs resnet20,resnet56 --batch 128 --steps 6 --repeats 3 --k 10]
Same model, batch and optimiser, side by side in one process (interleaved rounds, medians); prints the ratios
and the targets of the robust-training issue: bf16 >= 1.4x fp32 images/s; FGSM-RS <= 2.1x and PGD-k
<= (k + 1) * 1.05x the time of a natural step (all fp32 here).
"""

from __future__ import annotations

import argparse
import copy

import torch

from common import interleaved_medians, machine
from robprune import TrainConfig, create_model
from robprune.training.loop import autocast_factory
from robprune.training.objectives import OBJECTIVES


def step_fn(base, x, y, adv: str, precision: str, k: int, steps: int):
    model = copy.deepcopy(base)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    config = TrainConfig(adv=adv, adv_steps=k, precision=precision)
    autocast = autocast_factory(torch.device("cpu"), precision)
    gen = torch.Generator().manual_seed(0)
    objective = OBJECTIVES.get(adv)

    def run():
        for _ in range(steps):
            out = objective(model, x, y, config, gen, autocast)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="resnet20,resnet56")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        base = create_model(arch).to(memory_format=torch.channels_last).train()
        x = torch.rand(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (args.batch,))
        fns = {"natural fp32": step_fn(base, x, y, "ce", "fp32", args.k, args.steps),
               "natural bf16": step_fn(base, x, y, "ce", "bf16", args.k, args.steps),
               "fgsm-rs fp32": step_fn(base, x, y, "fgsm", "fp32", args.k, args.steps),
               f"pgd-{args.k} fp32": step_fn(base, x, y, "pgd", "fp32", args.k, max(1, args.steps // 3))}
        t = interleaved_medians(fns, args.repeats)
        per_step = {name: t[name] / (args.steps if not name.startswith("pgd") else max(1, args.steps // 3))
                    for name in t}
        print(f"workload: {arch}, batch {args.batch}, SGD steps, channels_last; medians of {args.repeats} "
              "interleaved rounds")
        for name, s in per_step.items():
            print(f"  {name:16s} {args.batch / s:8.1f} images/s")
        bf16 = per_step["natural fp32"] / per_step["natural bf16"]
        fgsm = per_step["fgsm-rs fp32"] / per_step["natural fp32"]
        pgd = per_step[f"pgd-{args.k} fp32"] / per_step["natural fp32"]
        print(f"ratios ({arch}):")
        print(f"  bf16 images/s / fp32 images/s      {bf16:.2f}   (target >= 1.4)")
        print(f"  FGSM-RS step / natural step        {fgsm:.2f}   (target <= 2.1)")
        print(f"  PGD-{args.k} step / natural step         {pgd:.2f}   (target <= {(args.k + 1) * 1.05:.2f})")


if __name__ == "__main__":
    main()
