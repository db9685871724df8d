"""APGD-CE: ours against torchattacks' APGD, speed and strength, at a small and a large eps.

Both run on the same model (the plain model: no BatchNorm folding, so only the attack loops differ), the
same correctly classified images and batches, with one restart and the same step budget. Ours stops
attacking an image once it is misclassified, so at large eps, where most images fall in the first steps,
it should be much faster; at small eps the two loops do the same work. Robust accuracy is printed beside
the speed so a faster attack cannot hide a weaker one:
    python bench/bench_apgd.py [--images 128 --batch 128 --steps 20 --eps 1,8 --repeats 1]
"""

from __future__ import annotations

import argparse

import torch

from common import interleaved_medians, machine, model_and_images
from robprune.attacks.apgd import apgd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet56")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--eps", default="1,8", help="comma-separated, in units of 1/255")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    try:
        import torchattacks
    except ImportError:
        raise SystemExit("torchattacks is not installed (make install adds it); nothing to compare against")
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    model, x, y, source = model_and_images(args.arch, args.images, device)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    x, y = x[correct], y[correct]  # both attacks only ever attack correctly classified points
    batches = [(x[i:i + args.batch], y[i:i + args.batch]) for i in range(0, len(x), args.batch)]
    print(f"machine: {machine()}")
    print(f"workload: APGD-CE, {args.steps} steps, 1 restart, {len(x)} correctly classified images, batch "
          f"{args.batch}, {source}; medians of {args.repeats} interleaved round(s) after a warm-up")
    for e in [float(v) for v in args.eps.split(",")]:
        eps = e / 255
        ta = torchattacks.APGD(model, norm="Linf", eps=eps, steps=args.steps, n_restarts=1, seed=0, loss="ce")
        robust = {}

        def run(name: str, attack):
            def go():
                kept = 0
                for xb, yb in batches:
                    x_adv = attack(xb, yb)
                    with torch.no_grad():
                        kept += int((model(x_adv).argmax(1) == yb).sum())
                robust[name] = kept
            return go

        times = interleaved_medians({"ours": run("ours", lambda xb, yb: apgd(model, xb, yb, eps, args.steps)),
                                     "torchattacks": run("torchattacks", ta)}, args.repeats, sync)
        print(f"eps {e:g}/255:")
        for name, t in times.items():
            print(f"  {name:<14} {len(x) / t:8.1f} images/s   robust {robust[name]}/{len(x)}")
        print(f"  speed ratio ours / torchattacks: {times['torchattacks'] / times['ours']:.2f}")


if __name__ == "__main__":
    main()
