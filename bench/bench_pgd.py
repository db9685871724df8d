"""PGD throughput: ours against the k x (forward + input-backward) + forward limit and against torchattacks.

Everything is measured side by side in one process, on the same model, images and batches:
    python bench/bench_pgd.py [--images 1000 --batch 128 --steps 4 --eps 8 --repeats 3 --compile]
Prints images/s for each path and the ratios that docs/performance.md quotes.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from common import interleaved_medians, machine, model_and_images
from robprune.attacks import pgd
from robprune.evaluation.fast import attack_model, autocast_context


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet56")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--eps", type=float, default=8.0, help="in units of 1/255")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--acc-eps", default="1,2,4,8", help="eps (x/255) at which fp32 and bf16 accuracy are compared")
    ap.add_argument("--acc-images", type=int, default=1000, help="images for the accuracy comparison")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--compile", action="store_true", help="also time the folded model under torch.compile "
                    "(compiled once before the timed rounds)")
    args = ap.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    model, x, y, source = model_and_images(args.arch, args.images, device)
    fast = attack_model(model)
    eps, k = args.eps / 255, args.steps
    batches = [(x[i:i + args.batch].contiguous(memory_format=torch.channels_last), y[i:i + args.batch])
               for i in range(0, len(x), args.batch)]
    plain_batches = [(xb.contiguous(), yb) for xb, yb in batches]

    def limit():  # k x (forward + backward to the input) + one forward, nothing else
        for xb, yb in batches:
            for _ in range(k):
                xr = xb.detach().requires_grad_(True)
                torch.autograd.grad(F.cross_entropy(fast(xr), yb, reduction="sum"), xr)
            with torch.no_grad():
                fast(xb)

    def ours(m, bs, precision="fp32"):
        def run():
            for xb, yb in bs:
                with autocast_context(device, precision):
                    x_adv = pgd(m, xb, yb, eps, k, random_start=False)
                with torch.no_grad():
                    m(x_adv)
        return run

    paths = {"limit": limit,
             "ours fp32 (folded, channels_last)": ours(fast, batches),
             "ours fp32 (plain model)": ours(model, plain_batches),
             "ours bf16 (folded, channels_last)": ours(fast, batches, "bf16")}
    if args.compile:
        compiled = attack_model(model, compile=True)
        ours(compiled, batches)()  # compilation (and recompilation for the last, shorter batch) before timing
        paths["ours fp32 (folded, torch.compile)"] = ours(compiled, batches)
    try:
        import torchattacks

        ta = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / k, steps=k, random_start=False)

        def theirs():
            for xb, yb in plain_batches:
                x_adv = ta(xb, yb)
                with torch.no_grad():
                    model(x_adv)
        paths["torchattacks PGD"] = theirs
    except ImportError:
        print("torchattacks is not installed (make install adds it); its comparison is skipped")
    results = interleaved_medians(paths, args.repeats, sync)

    # Robust accuracy of the bf16 path against fp32 on the same images, both checked by the fp32 model.
    _, xa, ya, _ = model_and_images(args.arch, args.acc_images, device)
    acc = {}
    for e in [float(v) for v in args.acc_eps.split(",")]:
        for precision in ("fp32", "bf16"):
            correct = 0
            for i in range(0, len(xa), args.batch):
                xb = xa[i:i + args.batch].contiguous(memory_format=torch.channels_last)
                yb = ya[i:i + args.batch]
                with autocast_context(device, precision):
                    x_adv = pgd(fast, xb, yb, e / 255, k, random_start=False)
                with torch.no_grad():
                    correct += int((model(x_adv.contiguous()).argmax(1) == yb).sum())
            acc[(e, precision)] = 100 * correct / len(xa)

    print(f"machine: {machine()}")
    print(f"workload: PGD-{k}, eps {args.eps:g}/255, {len(x)} images, batch {args.batch}, {source}; "
          f"medians of {args.repeats} interleaved rounds")
    for name, seconds in results.items():
        print(f"  {name:38s} {len(x) / seconds:8.1f} images/s")
    t = results
    print("ratios:")
    print(f"  ours fp32 / limit                      {t['limit'] / t['ours fp32 (folded, channels_last)']:.3f}"
          "   (target >= 0.95)")
    if args.compile:
        print(f"  ours compiled / ours fp32              "
              f"{t['ours fp32 (folded, channels_last)'] / t['ours fp32 (folded, torch.compile)']:.2f}")
    if "torchattacks PGD" in t:
        print(f"  ours fp32 / torchattacks               "
              f"{t['torchattacks PGD'] / t['ours fp32 (folded, channels_last)']:.2f}   (target >= 1.5)")
        print(f"  ours bf16 / torchattacks               "
              f"{t['torchattacks PGD'] / t['ours bf16 (folded, channels_last)']:.2f}   (target >= 2.5)")
    print(f"robust accuracy of the bf16 attack against fp32 (PGD-{k}, {len(xa)} images, both checked in fp32):")
    for e in sorted({e for e, _ in acc}):
        diff = abs(acc[(e, 'fp32')] - acc[(e, 'bf16')])
        print(f"  eps {e:g}/255: fp32 {acc[(e, 'fp32')]:.2f}%, bf16 {acc[(e, 'bf16')]:.2f}%, "
              f"difference {diff:.2f} points (target <= 0.5)")


if __name__ == "__main__":
    main()
