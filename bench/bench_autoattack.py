"""Our --suite autoattack against the original AutoAttack (pyautoattack 0.2.0, the authors' code, version
'standard') and torchattacks' AutoAttack on the same model and images; and the default robprune.pgd path
against a textbook PGD loop.

    python bench/bench_autoattack.py [--arch resnet20 --images 64 --eps 2]
    python bench/bench_autoattack.py --checkpoint UNIT/model.safetensors --images 64 --eps 8   # a robprune model
Prints robust counts and per-image agreement side by side, the speed ratios (against the original: target
>= 1.5x), and PGD default / textbook (target >= 1.5x). --skip-torchattacks leaves torchattacks out.
Each path runs once (AutoAttack is long); the PGD comparison uses interleaved medians.
Note: torchattacks' AutoAttack runs APGD and FAB with their default 10 steps, AutoAttack's reference 100.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from common import interleaved_medians, machine, model_and_images
from robprune.attacks import pgd
from robprune.evaluation import SUITES, attack_model, worst_case


def textbook_pgd(model, x, y, eps, steps):
    """PGD as a tutorial writes it: model in eval mode, parameters left trainable, nothing folded."""
    alpha = 2.5 * eps / steps
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        grad, = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv


def original(model, x, y, eps, ours, t_ours) -> None:
    """The authors' AutoAttack on the same images: robust count, per-image agreement, time and the ratio."""
    try:
        import pyautoattack
    except ImportError:
        print("  pyautoattack absent (pip install --no-deps pyautoattack==0.2.0): no comparison with the original")
        return
    attack = pyautoattack.AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=0)
    attack.logger.setLevel("ERROR")
    t0 = time.perf_counter()
    x_adv, _ = attack.run_standard_evaluation(x, y, batch_size=len(x))
    t_orig = time.perf_counter() - t0
    with torch.no_grad():
        theirs = model(x_adv).argmax(1) == y
    robust = torch.tensor(ours["robust_mask"])
    print(f"  original AutoAttack (pyautoattack {pyautoattack.__version__}): robust {int(theirs.sum())}, "
          f"{t_orig:.1f} s ({len(x) / t_orig:.2f} images/s); per-image robust sets differ on "
          f"{int((robust ^ theirs).sum())} of {len(x)} (ours only {int((robust & ~theirs).sum())}, "
          f"theirs only {int((~robust & theirs).sum())})")
    print(f"ratio: ours images/s / original images/s = {t_orig / t_ours:.2f}   (target >= 1.5)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet56")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--eps", type=float, default=1.0, help="in units of 1/255")
    ap.add_argument("--pgd-images", type=int, default=256)
    ap.add_argument("--digits", action="store_true", help="a small_cnn trained here on digits (6 epochs) instead")
    ap.add_argument("--skip-torchattacks", action="store_true")
    ap.add_argument("--skip-pgd", action="store_true")
    ap.add_argument("--checkpoint", help="a robprune checkpoint (e.g. an adversarially trained model, where points "
                                         "survive into APGD-T, FAB-T and Square) on CIFAR-10 (JPEG) test images")
    args = ap.parse_args()
    device = torch.device("cpu")
    if args.digits:
        import robprune as rp
        data = rp.load_dataset("digits")
        torch.manual_seed(0)
        mean, std = data.channel_stats()
        model = rp.create_model("small_cnn", mean=mean, std=std)
        rp.train(model, data, rp.TrainConfig(epochs=6, batch_size=64, lr=0.05))
        model.eval()
        n = max(args.images, args.pgd_images)
        x, y = data.x_test[:n].float() / 255, data.y_test[:n]
        source = "small_cnn trained 6 epochs on digits (the cross-check test's model), digits test images"
    else:
        model, x, y, source = model_and_images(args.arch, max(args.images, args.pgd_images), device, args.checkpoint)
    eps = args.eps / 255
    print(f"machine: {machine()}")
    print(f"workload: {source}")
    xa, ya = x[: args.images], y[: args.images]
    t0 = time.perf_counter()
    ours = worst_case(model, xa, ya, eps, SUITES["autoattack"], batch_size=args.images, attacker=attack_model(model))
    t_ours = time.perf_counter() - t0
    try:
        import torchattacks
    except ImportError:
        print("torchattacks absent: only our numbers")
        torchattacks = None
    torchattacks = None if args.skip_torchattacks else torchattacks
    print(f"AutoAttack standard at {args.eps:g}/255 on {args.images} images:")
    print(f"  robprune --suite autoattack: clean {ours['clean']['correct']}, robust {ours['worst_case']['correct']}, "
          f"{t_ours:.1f} s ({args.images / t_ours:.2f} images/s); per attack: "
          + ", ".join(f"{k} {v['robust_after']['correct']} ({v['seconds']:.1f} s)" for k, v in ours["attacks"].items()))
    original(model, xa, ya, eps, ours, t_ours)
    if torchattacks is not None:
        t0 = time.perf_counter()
        adv = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)(xa, ya)
        t_theirs = time.perf_counter() - t0
        with torch.no_grad():
            theirs = int((model(adv).argmax(1) == ya).sum())
        print(f"  torchattacks AutoAttack:     robust {theirs}, {t_theirs:.1f} s "
              f"({args.images / t_theirs:.2f} images/s)"
              " (its APGD, APGD-T and FAB run 10 steps, not AutoAttack's 100)")
        ta = torchattacks
        same = ta.MultiAttack([ta.APGD(model, eps=eps, steps=100, loss="ce", seed=0),
                               ta.APGDT(model, eps=eps, steps=100, n_classes=10, seed=0),
                               ta.FAB(model, eps=eps, steps=100, multi_targeted=True, n_classes=10, seed=0),
                               ta.Square(model, eps=eps, n_queries=5000, seed=0)])
        t0 = time.perf_counter()
        adv = same(xa, ya)
        t_same = time.perf_counter() - t0
        with torch.no_grad():
            same_kept = int((model(adv).argmax(1) == ya).sum())
        print(f"  torchattacks, same budget:   robust {same_kept}, {t_same:.1f} s ({args.images / t_same:.2f} images/s)"
              " (APGD-CE, APGD-T, FAB-T at 100 steps, Square 5000)")
        print(f"ratio: ours images/s / torchattacks images/s, same budget = {t_same / t_ours:.2f}   (target >= 3); "
              f"against its 10-step default = {t_theirs / t_ours:.2f}")
        square = ours["attacks"]["square"]["seconds"]
        if square >= 0.05:  # no point reached Square: there is no bound to state
            print(f"  our Square alone (5,000 forward passes per surviving point): {square:.1f} s, so even if every "
                  f"other attack cost nothing the ratio could not exceed {t_same / square:.2f}")
    if args.skip_pgd:
        return
    xp, yp = x[: args.pgd_images], y[: args.pgd_images]
    fast = attack_model(model)  # the default path of evaluate and every suite: folded, frozen, channels_last
    xc = xp.contiguous(memory_format=torch.channels_last)
    t = interleaved_medians({"default": lambda: pgd(fast, xc, yp, 8 / 255, 10),
                             "textbook": lambda: textbook_pgd(model.eval(), xp, yp, 8 / 255, 10)}, 3)
    print(f"PGD-10 at 8/255 on {args.pgd_images} images (medians of 3 interleaved rounds):")
    print(f"  default path (folded, frozen)  {args.pgd_images / t['default']:8.1f} images/s")
    print(f"  textbook loop                  {args.pgd_images / t['textbook']:8.1f} images/s")
    print(f"ratio: default / textbook = {t['textbook'] / t['default']:.2f}   (target >= 1.5)")


if __name__ == "__main__":
    main()
