"""Data pipeline (batching, random crop, flip; decode excluded) against training throughput.

    python bench/bench_data.py [--arch resnet56 --batch 128] [--decode ARCHIVE]
Prints images/s of both and their ratio (target: the pipeline >= 20x the training throughput); with
``--decode``, also the one-time decoding of an ImageFolder archive into a fresh cache, and the cached load.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from common import machine
from robprune import create_model
from robprune.data import iterate_batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet56")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--decode", help="an ImageFolder archive (e.g. ../shared/data/cifar10-jpeg.tar.gz): time its "
                                     "first decoding into an empty cache, then the load from that cache")
    args = ap.parse_args()
    if args.decode:
        decode(args.decode)
    x = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (50_000,))
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    n = sum(len(xb) for xb, _ in iterate_batches(x, y, args.batch, g, "crop-flip", 4))
    data_rate = n / (time.perf_counter() - t0)

    torch.manual_seed(0)
    model = create_model(args.arch).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = iterate_batches(x, y, args.batch, g, "crop-flip", 4)
    for i, (xb, yb) in enumerate(batches):
        if i == 2:
            t0 = time.perf_counter()
        loss = F.cross_entropy(model(xb.contiguous(memory_format=torch.channels_last)), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i == args.train_steps + 1:
            break
    train_rate = args.train_steps * args.batch / (time.perf_counter() - t0)
    print(f"machine: {machine()}")
    print(f"  data pipeline (50,000 CIFAR-size images, crop+flip)  {data_rate:10.0f} images/s")
    print(f"  {args.arch} training step, batch {args.batch:<4d}               {train_rate:10.1f} images/s")
    print(f"ratio: pipeline / training = {data_rate / train_rate:.0f}x   (target >= 20x)")


def decode(archive: str) -> None:
    import tempfile

    from robprune import load_dataset

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        data = load_dataset(f"imagefolder:{archive}", cache_dir=cache)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_dataset(f"imagefolder:{archive}", cache_dir=cache)
        cached = time.perf_counter() - t0
    n = len(data.x_train) + len(data.x_test)
    print(f"  decode {n:,} images of {archive} into an empty cache   {first:8.1f} s")
    print(f"  load them again from that cache                            {cached:8.1f} s")


if __name__ == "__main__":
    main()
