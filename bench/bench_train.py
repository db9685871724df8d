"""rp.train against a bare PyTorch training loop written here: the cost of everything robprune adds to a step.

    python bench/bench_train.py [--arch resnet20 --images 1024 --batch 128 --epochs 2 --repeats 2]

Same model (one copy per run), images, batch order, optimiser (SGD, momentum 0.9, weight decay 5e-4),
cosine learning rate per step, no augmentation, channels_last, one evaluation of the test images per epoch.
Four workloads: natural and PGD-AT (PGD-3 at 8/255), each dense and with 90% masks plus the hinge (lam 1e-3,
tau the 0.9 quantile); fp32, and bf16 autocast with --bf16. The bare loop applies the masks and the penalty
the textbook way (a loop over the weights). Interleaved rounds, best of --repeats; prints the ratios and
whether the targets (dense <= 1.05x, masked + hinge <= 1.10x) are met.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import time

import torch
import torch.nn.functional as F

from common import machine
import robprune as rp
from robprune.data import ImageData
from robprune.pruning.masks import prunable_parameters
from robprune.pruning.regularizer import resolve_tau


def bare_loop(model, data, config, masks, tau, precision):
    """What a researcher writes by hand: the same math as rp.train, nothing else."""
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    weights = list(prunable_parameters(model).values())
    pairs = [(dict(model.named_parameters())[n], m) for n, m in (masks or {}).items()]
    g = torch.Generator().manual_seed(config.seed)
    n, b = len(data.x_train), config.batch_size
    steps = n // b
    total = steps * config.epochs
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext
    with torch.no_grad():
        for p, m in pairs:
            p.mul_(m)
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(n, generator=g)
        for i in range(steps):
            idx = order[i * b:(i + 1) * b]
            x = (data.x_train[idx].float() / 255).contiguous(memory_format=torch.channels_last)
            y = data.y_train[idx]
            for group in opt.param_groups:
                group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * (epoch * steps + i) / total))
            if config.adv == "pgd":
                model.eval()
                delta = torch.empty_like(x).uniform_(-config.adv_eps, config.adv_eps, generator=g)
                for _ in range(config.adv_steps):
                    delta.requires_grad_(True)
                    with ctx():
                        loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
                    grad, = torch.autograd.grad(loss, delta)
                    delta = (delta.detach() + 0.25 * config.adv_eps * grad.sign()).clamp(-config.adv_eps,
                                                                                          config.adv_eps)
                x = (x + delta).clamp(0, 1)
                model.train()
            with ctx():
                loss = F.cross_entropy(model(x), y)
            if tau is not None:
                loss = loss + config.lam * sum(torch.relu(w.abs() - tau).sum() for w in weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for p, m in pairs:
                    p.mul_(m)
        model.eval()
        with torch.no_grad():
            (model(data.x_test.float() / 255).argmax(1) == data.y_test).float().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--bf16", action="store_true")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    data = ImageData("random", torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (args.images,), generator=g),
                     torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (256,), generator=g), tuple(str(i) for i in range(10)), "none", 0)
    torch.manual_seed(0)
    base = rp.create_model(args.arch).to(memory_format=torch.channels_last)
    masks = rp.compute_masks(base, "cp", 0.9)
    print(f"# {machine()}\n# {args.arch}, {args.images} random images, batch {args.batch}, {args.epochs} epochs, "
          f"best of {args.repeats} interleaved rounds")
    precision = "bf16" if args.bf16 else "fp32"
    for adv in ("ce", "pgd"):
        for masked in (False, True):
            config = rp.TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=0.05, augment="none",
                                    adv=adv, adv_eps=8 / 255, adv_steps=3, adv_step_size=2 / 255, guard=False,
                                    precision=precision, lam=1e-3 if masked else 0.0,
                                    tau="q0.9")
            tau = resolve_tau(base, "q0.9") if masked else None
            times = {"robprune": [], "bare": []}
            for _ in range(args.repeats + 1):  # the first round warms up
                for name in times:
                    model = copy.deepcopy(base)
                    t0 = time.perf_counter()
                    if name == "robprune":
                        rp.train(model, data, config, masks=copy.deepcopy(masks) if masked else None)
                    else:
                        bare_loop(model, data, config, masks if masked else None, tau, precision)
                    times[name].append(time.perf_counter() - t0)
            best = {k: min(v[1:]) for k, v in times.items()}
            ratio = best["robprune"] / best["bare"]
            target = 1.10 if masked else 1.05
            label = f"{'PGD-AT' if adv == 'pgd' else 'natural'} {'90% masks + hinge' if masked else 'dense'}"
            print(f"{label:28s} {precision}: rp.train {best['robprune']:6.2f} s, bare loop {best['bare']:6.2f} s, "
                  f"ratio {ratio:.3f} (target <= {target:.2f}: {'met' if ratio <= target else 'missed'})",
                  flush=True)


if __name__ == "__main__":
    main()
