"""The library's default attack path as a researcher calls it, against a textbook PGD loop and the exact path.

    python bench/bench_library_pgd.py [--arch resnet56 --images 512 --batch 128 --steps 4 --repeats 3]

``rp.pgd(model, x, y, ...)`` on the plain model (NCHW inputs, nothing prepared by the caller) differentiates
through the model's cached BN-folded, frozen, channels_last copy; ``exact_model=True`` through the model
itself; the textbook loop is written here. Interleaved rounds in one process, medians; the community
pretrained model and CIFAR-10 (JPEG) test images when ../shared has them. Target: default >= 1.5x textbook.
"""

from __future__ import annotations

import argparse

import torch

from bench_autoattack import textbook_pgd
from common import interleaved_medians, machine, model_and_images
import robprune as rp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet56")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    model, x, y, source = model_and_images(args.arch, args.images, torch.device("cpu"))
    model.eval()
    print(f"# {machine()}\n# {source}, {len(x)} images, batch {args.batch}, PGD-{args.steps} at 4/255")
    x = x.float() / 255 if x.dtype == torch.uint8 else x
    batches = [(x[i:i + args.batch], y[i:i + args.batch]) for i in range(0, len(x), args.batch)]

    def loop(fn):
        return lambda: [fn(xb, yb) for xb, yb in batches]

    t = interleaved_medians({
        "default": loop(lambda xb, yb: rp.pgd(model, xb, yb, 4 / 255, args.steps)),
        "exact": loop(lambda xb, yb: rp.pgd(model, xb, yb, 4 / 255, args.steps, exact_model=True)),
        "textbook": loop(lambda xb, yb: textbook_pgd(model, xb, yb, 4 / 255, args.steps)),
    }, args.repeats)
    for name, sec in t.items():
        print(f"  {name:9s} {len(x) / sec:8.1f} images/s")
    ratio = t["textbook"] / t["default"]
    print(f"ratio: default / textbook = {ratio:.2f} (target >= 1.5: {'met' if ratio >= 1.5 else 'missed'}); "
          f"exact / textbook = {t['textbook'] / t['exact']:.2f}")


if __name__ == "__main__":
    main()
