"""APGD-T and FAB-T inside the autoattack suite against the compute bound of their batches.

    PYTHONPATH=src:bench python bench/bench_targeted_bound.py [--arch resnet20 --images 100 --eps 0.5]

The community model (or a random-init one without ../shared) on CIFAR-10 test images: the points APGD-CE
(100 steps) leaves robust at --eps/255 are attacked by the suite's APGD-T and FAB-T alone (9 targets, 100
steps, the suite's harness with the folded copy), and the time is set beside 100 forward+input-backward passes
of the same rows (points x 9), the least any 100-step batched attack on them can cost.
"""

from __future__ import annotations

import argparse
import time

import torch

from common import machine, model_and_images
from robprune.attacks.apgd import apgd
from robprune.attacks.common import frozen, loss_and_gradient
from robprune.evaluation.suite import SUITES, worst_case
from robprune.models.folding import attack_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--eps", type=float, default=0.5, help="in units of 1/255")
    args = ap.parse_args()
    model, x, y, source = model_and_images(args.arch, args.images, torch.device("cpu"))
    model.eval()
    x = x.float() / 255 if x.dtype == torch.uint8 else x
    eps = args.eps / 255
    fast = attack_model(model)
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    xc, yc = x[ok], y[ok]
    survivors = apgd(fast, xc, yc, eps, 100, loss="ce")
    with torch.no_grad():
        keep = fast(survivors).argmax(1) == yc
    xr, yr = xc[keep], yc[keep]
    print(f"# {machine()}\n# {source}: {int(ok.sum())} of {len(x)} clean-correct, {len(xr)} robust after APGD-CE "
          f"at {args.eps:g}/255")
    rows_x, rows_y = xr.repeat(9, 1, 1, 1), yr.repeat(9)
    t0 = time.perf_counter()
    with frozen(fast):
        for _ in range(100):
            loss_and_gradient(fast, rows_x, rows_y, "ce", None)
    bound = time.perf_counter() - t0
    print(f"100 forward+input-backward passes of {len(rows_x)} rows (folded copy): {bound:.1f} s")
    for name in ("apgd-t", "fab-t"):
        specs = [a for a in SUITES["autoattack"] if a.name == name]
        t0 = time.perf_counter()
        row = worst_case(model, xr, yr, eps, specs, 500, attacker=fast)
        t = time.perf_counter() - t0
        print(f"{name} in the suite's harness: {t:.1f} s, {row['worst_case']['correct']} of {len(xr)} left robust; "
              f"time / bound = {t / bound:.2f}")


if __name__ == "__main__":
    main()
